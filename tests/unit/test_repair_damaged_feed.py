"""``workspace repair`` over an ``events.jsonl`` damaged before its last line: an error naming the file and line
that says what to do, never a rebuild that quietly leaves the line's event out (whose invariant report would then
ask for another repair, forever). A torn last line, what a crash leaves, is still left out."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from synth_opt.cli import main
from synth_opt.errors import ConfigError
from synth_opt.workspace import repair_workspace, workspace_status

from .test_damaged_files import TORN, finish_a_run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finish_a_run(tmp_path_factory.mktemp("feed"), run_id="feed", seed=3, budget=40)


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    for path in finished_run.iterdir():
        if path.is_file():
            (tmp_path / path.name).write_bytes(path.read_bytes())
    return tmp_path


def _damage_line(feed: Path, index: int) -> None:
    lines = feed.read_bytes().splitlines(keepends=True)
    lines[index] = b"x" + lines[index]
    feed.write_bytes(b"".join(lines))


def test_repair_of_a_corrupt_database_names_a_damaged_feed_line_and_what_to_do(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = run_dir / "workspace.sqlite"
    db.write_bytes(b"junk" * 5000)
    _damage_line(run_dir / "events.jsonl", 40)

    assert main(["workspace", "repair", "--db", str(db), "--json"]) == 2
    err = capsys.readouterr().err
    assert "error[config_error]" in err and "events.jsonl:41:" in err
    assert "restore events.jsonl from a copy" in err and "Traceback" not in err
    assert db.read_bytes() == b"junk" * 5000  # left where it was: nothing is moved aside until the feed reads
    assert not list(run_dir.glob("workspace.sqlite.corrupt*"))


def test_repair_of_deleted_event_rows_names_a_damaged_feed_line(run_dir: Path) -> None:
    db = run_dir / "workspace.sqlite"
    conn = sqlite3.connect(db)
    try:
        conn.execute("DELETE FROM event_stream_events WHERE sequence_number > 30")
        conn.commit()
    finally:
        conn.close()
    _damage_line(run_dir / "events.jsonl", 9)

    with pytest.raises(ConfigError, match=r"events\.jsonl:10: not a JSON line; .*restore"):
        repair_workspace(db)


def test_repair_still_leaves_out_a_torn_last_line(run_dir: Path) -> None:
    db = run_dir / "workspace.sqlite"
    db.write_bytes(b"junk" * 5000)
    with (run_dir / "events.jsonl").open("ab") as feed:
        feed.write(TORN)

    assert repair_workspace(db)["status"] == "ok"
    assert workspace_status(db)["runs"][0]["invariant_report"]["status"] == "ok"
