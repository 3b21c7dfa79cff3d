"""The tblite tasks: small terminal tasks written for this cookbook, kept as data.

Each :class:`Task` has an instruction, the files the working directory starts with, a few pytest-style checks (each
one a ``def test_...`` body that becomes a function of a real pytest file, run by ``python -m pytest``), an oracle
solution (shell commands that pass every check), the task's declared parameters (named strings the instruction is
about: an input file, a pattern, a column number...) and a hint: the general technique, in words and as a shell
command template whose ``{placeholders}`` are parameter names.

Tasks come in families (one instruction template and its data) grouped by technique. The splits keep the heldout
rows genuinely unseen (SPEC §13): a heldout task never shares its family, its instruction template, its data or its
oracle solution with a train task. Techniques do transfer: most heldout families use a technique that some train
family also needs, in a different setting (count the lines of a log that contain ERROR -> count the CSV rows that
mention a city). One train technique has no heldout counterpart and one heldout technique has no train
counterpart, so a perfect score on the heldout split is out of reach for anything learned from train alone.

The public row (:meth:`Task.row`, what ``/taskset/tasks`` returns and what the proposer sees for train rows) holds
the instruction, parameters, hint, file names and check descriptions; never the oracle solution or the check code.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CHECK_PRELUDE", "SPLITS", "TASKS", "Check", "Task", "by_id", "check_file", "tasks_of"]

SPLITS = ("train", "test")


@dataclass(frozen=True, slots=True)
class Check:
    """One pytest check: ``name`` is the test function's name, ``code`` its body (``WORK`` is the task dir)."""

    name: str
    description: str
    code: str


@dataclass(frozen=True, slots=True)
class Task:
    task_id: str
    split: str
    family: str
    technique: str
    instruction: str
    params: Mapping[str, str]
    hint: str
    files: Mapping[str, str]
    checks: tuple[Check, ...]
    solution: tuple[str, ...]
    tags: tuple[str, ...] = field(default_factory=tuple)

    def row(self) -> dict[str, Any]:
        """The public row: everything an agent may know before it starts (no solution, no check code)."""
        return {
            "task_id": self.task_id,
            "split": self.split,
            "family": self.family,
            "instruction": self.instruction,
            "params": dict(self.params),
            "hint": self.hint,
            "files": sorted(self.files),
            "checks": [{"name": check.name, "description": check.description} for check in self.checks],
        }


CHECK_PRELUDE = '''\
"""pytest checks for tblite task {task_id} (generated; run with the task directory in TBLITE_WORKDIR)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

WORK = Path(os.environ["TBLITE_WORKDIR"])


def read(name: str) -> str:
    path = WORK / name
    assert path.is_file(), f"{{name}} does not exist"
    return path.read_text()


def lines(name: str) -> list[str]:
    return read(name).splitlines()


def csv_rows(name: str) -> list[list[str]]:
    return list(csv.reader(read(name).splitlines()))


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    assert (WORK / script).is_file(), f"{{script}} does not exist"
    return subprocess.run([sys.executable, script], cwd=WORK, capture_output=True, text=True, timeout=20)
'''


def check_file(task: Task) -> str:
    """The task's checks as one pytest module."""
    parts = [CHECK_PRELUDE.format(task_id=task.task_id)]
    for check in task.checks:
        body = textwrap.indent(textwrap.dedent(check.code).strip(), "    ")
        parts.append(f'\n\ndef {check.name}() -> None:\n    """{check.description}"""\n{body}\n')
    return "".join(parts)


# --- hints: one per technique, shared by the train and heldout families that need it ------------------------------

