"""Damaged run files: a torn last line of a feed, a corrupt workspace database, rows deleted from a derived table.

Each test starts from a real (small, in-process) run's directory and damages it the way a crash, a bad disk or a
stray ``DELETE`` would.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from synth_opt import GepaRun, load_config
from synth_opt.cli import main
from synth_opt.dir_lock import RunDirLock
from synth_opt.errors import ConfigError, RunLockedError
from synth_opt.events.normalize import read_feed, write_normalized_feed
from synth_opt.events.replay import render_timeline
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.testing.fake_container import FakeContainer
from synth_opt.usage import Usage
from synth_opt.workspace import repair_workspace, workspace_status
from synth_opt.workspace.schema import DERIVED_TABLES

TORN = b'{"sequence_number": 99999, "ts": "2026-01-01T00:00:00.000Z", "type": "rollout.comp'


class _Proposer:
    """Adds the answer words of failed records to the text, so some children are accepted."""

    backend = "test"

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        words = request.candidate[request.target_module].split()
        for record in request.records:
            if record.reward < 1.0 and record.task["answer"] not in words:
                words.append(record.task["answer"])
        return ProposerResult(texts=(" ".join(words),), usage=Usage(calls=1, total_tokens=5, cost_usd=None))

    async def aclose(self) -> None:
        return None


def _rows(split: str, n: int) -> list[dict[str, Any]]:
    return [{"task_id": f"{split}-{i}", "question": f"q{i}", "answer": f"w{i % 5}"} for i in range(n)]


def finish_a_run(root: Path, *, run_id: str = "damaged", seed: int = 5, budget: int = 60) -> Path:
    """A small completed run under ``root`` (events.jsonl, workspace.sqlite, result_manifest.json): its run
    directory."""
    config = root / "gepa.toml"
    config.write_text(
        f"""
[run]
run_id = "{run_id}"
output_dir = "{root / "runs"}"
seed = {seed}

[container]
url = "http://fake-container.test"

[dataset]
train_ids = {{count = 8}}
heldout_ids = {{count = 4}}
pareto_ids = {{count = 6}}

[proposer]
backend = "codex_app_server"

[gepa]
max_train_rollouts = {budget}
minibatch_size = 2

[cache]
mode = "off"
"""
    )
    fake = FakeContainer(
        rows={"train": _rows("train", 8), "test": _rows("test", 4)},
        score=lambda candidate, row: 1.0 if row["answer"] in candidate["instruction"].split() else 0.0,
        seed_candidate={"instruction": "answer w0"},
    )
    result = GepaRun(load_config(config), container_transport=fake.transport(), proposer=_Proposer()).execute()
    assert result.status == "completed"
    return Path(result.event_feed_path).parent


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed run's directory, made once."""
    return finish_a_run(tmp_path_factory.mktemp("damaged"))


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run's directory, to damage."""
    copy = tmp_path / "run"
    copy.mkdir()
    for path in finished_run.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    return copy


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """The structlog lines logged during the test."""
    with structlog.testing.capture_logs() as captured:
        yield captured


def _torn_warnings(logs: list[dict[str, Any]], feed: Path) -> list[str]:
    """Where (``file:line``) the warnings logged about a torn last line of ``feed`` point."""
    return [
        str(entry["file"])
        for entry in logs
        if entry["log_level"] == "warning" and "torn" in entry["event"] and str(entry.get("file")).startswith(str(feed))
    ]


# -- a torn last line ------------------------------------------------------------------------------------------


def test_events_replay_ignores_a_torn_last_line_with_a_warning(
    run_dir: Path, capsys: pytest.CaptureFixture[str], logs: list[dict[str, Any]]
) -> None:
    feed = run_dir / "events.jsonl"
    whole = main(["events", "replay", "--events", str(feed)])
    expected = capsys.readouterr().out
    lines = len(feed.read_bytes().splitlines())
    with feed.open("ab") as out:
        out.write(TORN)

    assert whole == 0
    assert main(["events", "replay", "--events", str(feed)]) == 0
    assert capsys.readouterr().out == expected
    warnings = _torn_warnings(logs, feed)
    assert warnings == [f"{feed}:{lines + 1}"]


def test_events_replay_of_two_joined_feeds_warns_where_the_numbers_go_back(
    run_dir: Path, capsys: pytest.CaptureFixture[str], logs: list[dict[str, Any]]
) -> None:
    feed = run_dir / "events.jsonl"
    assert main(["events", "replay", "--events", str(feed)]) == 0
    assert not [entry for entry in logs if "goes back" in entry["event"]]  # one run's feed: no warning
    lines = len(feed.read_bytes().splitlines())
    feed.write_bytes(feed.read_bytes() * 2)  # a second copy appended: its numbers start again at 1
    assert main(["events", "replay", "--events", str(feed)]) == 0
    warnings = [entry for entry in logs if entry["log_level"] == "warning" and "goes back" in entry["event"]]
    assert [entry["file"] for entry in warnings] == [f"{feed}:{lines + 1}"]  # once, at the first such line
    assert f"sequence number 1 follows {lines}" in warnings[0]["event"]


def test_a_torn_last_line_cut_inside_a_character_is_ignored_too(run_dir: Path, logs: list[dict[str, Any]]) -> None:
    feed = run_dir / "events.jsonl"
    events = list(read_feed(feed))
    with feed.open("ab") as out:
        out.write('{"type": "run.state", "message": "caf\u00e9'.encode()[:-1])  # half of a two-byte character
    assert [e.sequence_number for e in read_feed(feed)] == [e.sequence_number for e in events]
    assert len(list(render_timeline(feed))) == len(events)
    assert _torn_warnings(logs, feed)
    assert main(["events", "replay", "--events", str(feed)]) == 0  # the command as a whole, too


