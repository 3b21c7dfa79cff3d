"""The run browser over run directories that are odd, damaged or hostile: links leading out of the runs folder,
manifests and workspace rows of the wrong type, bad run ids in the URL, renamed and copied run directories, a deep
lineage, a run directory given as the runs folder, and the word diff of long texts.

Every test starts from a real (small, in-process) run's directory, copied into a runs folder of its own.
"""

from __future__ import annotations

import difflib
import html
import json
import random
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from litestar.testing import TestClient

from synth_opt.errors import ConfigError
from synth_opt.view import serve_view, view_app
from synth_opt.view.diff import word_diff

from .test_damaged_files import finish_a_run

RUN_ID = "viewed"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small completed run's directory (workspace, manifest, score chart), made once."""
    run_dir = finish_a_run(tmp_path_factory.mktemp("view"), run_id=RUN_ID)
    assert (run_dir / "score_chart.svg").is_file() and (run_dir / "result_manifest.json").is_file()
    return run_dir


@pytest.fixture
def runs(finished_run: Path, tmp_path: Path) -> Path:
    """A runs folder holding a private copy of the finished run (under its own run id)."""
    folder = tmp_path / "runs"
    folder.mkdir()
    shutil.copytree(finished_run, folder / RUN_ID, ignore=shutil.ignore_patterns("run.lock"))
    return folder


@pytest.fixture
def client(runs: Path) -> Iterator[TestClient[Any]]:
    with TestClient(view_app(runs.resolve()), raise_server_exceptions=False) as http:
        yield http


def copy_run(runs: Path, name: str) -> Path:
    """Another copy of the run in the same runs folder, under the directory ``name``."""
    return Path(shutil.copytree(runs / RUN_ID, runs / name))