HINTS = {
    "count_matching": "count lines containing a pattern: `grep -c -e '{pattern}' {input} > {output}`",
    "sort_numeric": (
        "sort a CSV by a numeric column, header kept: "
        "`(head -n 1 {input} && tail -n +2 {input} | sort -t, -k{key},{key} -n) > {output}`"
    ),
    "rename_extension": (
        "rename files to a new extension: "
        '`cd {folder} && for f in *.{old_ext}; do mv -- "$f" "${f%.*}.{new_ext}"; done`'
    ),
    "extract_field": (
        "extract one field of a delimited file, header skipped: "
        "`tail -n +2 {input} | cut -d '{delim}' -f {field} > {output}`"
    ),
    "json_summary": (
        "JSON summary of a CSV (row count and column total): `python3 -c 'import csv, json; "
        'rows = list(csv.DictReader(open("{input}"))); json.dump(dict(rows=len(rows), '
        'total=sum(float(r["{amount}"]) for r in rows)), open("{output}", "w"))\'`'
    ),
    "fix_name": "fix a misspelled name in a script: `sed -i 's/{wrong}/{right}/g' {script}`",
    "dedupe": "remove duplicate lines, sorted: `sort -u {input} > {output}`",
    "uppercase": "uppercase text: `tr '[:lower:]' '[:upper:]' < {input} > {output}`",
    "sum_column": (
        "total of a numeric column: `tail -n +2 {input} | cut -d, -f {sum_field} | paste -sd+ - | bc > {output}`"
    ),
    "concatenate": "concatenate files in name order: `cat {folder}/*.{ext} > {output}`",
    "move_type": "move files of one type into a folder: `mkdir -p {dest} && mv -- *.{ext} {dest}/`",
    "replace_text": "replace a string everywhere in a file: `sed -i 's/{old}/{new}/g' {input}`",
    "head_lines": "take the first lines of a file: `head -n {n} {input} > {output}`",
    "reverse_lines": "reverse the line order of a file: `tac {input} > {output}`",
}


def _exists(name: str) -> Check:
    return Check("test_output_exists", f"{name} exists", f"assert (WORK / {name!r}).is_file(), '{name} is missing'")


def _task(
    split: str,
    family: str,
    technique: str,
    instruction: str,
    params: dict[str, str],
    files: dict[str, str],
    checks: list[Check],
    solution: list[str],
) -> Task:
    return Task(
        task_id=f"{split}-{family}",
        split=split,
        family=family,
        technique=technique,
        instruction=instruction,
        params=params,
        hint=HINTS[technique],
        files=files,
        checks=tuple(checks),
        solution=tuple(solution),
    )


# --- train ---------------------------------------------------------------------------------------------------------