def test_a_damaged_line_in_the_middle_is_an_error_naming_file_and_line(run_dir: Path) -> None:
    feed = run_dir / "events.jsonl"
    lines = feed.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4][:20] + b"\n"
    feed.write_bytes(b"".join(lines))
    with pytest.raises(ValueError, match=r"events\.jsonl:5\b"):
        list(read_feed(feed))
    with pytest.raises(ConfigError, match=r"events\.jsonl:5\b"):
        list(render_timeline(feed))


def test_a_complete_last_line_without_a_newline_is_kept(run_dir: Path) -> None:
    feed = run_dir / "events.jsonl"
    count = len(list(read_feed(feed)))
    feed.write_bytes(feed.read_bytes().rstrip(b"\n"))
    assert len(list(read_feed(feed))) == count


def test_events_compare_ignores_a_torn_last_line_with_a_warning(
    run_dir: Path, capsys: pytest.CaptureFixture[str], logs: list[dict[str, Any]]
) -> None:
    normalized = run_dir / "events.normalized.jsonl"
    copy = run_dir / "copy.normalized.jsonl"
    write_normalized_feed(run_dir / "events.jsonl", copy)
    with copy.open("ab") as out:
        out.write(b'{"fields": {"accepted": tr')
    assert main(["events", "compare", "--left", str(normalized), "--right", str(copy)]) == 0
    assert "equal" in capsys.readouterr().out
    assert _torn_warnings(logs, copy)


# -- a corrupt workspace database -------------------------------------------------------------------------------


def _table_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        tables = (*DERIVED_TABLES, "event_stream_events", "manifests")
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        conn.close()


def test_repair_moves_a_corrupt_database_aside_and_rebuilds_it_from_the_feed(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = run_dir / "workspace.sqlite"
    counts = _table_counts(db)
    garbage = bytes(range(256)) * 64
    db.write_bytes(garbage)
    (run_dir / "workspace.sqlite-wal").write_bytes(b"not a wal either")

    assert main(["workspace", "repair", "--db", str(db), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    aside = run_dir / "workspace.sqlite.corrupt-1"
    assert summary["moved_aside"]["to"] == str(aside) and summary["moved_aside"]["problem"]
    assert aside.read_bytes() == garbage, "the corrupt file is kept, unchanged"
    assert (run_dir / "workspace.sqlite.corrupt-1-wal").read_bytes() == b"not a wal either"
    assert _table_counts(db) == counts
    status = workspace_status(db)["runs"][0]
    assert status["invariant_report"]["status"] == "ok", status["invariant_report"]

    db.write_bytes(garbage[::-1])  # damaged again: the first copy aside is not overwritten
    again = repair_workspace(db)
    assert again["moved_aside"]["to"] == str(run_dir / "workspace.sqlite.corrupt-2")
    assert aside.read_bytes() == garbage and again["status"] == "ok"


def test_repair_says_on_a_terminal_that_it_moved_a_corrupt_database_aside(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rich.console import Console

    from synth_opt.workspace import repair_command

    db = run_dir / "workspace.sqlite"
    db.write_bytes(b"\0garbage" * 1000)
    console = Console(force_terminal=True, width=200, record=True)
    assert repair_command(db, console=console) == 0
    text = console.export_text()
    assert "corrupt" in text and "workspace.sqlite.corrupt-1" in text and "events.jsonl" in text


def test_repair_of_a_corrupt_database_without_a_feed_refuses_and_keeps_the_file(run_dir: Path) -> None:
    db = run_dir / "workspace.sqlite"
    db.write_bytes(b"garbage" * 1000)
    (run_dir / "events.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"events\.jsonl"):
        repair_workspace(db)
    assert db.read_bytes() == b"garbage" * 1000
    assert not (run_dir / "workspace.sqlite.corrupt-1").exists()


def test_repair_does_not_move_the_database_of_a_live_run(run_dir: Path) -> None:
    db = run_dir / "workspace.sqlite"
    db.write_bytes(b"garbage" * 1000)
    with RunDirLock(run_dir), pytest.raises(RunLockedError):  # as a running optimizer holds it
        repair_workspace(db)
    assert db.read_bytes() == b"garbage" * 1000
    assert not (run_dir / "workspace.sqlite.corrupt-1").exists()


# -- rows deleted from a derived table ----------------------------------------------------------------------------


def test_half_of_the_frontier_cells_deleted_is_reported_by_name_and_repaired(run_dir: Path) -> None:
    db = run_dir / "workspace.sqlite"
    assert workspace_status(db)["runs"][0]["invariant_report"]["status"] == "ok"
    conn = sqlite3.connect(db)
    try:
        total = conn.execute("SELECT count(*) FROM frontier_cells").fetchone()[0]
        conn.execute("DELETE FROM frontier_cells WHERE rowid % 2 = 0")
        conn.commit()
        left = conn.execute("SELECT count(*) FROM frontier_cells").fetchone()[0]
    finally:
        conn.close()
    assert total > 4 and 0 < left < total

    run = workspace_status(db)["runs"][0]
    report = run["invariant_report"]
    assert run["projection_freshness"]["frontier_cells"]["status"] == "stale"
    assert report["status"] == "violated" and report["stale_tables"] == ["frontier_cells"]
    assert report["missing"]["frontier_cells"]["missing_rows"] == total - left
    assert "frontier_cells" in report["message"]

    summary = repair_workspace(db)
    assert summary["status"] == "ok" and summary["runs"]["damaged"]["restored_rows"] == {"frontier_cells": total - left}
    after = workspace_status(db)["runs"][0]
    assert after["projection_freshness"]["frontier_cells"]["status"] == "fresh"
    assert after["invariant_report"]["status"] == "ok"