def edit_manifest(run_dir: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    path = run_dir / "result_manifest.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def edit_workspace(run_dir: Path, sql: str, *params: Any) -> None:
    with sqlite3.connect(run_dir / "workspace.sqlite") as db:
        db.execute(sql, params)
    db.close()


def a_candidate(client: TestClient[Any], directory: str) -> str:
    page = client.get(f"/runs/{directory}")
    assert page.status_code == 200, page.text
    found = re.findall(rf'href="/runs/{re.escape(directory)}/candidates/(cand-[0-9a-f]+)"', page.text)
    return str(found[-1])


# -- 1: links leading out of the runs folder ----------------------------------------------------------------------


def test_browsing_a_finished_run_leaves_nothing_beside_its_workspace(runs: Path, client: TestClient[Any]) -> None:
    run_dir = runs / RUN_ID
    for side in ("-wal", "-shm"):  # a finished run's workspace, closed by its writer
        (run_dir / f"workspace.sqlite{side}").unlink(missing_ok=True)
    before = sorted(path.name for path in run_dir.iterdir())
    for page in ("/", f"/runs/{RUN_ID}"):
        assert client.get(page).status_code == 200
    assert sorted(path.name for path in run_dir.iterdir()) == before  # no -wal or -shm left behind
    before_bytes = (run_dir / "workspace.sqlite").read_bytes()
    assert client.get(f"/runs/{RUN_ID}").status_code == 200
    assert (run_dir / "workspace.sqlite").read_bytes() == before_bytes  # and nothing written


def test_a_write_ahead_log_left_by_a_writer_is_read_and_left_as_it_is(runs: Path, client: TestClient[Any]) -> None:
    crashed = copy_run(runs, "crashed")
    writer = sqlite3.connect(runs / RUN_ID / "workspace.sqlite")
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("UPDATE runs SET error = 'kept in the log'")
        writer.commit()
        for name in ("workspace.sqlite", "workspace.sqlite-wal"):  # as a writer killed mid-run leaves them
            shutil.copyfile(runs / RUN_ID / name, crashed / name)
    finally:
        writer.close()
    (crashed / "workspace.sqlite-shm").unlink(missing_ok=True)
    log, database = (crashed / "workspace.sqlite-wal").read_bytes(), (crashed / "workspace.sqlite").read_bytes()
    assert log
    assert client.get("/runs/crashed").status_code == 200
    # read, not folded into the database: the log and the database are as the writer left them
    assert (crashed / "workspace.sqlite-wal").read_bytes() == log
    assert (crashed / "workspace.sqlite").read_bytes() == database


def test_files_linked_from_outside_the_runs_folder_are_neither_served_nor_read(
    runs: Path, tmp_path: Path, client: TestClient[Any]
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:the secret\n")
    outside = Path(shutil.copytree(runs / RUN_ID, tmp_path / "outside"))
    chart = copy_run(runs, "chartlink") / "score_chart.svg"
    chart.unlink()
    chart.symlink_to(secret)
    (runs / "wslink").mkdir()
    (runs / "wslink" / "workspace.sqlite").symlink_to(outside / "workspace.sqlite")
    (runs / "linked").symlink_to(outside, target_is_directory=True)
    manifest = copy_run(runs, "manifestlink") / "result_manifest.json"
    manifest.unlink()
    manifest.symlink_to(outside / "result_manifest.json")

    for path in ("/runs/chartlink/score_chart.svg", "/runs/wslink", "/runs/wslink/score_chart.svg", "/runs/linked"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "the secret" not in response.text
    assert 'alt="score chart"' not in client.get("/runs/chartlink").text
    assert client.get(f"/runs/{RUN_ID}/score_chart.svg").status_code == 200  # the run's own chart still is served
    listing = client.get("/").text
    assert 'href="/runs/wslink"' not in listing and 'href="/runs/linked"' not in listing
    # the manifest linked from outside is not read: the row shows the workspace's numbers, no cost
    row = re.search(r'<tr><td><a href="/runs/manifestlink">.*?</tr>', listing)
    assert row is not None and '<td class="num">-</td><td class="muted">' in row.group(0)


# -- 2 and 7: one damaged run never takes the others down --------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: {**m, "usage": ["x"]}, "usage is list, not an object"),
        (lambda m: {**m, "rollouts_used": 5}, "rollouts_used is 5, not an object"),
        (lambda m: {**m, "best_train_score": "0.9"}, 'best_train_score is "0.9", not a number'),
        (lambda m: {**m, "usage": {"total": {"cost_usd": "1.0"}}}, 'cost_usd is "1.0", not a number'),
        (lambda m: {**m, "heldout_report": "oops"}, 'heldout_report is "oops", not an object'),
        (lambda m: {**m, "heldout_report": {"n": 3}}, "heldout_report has no mean_diff"),
        (lambda m: {**m, "status": {"a": 1}}, "status is dict, not a text"),
        (lambda m: [1, 2], "the manifest is list, not an object"),
    ],
    ids=["usage", "rollouts", "score", "cost", "report", "partial-report", "status", "list"],
)
def test_an_odd_manifest_is_shown_as_such_beside_the_good_runs(
    runs: Path, client: TestClient[Any], change: Callable[[dict[str, Any]], Any], problem: str
) -> None:
    edit_manifest(copy_run(runs, "odd"), change)
    listing = client.get("/")
    assert listing.status_code == 200
    good = re.search(rf'<tr><td><a href="/runs/{RUN_ID}">.*?</tr>', listing.text)
    assert good is not None and "completed" in good.group(0)
    odd = re.search(r'<tr><td><a href="/runs/odd">.*?</tr>', listing.text)
    assert odd is not None and "unreadable" in odd.group(0)
    assert "result_manifest.json" in odd.group(0) and problem.replace('"', "&quot;") in odd.group(0)
    page = client.get("/runs/odd")
    assert page.status_code == 503 and "result_manifest.json" in page.text and "move it aside" in page.text
    assert client.get(f"/runs/{RUN_ID}").status_code == 200


def test_a_null_count_in_the_manifest_falls_back_to_the_workspace(runs: Path, client: TestClient[Any]) -> None:
    edit_manifest(runs / RUN_ID, lambda m: {**m, "proposals": None})
    assert client.get("/").status_code == 200 and client.get(f"/runs/{RUN_ID}").status_code == 200


def test_damaged_workspace_rows_are_a_page_naming_the_file_and_the_repair(runs: Path, client: TestClient[Any]) -> None:
    candidate = a_candidate(client, RUN_ID)
    bad_parents = copy_run(runs, "parents")
    edit_workspace(bad_parents, "UPDATE candidates SET parent_ids_json = 'not json'")
    bad_payload = copy_run(runs, "payload")
    edit_workspace(bad_payload, "UPDATE candidate_payloads SET payload_json = '[1, 2]'")

    page = client.get("/runs/parents")
    assert page.status_code == 503
    assert "parent_ids_json is not JSON" in page.text
    assert f"synth-opt workspace repair --db {(runs / 'parents' / 'workspace.sqlite').resolve()}" in page.text
    assert client.get("/runs/payload").status_code == 200
    page = client.get(f"/runs/payload/candidates/{candidate}")
    assert page.status_code == 503 and "payload is list, not an object" in page.text
    assert client.get(f"/runs/{RUN_ID}/candidates/{candidate}").status_code == 200


def test_a_corrupt_or_old_workspace_names_the_repair_command(runs: Path, client: TestClient[Any]) -> None:
    (runs / "garbage").mkdir()
    (runs / "garbage" / "workspace.sqlite").write_bytes(b"not a database" * 100)
    old = runs / "old"
    old.mkdir()
    with sqlite3.connect(old / "workspace.sqlite") as db:
        db.execute(
            "CREATE TABLE runs (run_id, status, updated_at, seed_train_score, best_train_score, stop_reason, error)"
        )
        db.execute("INSERT INTO runs VALUES ('old', 'running', '2026-01-01', NULL, NULL, NULL, NULL)")
        db.execute("CREATE TABLE acceptance_decisions (run_id, accepted)")
    db.close()
    for name in ("garbage", "old"):
        page = client.get(f"/runs/{name}")
        assert page.status_code == 503, name
        repair = f"synth-opt workspace repair --db {(runs / name / 'workspace.sqlite').resolve()}"
        assert repair in page.text and "try again in a moment" not in page.text
    listing = client.get("/")
    assert listing.status_code == 200 and f'href="/runs/{RUN_ID}"' in listing.text
    row = re.search(r'<tr><td><a href="/runs/garbage">.*?</tr>', listing.text)
    assert row is not None and "file is not a database" in row.group(0) and "workspace repair --db" in row.group(0)


def test_an_unexpected_error_is_logged_and_a_page(
    runs: Path, client: TestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from synth_opt.view import app, data

    def broken(*_args: Any) -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app, "run_page", broken)
    with structlog.testing.capture_logs() as logs:
        page = client.get(f"/runs/{RUN_ID}")
    assert page.status_code == 500 and "text/html" in page.headers["content-type"] and "a bug" not in page.text
    assert [line["event"] for line in logs] == ["view.unexpected_error"]
    assert logs[0]["path"] == f"/runs/{RUN_ID}" and isinstance(logs[0]["exc_info"], RuntimeError)

    copy_run(runs, "second")
    real = data._summary
    monkeypatch.setattr(data, "_summary", lambda run_dir: broken() if run_dir.name == "second" else real(run_dir))
    with structlog.testing.capture_logs() as logs:
        listing = client.get("/")
    assert listing.status_code == 200 and "completed" in listing.text and "unexpected error" in listing.text
    assert [line["event"] for line in logs] == ["view.run_unreadable"]


# -- 3: bad run ids ----------------------------------------------------------------------------------------------


def test_bad_run_ids_are_404(client: TestClient[Any]) -> None:
    for path in (
        "/runs/%00",
        "/runs/a%00b",
        "/runs/a%00b/score_chart.svg",
        "/runs/" + "a" * 300,
        "/runs/" + "b" * 5000,
    ):
        response = client.get(path)
        assert response.status_code == 404, path[:40]
        assert "text/html" in response.headers["content-type"]
    assert client.get(f"/runs/{RUN_ID}/candidates/%00").status_code == 404


# -- 6: renamed and copied run directories -----------------------------------------------------------------------


def test_links_name_the_run_directory_found(runs: Path, client: TestClient[Any]) -> None:
    (runs / RUN_ID).rename(runs / "experiment-1")
    shutil.copytree(runs / "experiment-1", runs / "experiment-1.backup")
    listing = client.get("/").text
    links = re.findall(r'<tr><td><a href="(/runs/[^"]+)">', listing)
    assert sorted(links) == ["/runs/experiment-1", "/runs/experiment-1.backup"]
    assert "in experiment-1.backup" in listing
    for link in links:
        page = client.get(link)
        assert page.status_code == 200
        inner = set(re.findall(r'(?:href|src)="(/runs/[^"]+)"', page.text))
        assert inner and all(href.startswith(link + "/") for href in inner)
        for href in sorted(inner)[:3]:
            assert client.get(href).status_code == 200, href


# -- 5: a deep lineage -------------------------------------------------------------------------------------------


def test_a_lineage_thousands_deep_is_rendered(runs: Path, client: TestClient[Any]) -> None:
    with sqlite3.connect(runs / RUN_ID / "workspace.sqlite") as db:
        (parent,) = db.execute("SELECT candidate_id FROM candidates WHERE is_seed = 1").fetchone()
        for i in range(3000):
            db.execute(
                "INSERT INTO candidates (run_id, candidate_id, parent_ids_json, module, proposal_index, is_seed, "
                "sequence_number) VALUES (?, ?, ?, 'instruction', ?, 0, ?)",
                (RUN_ID, f"cand-chain{i:05d}", json.dumps([parent]), 10_000 + i, 1_000_000 + i),
            )
            parent = f"cand-chain{i:05d}"
    db.close()
    page = client.get(f"/runs/{RUN_ID}")
    assert page.status_code == 200
    assert page.text.count('<li class="node" data-candidate="cand-chain') == 3000
    assert page.text.count("<li") == page.text.count("</li>") and page.text.count("<ul") == page.text.count("</ul>")
    assert re.search(
        r'data-candidate="cand-chain02998".*?<ul><li class="node" data-candidate="cand-chain02999"', page.text
    )


# -- 7: a run directory given as the runs folder -----------------------------------------------------------------


def test_a_run_directory_given_as_the_runs_folder_names_its_parent(runs: Path) -> None:
    (runs / "latest").symlink_to(RUN_ID, target_is_directory=True)
    for given in (runs / RUN_ID, runs / "latest"):
        with pytest.raises(ConfigError, match=rf"a run directory, not a runs folder; .* --runs {re.escape(str(runs))}"):
            serve_view(given)


# -- 4: the word diff of long texts ------------------------------------------------------------------------------


def _without(marked: str, tag: str) -> str:
    """The text a diff shows once ``tag``'s pieces are dropped (the old text without ``ins``, the new without
    ``del``)."""
    kept = re.sub(rf"<{tag}>.*?</{tag}>", "", marked, flags=re.S)
    return html.unescape(re.sub(r"</?(?:ins|del)>", "", kept))


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The element pairs each SequenceMatcher of the word diff was given (its work grows with their product)."""
    sizes: list[int] = []

    class Counting(difflib.SequenceMatcher[str]):
        def __init__(self, isjunk: Any, a: Any, b: Any, autojunk: bool = True) -> None:
            sizes.append(len(a) * len(b))
            super().__init__(isjunk, a, b, autojunk)

    monkeypatch.setattr(difflib, "SequenceMatcher", Counting)  # as the word diff looks it up
    return sizes


def test_a_long_rewrite_is_one_replacement(compared: list[int]) -> None:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(2000)]
    old = " ".join(rng.choice(words) for _ in range(20_000))
    new = " ".join(rng.choice(words) for _ in range(20_000)) + " <b>"
    marked = word_diff(old, new)
    assert marked.startswith("<del>") and "&lt;b&gt;" in marked
    assert _without(marked, "ins") == old and _without(marked, "del") == new
    assert sum(compared) <= 4_000_000  # not 40,000 x 40,000 tokens


def test_a_long_text_with_small_edits_is_diffed_word_by_word(compared: list[int]) -> None:
    rng = random.Random(1)
    vocab = [f"w{i}" for i in range(3000)]
    words = [rng.choice(vocab) for _ in range(8000)]
    edited = list(words)
    for i in rng.sample(range(len(words)), 400):
        edited[i] = "changed"
    old = "\n".join(" ".join(words[i : i + 12]) for i in range(0, len(words), 12))
    new = "\n".join(" ".join(edited[i : i + 12]) for i in range(0, len(edited), 12)) + "\na note appended"
    marked = word_diff(old, new)
    assert _without(marked, "ins") == old and _without(marked, "del") == new
    assert marked.count("<ins>changed</ins>") >= 300 and marked.endswith("<ins>\na note appended</ins>")
    assert sum(compared) <= 4_000_000 + 700**2  # the changed blocks, and the lines themselves
    compared.clear()
    one_line = " ".join(words)
    assert word_diff(one_line, one_line + " and more.") == one_line + "<ins> and more.</ins>"
    assert sum(compared) <= 100


def test_short_texts_are_diffed_as_before() -> None:
    assert (
        word_diff("Name fruit.", "Name <b>fruit</b> now.") == "Name <ins>&lt;b&gt;</ins>fruit<ins>&lt;/b&gt; now</ins>."
    )
    assert word_diff("a b c", "a c") == "a <del>b </del>c"
    assert (
        word_diff("one\ntwo three\nfour", "one\ntwo 3\nfour\nfive")
        == "one\ntwo <del>three</del><ins>3</ins>\nfour<ins>\nfive</ins>"
    )