_TRAIN = [
    _task(
        "train",
        "log_error_count",
        "count_matching",
        "Count the lines of app.log that contain ERROR and write that number (just the number) to errors.txt.",
        {"input": "app.log", "pattern": "ERROR", "output": "errors.txt"},
        {
            "app.log": (
                "2024-05-01 10:00:01 INFO service started\n"
                "2024-05-01 10:00:05 ERROR database connection refused\n"
                "2024-05-01 10:01:00 WARN slow response from cache\n"
                "2024-05-01 10:02:13 ERROR timeout while reading config\n"
                "2024-05-01 10:03:40 INFO retrying\n"
                "2024-05-01 10:04:02 INFO connected\n"
                "2024-05-01 10:05:59 ERROR disk quota exceeded\n"
                "2024-05-01 10:06:30 INFO request served\n"
            )
        },
        [
            _exists("errors.txt"),
            Check(
                "test_is_a_number", "errors.txt holds one whole number", "assert read('errors.txt').strip().isdigit()"
            ),
            Check(
                "test_count_is_right",
                "the number is how many lines of app.log contain ERROR",
                "assert read('errors.txt').strip() == '3'",
            ),
        ],
        ["grep -c ERROR app.log > errors.txt"],
    ),
    _task(
        "train",
        "score_ranking",
        "sort_numeric",
        "Sort scores.csv by its numeric score column (column 2), lowest first, keeping the header line on top, and "
        "save the result as ranked.csv.",
        {"input": "scores.csv", "key": "2", "output": "ranked.csv"},
        {"scores.csv": "name,score\nmira,88\njoe,72\nli,95\nsam,61\nada,79\n"},
        [
            Check(
                "test_header_first",
                "ranked.csv starts with the header",
                "assert lines('ranked.csv')[:1] == ['name,score']",
            ),
            Check(
                "test_ascending",
                "the data rows are in ascending score order",
                """
                rows = csv_rows('ranked.csv')[1:]
                assert len(rows) == 5, rows
                scores = [int(row[1]) for row in rows]
                assert scores == sorted(scores), scores
                """,
            ),
            Check(
                "test_same_rows",
                "ranked.csv holds exactly the rows of scores.csv",
                "assert sorted(lines('ranked.csv')[1:]) == sorted(['mira,88', 'joe,72', 'li,95', 'sam,61', 'ada,79'])",
            ),
        ],
        ["(head -n 1 scores.csv && tail -n +2 scores.csv | sort -t, -k2,2 -n) > ranked.csv"],
    ),
    _task(
        "train",
        "notes_to_markdown",
        "rename_extension",
        "Rename every .txt file in the notes folder so that it ends in .md instead; keep the base names and the "
        "contents.",
        {"folder": "notes", "old_ext": "txt", "new_ext": "md"},
        {
            "notes/todo.txt": "buy milk\n",
            "notes/ideas.txt": "a tiny shell game\n",
            "notes/log.txt": "monday: started\n",
            "notes/index.csv": "name\ntodo\n",
        },
        [
            Check(
                "test_no_txt_left",
                "notes/ has no .txt file left and three .md files",
                """
                assert not list((WORK / 'notes').glob('*.txt'))
                assert len(list((WORK / 'notes').glob('*.md'))) == 3
                """,
            ),
            Check(
                "test_contents_kept",
                "each renamed note keeps its base name and content",
                """
                assert read('notes/todo.md') == 'buy milk\\n'
                assert read('notes/ideas.md') == 'a tiny shell game\\n'
                assert read('notes/log.md') == 'monday: started\\n'
                """,
            ),
            Check(
                "test_others_untouched",
                "notes/index.csv is untouched (and the notes were renamed)",
                """
                assert read('notes/index.csv') == 'name\\ntodo\\n'
                assert (WORK / 'notes' / 'todo.md').is_file()
                """,
            ),
        ],
        ['cd notes && for f in *.txt; do mv "$f" "${f%.txt}.md"; done'],
    ),
    _task(
        "train",
        "user_emails",
        "extract_field",
        "Extract the email field (the 3rd) of users.csv, without the header, one email per line, into emails.txt.",
        {"input": "users.csv", "delim": ",", "field": "3", "output": "emails.txt"},
        {"users.csv": "id,name,email\n1,Ada,ada@example.org\n2,Bob,bob@example.net\n3,Cy,cy@example.com\n"},
        [
            _exists("emails.txt"),
            Check("test_three_lines", "emails.txt has one line per user", "assert len(lines('emails.txt')) == 3"),
            Check(
                "test_emails",
                "the lines are the users' emails, in file order",
                "assert lines('emails.txt') == ['ada@example.org', 'bob@example.net', 'cy@example.com']",
            ),
        ],
        ["cut -d, -f3 users.csv | tail -n +2 > emails.txt"],
    ),
    _task(
        "train",
        "sales_summary",
        "json_summary",
        'Make a JSON summary of sales.csv in summary.json: an object whose "rows" is the number of data rows and '
        'whose "total" is the sum of the amount column.',
        {"input": "sales.csv", "amount": "amount", "output": "summary.json"},
        {"sales.csv": "region,amount\nnorth,120\nsouth,80\neast,45.5\nwest,100\n"},
        [
            Check(
                "test_valid_json",
                "summary.json is a JSON object",
                "assert isinstance(json.loads(read('summary.json')), dict)",
            ),
            Check(
                "test_rows", "rows is the number of data rows", "assert json.loads(read('summary.json'))['rows'] == 4"
            ),
            Check(
                "test_total",
                "total is the sum of the amount column",
                "assert abs(float(json.loads(read('summary.json'))['total']) - 345.5) < 1e-6",
            ),
        ],
        [
            'python3 -c \'import csv, json; rows = list(csv.DictReader(open("sales.csv"))); '
            'json.dump({"rows": len(rows), "total": sum(float(r["amount"]) for r in rows)}, '
            'open("summary.json", "w"))\''
        ],
    ),
    _task(
        "train",
        "greet_typo",
        "fix_name",
        "greet.py crashes because it calls pritn instead of print. Fix the script so that python3 greet.py prints "
        "Hello, World!",
        {"script": "greet.py", "wrong": "pritn", "right": "print"},
        {"greet.py": 'def main():\n    name = "World"\n    pritn(f"Hello, {name}!")\n\n\nmain()\n'},
        [
            Check("test_runs", "python3 greet.py exits with status 0", "assert run_python('greet.py').returncode == 0"),
            Check(
                "test_output",
                "it prints Hello, World!",
                "assert run_python('greet.py').stdout == 'Hello, World!\\n'",
            ),
            Check(
                "test_typo_gone",
                "the typo is gone and main() is still defined",
                """
                text = read('greet.py')
                assert 'pritn' not in text and 'def main' in text
                """,
            ),
        ],
        ["sed -i 's/pritn/print/' greet.py"],
    ),
    _task(
        "train",
        "contact_dedupe",
        "dedupe",
        "contacts.txt has duplicate addresses. Write each address once, in sorted order, to unique.txt.",
        {"input": "contacts.txt", "output": "unique.txt"},
        {"contacts.txt": "zoe@mail.org\nadam@mail.org\nzoe@mail.org\nlena@mail.org\nadam@mail.org\nomar@mail.org\n"},
        [
            _exists("unique.txt"),
            Check(
                "test_no_duplicates",
                "unique.txt lists four addresses, none twice",
                """
                found = lines('unique.txt')
                assert len(found) == 4 and len(set(found)) == 4, found
                """,
            ),
            Check(
                "test_sorted_addresses",
                "the addresses are the distinct ones of contacts.txt, sorted",
                "assert lines('unique.txt') == ['adam@mail.org', 'lena@mail.org', 'omar@mail.org', 'zoe@mail.org']",
            ),
        ],
        ["sort -u contacts.txt > unique.txt"],
    ),
    _task(
        "train",
        "shout_names",
        "uppercase",
        "Turn every letter of names.txt into uppercase and write the result to shout.txt.",
        {"input": "names.txt", "output": "shout.txt"},
        {"names.txt": "ada lovelace\ngrace hopper\nalan turing\n"},
        [
            _exists("shout.txt"),
            Check("test_three_lines", "shout.txt keeps the three lines", "assert len(lines('shout.txt')) == 3"),
            Check(
                "test_uppercase",
                "every name is in capitals",
                "assert read('shout.txt') == 'ADA LOVELACE\\nGRACE HOPPER\\nALAN TURING\\n'",
            ),
        ],
        ["tr a-z A-Z < names.txt > shout.txt"],
    ),
    _task(
        "train",
        "timesheet_hours",
        "sum_column",
        "timesheet.csv records the hours worked each day (column 2). Write the total number of hours to "
        "total_hours.txt.",
        {"input": "timesheet.csv", "sum_field": "2", "output": "total_hours.txt"},
        {"timesheet.csv": "day,hours\nmon,8\ntue,7\nwed,9\nthu,6\nfri,5\n"},
        [
            _exists("total_hours.txt"),
            Check(
                "test_is_a_number",
                "total_hours.txt holds one number",
                "float(read('total_hours.txt').strip())",
            ),
            Check(
                "test_total",
                "the number is the sum of the hours column",
                "assert float(read('total_hours.txt').strip()) == 35",
            ),
        ],
        ["tail -n +2 timesheet.csv | cut -d, -f2 | paste -sd+ - | bc > total_hours.txt"],
    ),
    _task(
        "train",
        "book_chapters",
        "concatenate",
        "Concatenate the .txt chapter files in chapters/ in name order into book.txt.",
        {"folder": "chapters", "ext": "txt", "output": "book.txt"},
        {
            "chapters/ch1.txt": "It was a dark night.\n",
            "chapters/ch2.txt": "The rain kept falling.\n",
            "chapters/ch3.txt": "Then the door opened.\n",
            "chapters/draft.md": "unused draft\n",
        },
        [
            _exists("book.txt"),
            Check(
                "test_in_order",
                "book.txt is the three chapters in name order",
                "assert read('book.txt') == 'It was a dark night.\\nThe rain kept falling.\\nThen the door opened.\\n'",
            ),
            Check(
                "test_no_draft",
                "book.txt has chapter text but not the .md draft",
                """
                text = read('book.txt')
                assert 'dark night' in text and 'unused draft' not in text
                """,
            ),
        ],
        ["cat chapters/ch1.txt chapters/ch2.txt chapters/ch3.txt > book.txt"],
    ),
    _task(
        "train",
        "png_images",
        "move_type",
        "Move every .png file of this folder into a new images/ folder; leave the other files where they are.",
        {"ext": "png", "dest": "images"},
        {"a.png": "PNG-a\n", "b.png": "PNG-b\n", "c.png": "PNG-c\n", "notes.txt": "keep me\n"},
        [
            Check(
                "test_moved",
                "images/ holds a.png, b.png and c.png",
                "assert sorted(p.name for p in (WORK / 'images').glob('*.png')) == ['a.png', 'b.png', 'c.png']",
            ),
            Check("test_none_left", "no .png file is left at the top", "assert not list(WORK.glob('*.png'))"),
            Check(
                "test_others_stay",
                "notes.txt stays at the top and images/b.png kept its content",
                """
                assert read('notes.txt') == 'keep me\\n'
                assert read('images/b.png') == 'PNG-b\\n'
                """,
            ),
        ],
        ["mkdir images && mv *.png images/"],
    ),
    _task(
        "train",
        "db_host",
        "replace_text",
        "In settings.ini, replace every occurrence of localhost with db.internal.",
        {"input": "settings.ini", "old": "localhost", "new": "db.internal"},
        {"settings.ini": "[db]\nhost = localhost\nport = 5432\n[cache]\nhost = localhost\n"},
        [
            Check("test_no_localhost", "localhost is gone", "assert 'localhost' not in read('settings.ini')"),
            Check(
                "test_two_hosts",
                "both host lines now say db.internal",
                "assert lines('settings.ini').count('host = db.internal') == 2",
            ),
            Check(
                "test_rest_kept",
                "the other lines are unchanged (and the replacement happened)",
                """
                found = lines('settings.ini')
                assert [line for line in found if not line.startswith('host')] == ['[db]', 'port = 5432', '[cache]']
                assert 'host = db.internal' in found
                """,
            ),
        ],
        ["sed -i 's/localhost/db.internal/g' settings.ini"],
    ),
    _task(
        "train",
        "job_queue_head",
        "head_lines",
        "Keep only the first 3 lines of jobs.txt, writing them to next_jobs.txt.",
        {"input": "jobs.txt", "n": "3", "output": "next_jobs.txt"},
        {"jobs.txt": "build\ntest\ndeploy\nnotify\ncleanup\narchive\n"},
        [
            _exists("next_jobs.txt"),
            Check("test_three", "next_jobs.txt has three lines", "assert len(lines('next_jobs.txt')) == 3"),
            Check(
                "test_first_jobs",
                "they are the first three jobs",
                "assert lines('next_jobs.txt') == ['build', 'test', 'deploy']",
            ),
        ],
        ["sed -n 1,3p jobs.txt > next_jobs.txt"],
    ),
]

# --- test (heldout) ------------------------------------------------------------------------------------------------

_TEST = [
    _task(
        "test",
        "city_visit_count",
        "count_matching",
        "How many rows of visits.csv contain Oslo? Count them and write only that number into oslo.txt.",
        {"input": "visits.csv", "pattern": "Oslo", "output": "oslo.txt"},
        {
            "visits.csv": (
                "visitor,city,date\nana,Oslo,2024-03-01\nben,Bergen,2024-03-02\ncai,Oslo,2024-03-02\n"
                "dev,Tromso,2024-03-03\neli,Oslo,2024-03-04\nfay,Stavanger,2024-03-04\ngus,Bergen,2024-03-05\n"
                "hal,Oslo,2024-03-06\n"
            )
        },
        [
            _exists("oslo.txt"),
            Check("test_is_a_number", "oslo.txt holds one whole number", "assert read('oslo.txt').strip().isdigit()"),
            Check(
                "test_count_is_right",
                "the number is how many rows mention Oslo",
                "assert read('oslo.txt').strip() == '4'",
            ),
        ],
        ["awk '/Oslo/ {n++} END {print n+0}' visits.csv > oslo.txt"],
    ),
    _task(
        "test",
        "inventory_by_price",
        "sort_numeric",
        "Write inventory.csv sorted by price (the 3rd column), cheapest first, to by_price.csv; the header row must "
        "stay first.",
        {"input": "inventory.csv", "key": "3", "output": "by_price.csv"},
        {"inventory.csv": "item,qty,price\nlamp,4,19.50\ndesk,1,120.00\npen,40,1.25\nchair,6,45.00\nmug,12,7.80\n"},
        [
            Check(
                "test_header_first",
                "by_price.csv starts with the header",
                "assert lines('by_price.csv')[:1] == ['item,qty,price']",
            ),
            Check(
                "test_cheapest_first",
                "the items are in ascending price order",
                "assert [row[0] for row in csv_rows('by_price.csv')[1:]] == ['pen', 'mug', 'lamp', 'chair', 'desk']",
            ),
            Check(
                "test_rows_intact",
                "every row is kept as it was",
                "assert sorted(lines('by_price.csv')[1:]) == sorted(lines('inventory.csv')[1:]) != []",
            ),
        ],
        ["{ sed -n 1p inventory.csv; sed 1d inventory.csv | sort -t, -k3 -g; } > by_price.csv"],
    ),
    _task(
        "test",
        "photo_extensions",
        "rename_extension",
        "In photos/, the .jpeg files should be renamed to the .jpg extension; leave every other file alone.",
        {"folder": "photos", "old_ext": "jpeg", "new_ext": "jpg"},
        {
            "photos/beach.jpeg": "JPEG beach\n",
            "photos/sunset.jpeg": "JPEG sunset\n",
            "photos/readme.txt": "holiday photos\n",
        },
        [
            Check(
                "test_renamed",
                "photos/ holds beach.jpg and sunset.jpg and no .jpeg",
                """
                assert sorted(p.name for p in (WORK / 'photos').glob('*.jpg')) == ['beach.jpg', 'sunset.jpg']
                assert not list((WORK / 'photos').glob('*.jpeg'))
                """,
            ),
            Check(
                "test_contents_kept",
                "the photos keep their contents",
                "assert read('photos/beach.jpg') == 'JPEG beach\\n' and read('photos/sunset.jpg') == 'JPEG sunset\\n'",
            ),
            Check(
                "test_readme_alone",
                "photos/readme.txt is left alone (and the photos were renamed)",
                """
                assert read('photos/readme.txt') == 'holiday photos\\n'
                assert (WORK / 'photos' / 'beach.jpg').is_file()
                """,
            ),
        ],
        ['for f in photos/*.jpeg; do mv "$f" "photos/$(basename "$f" .jpeg).jpg"; done'],
    ),
    _task(
        "test",
        "account_shells",
        "extract_field",
        "accounts.db is colon-separated with a header row. Extract the shell field (field 3) of every account into "
        "shells.txt, one per line.",
        {"input": "accounts.db", "delim": ":", "field": "3", "output": "shells.txt"},
        {"accounts.db": "login:uid:shell\nroot:0:/bin/bash\ndaemon:1:/usr/sbin/nologin\nmaria:1000:/bin/zsh\n"},
        [
            _exists("shells.txt"),
            Check(
                "test_one_per_account", "shells.txt has one line per account", "assert len(lines('shells.txt')) == 3"
            ),
            Check(
                "test_shells",
                "the lines are the shells, without the header",
                "assert lines('shells.txt') == ['/bin/bash', '/usr/sbin/nologin', '/bin/zsh']",
            ),
        ],
        ["awk -F: 'NR > 1 {print $3}' accounts.db > shells.txt"],
    ),
    _task(
        "test",
        "expense_report",
        "json_summary",
        'Produce report.json, a JSON summary of expenses.csv holding "rows" (the number of expense rows) and '
        '"total" (the sum of the cost column).',
        {"input": "expenses.csv", "amount": "cost", "output": "report.json"},
        {
            "expenses.csv": (
                "date,category,cost\n2024-01-03,food,12.5\n2024-01-04,travel,40\n2024-01-04,food,7.5\n"
                "2024-01-06,books,20\n2024-01-07,travel,15\n"
            )
        },
        [
            Check(
                "test_valid_json",
                "report.json is a JSON object",
                "assert isinstance(json.loads(read('report.json')), dict)",
            ),
            Check("test_rows", "rows counts the expenses", "assert json.loads(read('report.json'))['rows'] == 5"),
            Check(
                "test_total",
                "total is the sum of the cost column",
                "assert abs(float(json.loads(read('report.json'))['total']) - 95.0) < 1e-6",
            ),
        ],
        [
            'awk -F, \'NR > 1 {s += $3; n++} END {printf "{\\"rows\\": %d, \\"total\\": %s}\\n", n, s}\' '
            "expenses.csv > report.json"
        ],
    ),
    _task(
        "test",
        "stats_name_error",
        "fix_name",
        "stats.py fails with a NameError: the variable totl should be total. Fix the script so that it runs and "
        "prints the mean.",
        {"script": "stats.py", "wrong": "totl", "right": "total"},
        {
            "stats.py": (
                "values = [4, 8, 15, 16, 23, 42]\ntotal = 0\nfor value in values:\n    total += value\n"
                'print("mean:", totl / len(values))\n'
            )
        },
        [
            Check("test_runs", "python3 stats.py exits with status 0", "assert run_python('stats.py').returncode == 0"),
            Check("test_mean", "it prints the mean", "assert run_python('stats.py').stdout == 'mean: 18.0\\n'"),
            Check("test_name_fixed", "the misspelled name is gone", "assert 'totl' not in read('stats.py')"),
        ],
        [
            "python3 -c \"import pathlib; p = pathlib.Path('stats.py'); "
            "p.write_text(p.read_text().replace('totl', 'total'))\""
        ],
    ),
    _task(
        "test",
        "tag_dedupe",
        "dedupe",
        "tags.txt contains duplicate tags; keep one copy of each, sorted alphabetically, in tags_unique.txt.",
        {"input": "tags.txt", "output": "tags_unique.txt"},
        {"tags.txt": "python\nshell\npython\nawk\nsed\nshell\nawk\n"},
        [
            _exists("tags_unique.txt"),
            Check(
                "test_each_once",
                "every tag appears once",
                """
                found = lines('tags_unique.txt')
                assert len(found) == len(set(found)) == 4, found
                """,
            ),
            Check(
                "test_alphabetical",
                "the tags are sorted alphabetically",
                "assert lines('tags_unique.txt') == ['awk', 'python', 'sed', 'shell']",
            ),
        ],
        ["sort tags.txt | uniq > tags_unique.txt"],
    ),
    _task(
        "test",
        "upper_codes",
        "uppercase",
        "Write codes.txt in uppercase to codes_upper.txt.",
        {"input": "codes.txt", "output": "codes_upper.txt"},
        {"codes.txt": "ab-12\ncd-34\nxy-99\n"},
        [
            _exists("codes_upper.txt"),
            Check(
                "test_same_lines", "codes_upper.txt keeps the three codes", "assert len(lines('codes_upper.txt')) == 3"
            ),
            Check(
                "test_capitals",
                "the codes are in capitals",
                "assert read('codes_upper.txt') == 'AB-12\\nCD-34\\nXY-99\\n'",
            ),
        ],
        ["awk '{print toupper($0)}' codes.txt > codes_upper.txt"],
    ),
    _task(
        "test",
        "transfer_bytes",
        "sum_column",
        "What is the total number of bytes in transfers.csv (3rd column)? Write the total to bytes_total.txt.",
        {"input": "transfers.csv", "sum_field": "3", "output": "bytes_total.txt"},
        {"transfers.csv": "host,when,bytes\na.example,09:00,1200\nb.example,09:05,300\na.example,09:10,4500\n"},
        [
            _exists("bytes_total.txt"),
            Check("test_is_a_number", "bytes_total.txt holds one number", "float(read('bytes_total.txt').strip())"),
            Check(
                "test_total",
                "it is the sum of the bytes column",
                "assert float(read('bytes_total.txt').strip()) == 6000",
            ),
        ],
        ["awk -F, 'NR > 1 {s += $3} END {print s}' transfers.csv > bytes_total.txt"],
    ),
    _task(
        "test",
        "combined_logs",
        "concatenate",
        "Join the .log files from logs/ into a single combined.log, ordered by file name.",
        {"folder": "logs", "ext": "log", "output": "combined.log"},
        {"logs/a.log": "alpha\n", "logs/b.log": "beta\n", "logs/c.log": "gamma\n", "logs/skip.tmp": "junk\n"},
        [
            _exists("combined.log"),
            Check(
                "test_order",
                "combined.log is a, b, c in order",
                "assert read('combined.log') == 'alpha\\nbeta\\ngamma\\n'",
            ),
            Check(
                "test_only_logs",
                "combined.log holds log lines but not the .tmp file",
                """
                text = read('combined.log')
                assert 'alpha' in text and 'junk' not in text
                """,
            ),
        ],
        ["ls logs/*.log | sort | xargs cat > combined.log"],
    ),
    _task(
        "test",
        "log_archive",
        "move_type",
        "Tidy up: create archive/ and move all .log files into it; the rest stays.",
        {"ext": "log", "dest": "archive"},
        {"web.log": "GET /\n", "db.log": "SELECT 1\n", "app.conf": "debug=false\n", "readme.md": "# app\n"},
        [
            Check(
                "test_archived",
                "archive/ holds db.log and web.log",
                "assert sorted(p.name for p in (WORK / 'archive').glob('*.log')) == ['db.log', 'web.log']",
            ),
            Check("test_no_top_logs", "no .log is left at the top", "assert not list(WORK.glob('*.log'))"),
            Check(
                "test_rest_stays",
                "app.conf and readme.md stay (and the logs were archived)",
                """
                assert read('app.conf') == 'debug=false\\n' and read('readme.md') == '# app\\n'
                assert read('archive/web.log') == 'GET /\\n'
                """,
            ),
        ],
        ['mkdir -p archive; for f in *.log; do mv "$f" archive/; done'],
    ),
    _task(
        "test",
        "release_version",
        "replace_text",
        "release.cfg still says 1.4; replace every 1.4 with 2.0 in that file.",
        {"input": "release.cfg", "old": "1.4", "new": "2.0"},
        {"release.cfg": "name=tool\nversion=1.4\ndocs=https://docs.example/1.4/\n"},
        [
            Check("test_old_gone", "1.4 is gone", "assert '1.4' not in read('release.cfg')"),
            Check("test_version", "the version line says 2.0", "assert 'version=2.0' in lines('release.cfg')"),
            Check(
                "test_docs_link",
                "the docs link points at 2.0 and the name is kept",
                "assert lines('release.cfg') == ['name=tool', 'version=2.0', 'docs=https://docs.example/2.0/']",
            ),
        ],
        [
            "python3 -c \"import pathlib; p = pathlib.Path('release.cfg'); "
            "p.write_text(p.read_text().replace('1.4', '2.0'))\""
        ],
    ),
    _task(
        "test",
        "history_newest_first",
        "reverse_lines",
        "Reverse the order of the lines in history.txt (last line first) and write them to newest_first.txt.",
        {"input": "history.txt", "output": "newest_first.txt"},
        {"history.txt": "ls\ncd src\nmake\nmake test\ngit status\n"},
        [
            _exists("newest_first.txt"),
            Check("test_five", "newest_first.txt has five lines", "assert len(lines('newest_first.txt')) == 5"),
            Check(
                "test_reversed",
                "the lines are in reverse order",
                "assert lines('newest_first.txt') == ['git status', 'make test', 'make', 'cd src', 'ls']",
            ),
        ],
        [
            "python3 -c \"import sys; sys.stdout.writelines(reversed(open('history.txt').readlines()))\" "
            "> newest_first.txt"
        ],
    ),
]

TASKS: tuple[Task, ...] = tuple(_TRAIN + _TEST)


def tasks_of(split: str) -> list[Task]:
    return [task for task in TASKS if task.split == split]


def by_id() -> dict[str, Task]:
    return {task.task_id: task for task in TASKS}
