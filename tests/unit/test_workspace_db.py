"""The workspace database: schema and migrations, the batched writer, finalize's back-fill, freshness, invariant
reports, repair and status, against real SQLite files."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console

from synth_opt.errors import ConfigError, InvariantError
from synth_opt.events import Event, EventBus, UnknownEvent
from synth_opt.workspace import (
    SCHEMA_VERSION,
    WriterStats,
    finalize_workspace,
    repair_command,
    repair_workspace,
    run_workspace_writer,
    status_command,
    workspace_status,
)
from synth_opt.workspace.db import connect, migrate, open_workspace, write_transaction
from synth_opt.workspace.schema import DERIVED_TABLES, MIGRATIONS
from synth_opt.workspace.status import COUNT_KEYS
from synth_opt.workspace.writer import WorkspaceSink

RUN = "r1"
USAGE = {"calls": 1, "prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cost_usd": 0.001}


def emit(bus: EventBus, type: str, message: str, *, lane: str | None = None, **fields: Any) -> None:
    """A hand-made event of ``type``: some have fewer fields than a run writes (the workspace reads such feeds,
    an older version's, too), so they go on the bus as they are."""
    bus.emit(UnknownEvent(type, fields), message, lane=lane)


def _rollout(bus: EventBus, rid: str, cid: str, task: str, stage: str, reward: float, **extra: Any) -> None:
    emit(
        bus,
        "rollout.completed",
        f"{stage} {cid} on {task}",
        lane="rollout",
        rollout_id=rid,
        candidate_id=cid,
        task_id=task,
        stage=stage,
        reward=reward,
        status="completed",
        objectives={"outcome_reward": reward},
        error=None,
        feedback=None,
        trace_digest="t" + rid,
        duration_seconds=0.01,
        usage=USAGE,
        verifier_jobs=extra.get("verifier_jobs", []),
    )


def emit_run(bus: EventBus, *, finish: bool = True) -> None:
    """A small run that touches every derived table: 8 rollouts, a seed, one accepted child, cache and checkpoint."""
    emit(bus, "run.state", "state: created", lane="supervisor", state="created", run_id=RUN, config_path="/c.toml")
    emit(bus, "run.config", "config", digest="d1", decision_config={"gepa": {"max_cost_usd": 1.0}})
    emit(bus, "dataset.resolved", "ids", train_ids=["t1", "t2"], pareto_ids=["t1", "t2"], heldout_ids=["h1", "h2"])
    judge = [{"job_id": "j1", "kind": "judge", "status": "succeeded"}]
    _rollout(bus, "ro-1", "seed", "t1", "seed.pareto", 1.0, verifier_jobs=judge)
    _rollout(bus, "ro-2", "seed", "t2", "seed.pareto", 0.0)
    emit(
        bus,
        "candidate.registered",
        "seed",
        candidate_id="seed",
        parent_ids=[],
        module=None,
        proposal_index=None,
        payload={"instruction": "answer"},
    )
    emit(bus, "seed.scored", "seed", candidate_id="seed", scores={"t1": 1.0, "t2": 0.0}, mean_score=0.5)
    emit(bus, "candidate.status", "seed: seed", candidate_id="seed", parent_ids=[], status="seed", mean_score=0.5)
    emit(
        bus,
        "frontier.updated",
        "f",
        pool_version=0,
        pool_size=1,
        members=["seed"],
        rows_changed=["t1", "t2"],
        fronts={"t1": ["seed"], "t2": ["seed"]},
        best_candidate_id="seed",
        best_mean_score=0.5,
    )
    emit(bus, "run.state", "state: searching", lane="supervisor", state="searching")
    emit(
        bus,
        "proposal.planned",
        "p0",
        index=0,
        kind="reflection",
        parent_id="seed",
        parent_ids=["seed"],
        minibatch=["t1", "t2"],
        module="instruction",
        pool_version=0,
    )
    _rollout(bus, "ro-3", "seed", "t1", "p0.parent", 1.0)
    _rollout(bus, "ro-4", "seed", "t2", "p0.parent", 0.0)
    emit(
        bus,
        "reflection.requested",
        "r",
        lane="propose",
        proposal_index=0,
        candidate_id="seed",
        module="instruction",
        records=[
            {"task_id": "t1", "reward": 1.0, "feedback": None},
            {"task_id": "t2", "reward": 0.0, "feedback": "say w2"},
        ],
    )
    emit(
        bus,
        "proposer.called",
        "called",
        lane="propose",
        proposal_index=0,
        backend="test",
        model="m",
        outcome="ok",
        texts=1,
        duration_seconds=0.5,
        usage={"calls": 1, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 50, "cost_usd": None},
    )
    _rollout(bus, "ro-5", "child", "t1", "p0.child", 1.0)
    _rollout(bus, "ro-6", "child", "t2", "p0.child", 1.0)
    emit(
        bus,
        "proposal.created",
        "c",
        proposal_index=0,
        candidate_id="child",
        candidate_ids=["child"],
        parent_id="seed",
        parent_ids=["seed"],
        kind="reflection",
        module="instruction",
        pool_version=0,
        staleness=0,
    )
    emit(
        bus,
        "candidate.registered",
        "child",
        candidate_id="child",
        parent_ids=["seed"],
        module="instruction",
        proposal_index=0,
        payload={"instruction": "answer w2"},
    )
    emit(
        bus,
        "candidate.scored",
        "s",
        candidate_id="child",
        stage="p0.child",
        scores={"t1": 1.0, "t2": 1.0},
        objective_scores={},
        mean_score=1.0,
    )
    emit(
        bus,
        "acceptance.decided",
        "a",
        proposal_index=0,
        candidate_id="child",
        accepted=True,
        reason="improved",
        parent_sum=1.0,
        child_sum=2.0,
    )
    emit(
        bus,
        "candidate.status",
        "child: accepted",
        candidate_id="child",
        parent_ids=["seed"],
        status="accepted",
        reason="improved",
        proposal_index=0,
        mean_score=1.0,
        scores={"t1": 1.0, "t2": 1.0},
    )
    _rollout(bus, "ro-7", "child", "t1", "p0.pareto", 1.0)
    _rollout(bus, "ro-8", "child", "t2", "p0.pareto", 1.0)
    emit(
        bus,
        "frontier.updated",
        "f",
        pool_version=1,
        pool_size=2,
        members=["child", "seed"],
        rows_changed=["t1", "t2"],
        fronts={"t1": ["child", "seed"], "t2": ["child"]},
        best_candidate_id="child",
        best_mean_score=1.0,
    )
    emit(
        bus,
        "budget.updated",
        "b",
        lane="supervisor",
        proposal_index=0,
        used={"train_rollouts": 8, "heldout_rollouts": 0, "proposer_calls": 1, "tokens": 146, "cost_usd": 0.008},
        reserved={"train_rollouts": 0, "heldout_rollouts": 2},
        train_cap=10,
        accepted=1,
        rejected=0,
    )
    for action in ("miss", "write", "hit"):
        emit(bus, "cache.access", action, boundary="container.rollout", action=action, key="k1", namespace="ns")
    snapshot = {
        "version": 1,
        "commits": 1,
        "best_candidate_id": "child",
        "pool_size": 2,
        "state": {"pool_ids": []},
        "counters": {
            "rollouts_train": 8,
            "rollouts_heldout": 0,
            "rollout_usage": {"cost_usd": 0.008},
            "proposer_usage": {"cost_usd": None},
        },
    }
    emit(bus, "checkpoint.written", "cp", commits=1, payload=snapshot)
    emit(bus, "search.stopped", "stop", stop_reason="max_train_rollouts")
    if finish:
        emit(
            bus,
            "run.finished",
            "done",
            stop_reason="max_train_rollouts",
            best_candidate_id="child",
            seed_candidate_id="seed",
            best_train_score=1.0,
            seed_train_score=0.5,
        )
        emit(
            bus, "run.state", "state: completed", lane="supervisor", state="completed", stop_reason="max_train_rollouts"
        )


MANIFEST = {
    "run_id": RUN,
    "status": "completed",
    "stop_reason": "max_train_rollouts",
    "best_candidate_id": "child",
    "cost_usd": 0.008,
    "usage": {
        "rollout": {"calls": 8, "prompt_tokens": 80, "completion_tokens": 16, "total_tokens": 96, "cost_usd": 0.008},
        "proposer": {"calls": 1, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 50, "cost_usd": None},
    },
}


def build_workspace(tmp_path: Path, *, finish: bool = True) -> Path:
    """A run directory with events.jsonl, result_manifest.json and a finalized workspace.sqlite."""
    run_dir = tmp_path / "runs" / RUN
    run_dir.mkdir(parents=True)
    db = run_dir / "workspace.sqlite"
    seen: list[Event] = []
    bus = EventBus(run_dir / "events.jsonl")
    bus.on_event(seen.append)
    emit_run(bus, finish=finish)
    bus.close()
    sink = WorkspaceSink(db, RUN)
    try:
        sink.write(seen, WriterStats())
    finally:
        sink.close()
    if finish:
        manifest = {**MANIFEST, "manifest_path": str(run_dir / "result_manifest.json"), "workspace_db_path": str(db)}
        (run_dir / "result_manifest.json").write_text(json.dumps(manifest))
        finalize_workspace(db, run_dir / "events.jsonl", run_id=RUN, manifest=manifest)
    return db


def count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def sql(db: Path, statement: str) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


# -- schema ---------------------------------------------------------------------------------------------------


def test_a_new_workspace_has_the_schema_version_and_the_pragmas(tmp_path: Path) -> None:
    conn = open_workspace(tmp_path / "w.sqlite")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        spec = """runs state_transitions candidates candidate_payloads candidate_deltas acceptance_decisions
            frontier_cells plan_links rollouts scores evidence_frames trace_annotations verifier_jobs
            subagent_invocations cache_profiles cache_accesses event_stream_events usage_ledger stopper_states
            checkpoints manifests projection_freshness invariant_reports"""
        assert set(spec.split()) <= tables
    finally:
        conn.close()


def test_migrations_apply_in_order_and_only_once(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite"
    open_workspace(path).close()
    later = (*MIGRATIONS, ("ALTER TABLE runs ADD COLUMN note TEXT",), ("UPDATE runs SET note = 'v' || 3",))
    conn = connect(path)
    try:
        conn.execute("INSERT INTO runs (run_id) VALUES ('x')")
        assert migrate(conn, later) == SCHEMA_VERSION + 2
        assert migrate(conn, later) == SCHEMA_VERSION + 2  # already there: nothing runs twice
        assert conn.execute("SELECT note FROM runs").fetchone()[0] == "v3"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 2
        with pytest.raises(InvariantError, match="newer"):
            migrate(conn, MIGRATIONS)
    finally:
        conn.close()


def test_a_failed_migration_leaves_the_old_version(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite"
    open_workspace(path).close()
    conn = connect(path)
    try:
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, (*MIGRATIONS, ("CREATE TABLE extra (x)", "NOT SQL")))
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone()[0] == 0
    finally:
        conn.close()


def test_begin_immediate_takes_the_write_lock_at_once(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite"
    first, second = open_workspace(path), connect(path)
    try:
        second.execute("PRAGMA busy_timeout = 0")
        with write_transaction(first):
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                second.execute("BEGIN IMMEDIATE")
            assert second.execute("SELECT count(*) FROM runs").fetchone()[0] == 0  # readers still read (WAL)
        with write_transaction(second):
            second.execute("INSERT INTO runs (run_id) VALUES ('r')")
    finally:
        first.close()
        second.close()


# -- the writer -----------------------------------------------------------------------------------------------


def rollout_events(n: int) -> list[Event]:
    events = []
    for i in range(1, n + 1):
        fields = {
            "rollout_id": f"ro-{i}",
            "candidate_id": "c",
            "task_id": f"t{i}",
            "stage": "seed.pareto",
            "reward": 1.0,
            "status": "completed",
            "objectives": {"r": 1.0},
            "usage": USAGE,
            "verifier_jobs": [],
        }
        events.append(Event(i, "2026-01-01T00:00:00.000Z", "rollout.completed", "r", fields, "rollout"))
    return events


@pytest.mark.anyio
@pytest.mark.parametrize("process", [False, True], ids=["thread", "child-process"])
async def test_the_writer_drains_a_stream_in_batches_of_batch_size(tmp_path: Path, process: bool) -> None:
    db = tmp_path / "w.sqlite"
    send, receive = anyio.create_memory_object_stream[Event](2000)
    for event in rollout_events(1200):
        send.send_nowait(event)
    send.close()
    stats = WriterStats()
    await run_workspace_writer(db, receive, run_id=RUN, batch_size=500, process=process, stats=stats)
    assert (stats.batches, stats.events, stats.failed_batches, stats.process) == (3, 1200, 0, process)
    assert count(db, "event_stream_events") == count(db, "rollouts") == count(db, "usage_ledger") == 1200


@pytest.mark.anyio
@pytest.mark.parametrize("process", [False, True], ids=["thread", "child-process"])
async def test_the_writer_commits_within_flush_seconds_while_the_stream_stays_open(
    tmp_path: Path, process: bool
) -> None:
    db = tmp_path / "w.sqlite"
    send, receive = anyio.create_memory_object_stream[Event](100)
    stats = WriterStats()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: run_workspace_writer(db, receive, run_id=RUN, flush_seconds=0.05, process=process, stats=stats)
        )
        for event in rollout_events(3):
            await send.send(event)
        for _ in range(500):  # the stream stays open: only the flush deadline can commit these
            if db.exists() and _safe_count(db, "rollouts") == 3:
                break
            await anyio.sleep(0.02)
        assert _safe_count(db, "rollouts") == 3
        send.close()
    assert stats.events == 3 and stats.batches >= 1


def _safe_count(db: Path, table: str) -> int:
    try:
        return count(db, table)
    except sqlite3.OperationalError:  # schema not created yet
        return 0


@pytest.mark.anyio
@pytest.mark.parametrize("process", [False, True], ids=["thread", "child-process"])
async def test_a_cancelled_writer_commits_what_it_holds(tmp_path: Path, process: bool) -> None:
    db = tmp_path / "w.sqlite"
    send, receive = anyio.create_memory_object_stream[Event](100)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: run_workspace_writer(db, receive, run_id=RUN, flush_seconds=30, process=process))
        for event in rollout_events(5):
            await send.send(event)
        await anyio.sleep(0.2)
        tg.cancel_scope.cancel()
    send.close()
    assert count(db, "rollouts") == 5


@pytest.mark.anyio
async def test_without_a_child_process_the_writer_writes_from_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.executable", str(tmp_path / "no-such-python"))
    db = tmp_path / "w.sqlite"
    send, receive = anyio.create_memory_object_stream[Event](100)
    for event in rollout_events(10):
        send.send_nowait(event)
    send.close()
    stats = WriterStats()
    await run_workspace_writer(db, receive, run_id=RUN, stats=stats)
    assert (stats.process, stats.events, stats.batches) == (False, 10, 1)
    assert count(db, "rollouts") == 10


@pytest.mark.anyio
async def test_a_run_fed_through_the_bus_matches_its_feed(tmp_path: Path) -> None:
    run_dir = tmp_path / RUN
    run_dir.mkdir()
    db, feed = run_dir / "workspace.sqlite", run_dir / "events.jsonl"
    bus = EventBus(feed)
    stream = bus.subscribe(4096)
    stats = WriterStats()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: run_workspace_writer(db, stream, run_id=RUN, stats=stats))
        emit_run(bus)
        bus.close_subscribers()
    bus.close()
    lines = feed.read_text().splitlines()
    assert stats.events == len(lines) and bus.dropped == 0
    finalize_workspace(db, feed, run_id=RUN, manifest={**MANIFEST, "manifest_path": "m"})
    run = workspace_status(db)["runs"][0]
    assert run["invariant_report"]["status"] == "ok", run["invariant_report"]
    assert run["events"] == len(lines)
    assert (run["candidates"], run["accepted"], run["rollouts"], run["status"]) == (2, 1, 8, "completed")


# -- finalize, freshness, invariants and repair ---------------------------------------------------------------


def test_finalize_backfills_the_events_the_writer_missed_and_is_idempotent(tmp_path: Path) -> None:
    run_dir = tmp_path / RUN
    run_dir.mkdir()
    db, feed = run_dir / "workspace.sqlite", run_dir / "events.jsonl"
    seen: list[Event] = []
    bus = EventBus(feed)
    bus.on_event(seen.append)
    emit_run(bus)
    bus.close()
    sink = WorkspaceSink(db, RUN)
    try:  # the writer saw the rollouts only (as if the bus had dropped the rest)
        sink.write([e for e in seen if e.type.startswith("rollout.")], WriterStats())
    finally:
        sink.close()
    before = workspace_status(db)["runs"][0]
    assert before["projection_freshness"]["event_stream_events"]["missing_rows"] == len(seen) - 8
    finalize_workspace(db, feed, run_id=RUN, manifest=MANIFEST)
    counts = {t: count(db, t) for t in (*DERIVED_TABLES, "event_stream_events", "manifests")}
    finalize_workspace(db, feed, run_id=RUN, manifest=MANIFEST)
    assert counts == {t: count(db, t) for t in counts}
    assert counts["event_stream_events"] == len(seen) and counts["rollouts"] == 8 and counts["manifests"] == 1
    after = workspace_status(db)["runs"][0]
    assert after["invariant_report"]["status"] == "ok", after["invariant_report"]
    conn = sqlite3.connect(db)
    try:  # the delta of a back-filled child still sees its back-filled parent's text
        assert conn.execute("SELECT old_text_sha256 IS NOT NULL FROM candidate_deltas").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM projection_freshness WHERE status = 'fresh'").fetchone()[0] > 10
        assert conn.execute("SELECT status FROM invariant_reports ORDER BY report_id DESC").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_finalize_without_a_manifest_reads_the_one_beside_the_database(tmp_path: Path) -> None:
    db = build_workspace(tmp_path)
    sql(db, "DELETE FROM manifests")
    finalize_workspace(db, db.parent / "events.jsonl", run_id=RUN, manifest=None)
    assert count(db, "manifests") == 1
    assert workspace_status(db)["runs"][0]["invariant_report"]["status"] == "ok"
    (db.parent / "result_manifest.json").unlink()
    sql(db, "DELETE FROM manifests")
    finalize_workspace(db, db.parent / "events.jsonl", run_id=RUN, manifest=None)
    assert count(db, "manifests") == 0


def test_a_delta_written_before_its_parent_was_known_is_reported_and_repaired(tmp_path: Path) -> None:
    run_dir = tmp_path / RUN
    run_dir.mkdir()
    db, feed = run_dir / "workspace.sqlite", run_dir / "events.jsonl"
    seen: list[Event] = []
    bus = EventBus(feed)
    bus.on_event(seen.append)
    emit_run(bus)
    bus.close()
    sink = WorkspaceSink(db, RUN)
    try:  # the writer missed the seed's registration but saw the child's
        sink.write([e for e in seen if e.fields.get("candidate_id") != "seed"], WriterStats())
    finally:
        sink.close()
    finalize_workspace(db, feed, run_id=RUN, manifest=MANIFEST)
    report = workspace_status(db)["runs"][0]["invariant_report"]
    assert report["checks"]["deltas_know_their_parent"] == {"status": "violated", "deltas": ["child <- seed"]}
    assert report["repair_hint"] is not None
    assert repair_workspace(db)["status"] == "ok"
    report = workspace_status(db)["runs"][0]["invariant_report"]
    assert report["status"] == "ok" and report["checks"]["deltas_know_their_parent"]["status"] == "ok"


def test_usage_ledger_agrees_with_the_manifest(tmp_path: Path) -> None:
    db = build_workspace(tmp_path)
    report = workspace_status(db)["runs"][0]["invariant_report"]
    assert report["checks"]["usage_matches_manifest"]["status"] == "ok"
    assert report["checks"]["rollout_rows_agree"] == {
        "status": "ok",
        "rollouts": 8,
        "evidence_frames": 8,
        "usage_ledger": 8,
    }
    sql(db, "UPDATE usage_ledger SET total_tokens = total_tokens + 1 WHERE rowid = 1")
    report = workspace_status(db)["runs"][0]["invariant_report"]
    assert report["status"] == "violated" and "usage_matches_manifest" in report["violated_checks"]


@pytest.mark.parametrize("table", [*DERIVED_TABLES, "manifests", "event_stream_events"])
def test_rows_deleted_from_a_table_are_reported_and_repaired(tmp_path: Path, table: str) -> None:
    db = build_workspace(tmp_path)
    expected = count(db, table)
    assert expected > 0, f"the sample run should fill {table}"
    assert workspace_status(db)["runs"][0]["invariant_report"]["status"] == "ok"
    where = "WHERE sequence_number > 20" if table == "event_stream_events" else ""
    sql(db, f"DELETE FROM {table} {where}")

    run = workspace_status(db)["runs"][0]
    report = run["invariant_report"]
    assert run["projection_freshness"][table]["status"] == "stale"
    assert report["status"] == "violated" and table in report["stale_tables"]
    assert report["missing"][table]["missing_rows"] > 0 and report["missing"][table]["sample"]
    assert report["repair_hint"] == f"synth-opt workspace repair --db {db}"
    assert table in report["message"] and report["repair_hint"] in report["message"]

    summary = repair_workspace(db)
    assert summary["status"] == "ok" and summary["runs"][RUN]["invariant_status"] == "ok"
    assert count(db, table) == expected
    after = workspace_status(db)["runs"][0]
    assert after["projection_freshness"][table]["status"] == "fresh"
    assert after["invariant_report"]["status"] == "ok"


def test_a_run_still_going_reports_a_lagging_writer_not_a_violation(tmp_path: Path) -> None:
    db = build_workspace(tmp_path, finish=False)
    sql(db, "DELETE FROM event_stream_events WHERE sequence_number > 25")
    report = workspace_status(db)["runs"][0]["invariant_report"]
    assert report["status"] == "lagging" and report["lagging_tables"] == ["event_stream_events"]
    assert report["repair_hint"] is None


def test_a_malformed_event_is_named_by_the_invariant_report(tmp_path: Path) -> None:
    db = tmp_path / "w.sqlite"
    sink = WorkspaceSink(db, RUN)
    try:
        sink.write(
            [Event(1, "2026-01-01T00:00:00Z", "rollout.completed", "bad", {"task_id": "t"}, "rollout")], WriterStats()
        )
    finally:
        sink.close()
    report = workspace_status(db)["runs"][0]["invariant_report"]
    assert report["checks"]["events_project"] == {"status": "violated", "events": [1]}


# -- status and commands --------------------------------------------------------------------------------------


def test_status_has_every_key_the_spec_lists(tmp_path: Path) -> None:
    db = build_workspace(tmp_path)
    status = workspace_status(str(db))
    assert set(status) == {"runs", "db_path", "schema_version"}
    assert status["schema_version"] == SCHEMA_VERSION and status["db_path"] == str(db)
    (run,) = status["runs"]
    spec_keys = {
        "run_id",
        "status",
        "rollout_job_status_counts",
        "rollout_event_type_counts",
        "score_objective_counts",
        "evidence_frame_kind_counts",
        "verifier_job_status_counts",
        "cache_access_action_counts",
        "cache_access_boundary_counts",
        "event_stream_event_type_counts",
        "usage_ledger_boundary_counts",
        "projection_freshness",
        "invariant_report",
        "candidates",
        "accepted",
        "rollouts",
        "best_candidate_id",
    }
    assert spec_keys <= set(run) and set(COUNT_KEYS) <= set(run)
    assert run["rollout_job_status_counts"] == {"completed": 8}
    assert run["rollout_event_type_counts"] == {"rollout.completed": 8}
    assert run["score_objective_counts"] == {"outcome_reward": 8}
    assert run["evidence_frame_kind_counts"] == {"child": 2, "parent": 2, "pareto": 2, "seed": 2}
    assert run["verifier_job_status_counts"] == {"succeeded": 1}
    assert run["cache_access_action_counts"] == {"hit": 1, "miss": 1, "write": 1}
    assert run["cache_access_boundary_counts"] == {"container.rollout": 3}
    assert run["usage_ledger_boundary_counts"] == {"container.rollout": 8, "proposer.test": 1}
    assert run["event_stream_event_type_counts"]["candidate.registered"] == 2
    assert (run["best_candidate_id"], run["seed_candidate_id"], run["stop_reason"]) == (
        "child",
        "seed",
        "max_train_rollouts",
    )
    assert run["stopper"]["completion_observed"] == 1 and run["stopper"]["budget_stop_observed"] == 1
    assert run["frontier_size"] == 2
    assert run["candidate_status_counts"] == {"accepted": 1, "seed": 1}


def test_checkpoints_keep_the_whole_snapshot_the_feed_leaves_out(tmp_path: Path) -> None:
    db = build_workspace(tmp_path)
    feed = [json.loads(line) for line in (db.parent / "events.jsonl").read_text().splitlines()]
    (line,) = [e for e in feed if e["type"] == "checkpoint.written"]
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT commits, state, generation, best_candidate_id, candidate_count, frontier_count, rollouts, "
            "cost_usd, payload_json FROM checkpoints"
        ).fetchone()
    finally:
        conn.close()
    assert row[:8] == (1, "searching", 1, "child", 2, 2, 8, 0.008)
    assert json.loads(row[8])["counters"]["rollouts_train"] == 8
    assert line["fields"]["payload"] != json.loads(row[8])


def test_a_service_database_also_gets_the_queue_counts(tmp_path: Path) -> None:
    db = build_workspace(tmp_path)
    for table in ("run_requests", "operations", "resource_leases"):
        sql(db, f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, status TEXT)")
    sql(db, "INSERT INTO run_requests (status) VALUES ('queued'), ('queued'), ('completed')")
    status = workspace_status(db)
    assert status["run_request_status_counts"] == {"completed": 1, "queued": 2}
    assert status["operation_status_counts"] == {} and status["resource_lease_status_counts"] == {}
    assert status["projection_status_counts"]["fresh"] > 0
    assert status["invariant_status_counts"] == {"ok": 1}


def test_status_of_a_missing_or_foreign_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.sqlite does not exist"):
        workspace_status(tmp_path / "nowhere.sqlite")
    empty = tmp_path / "empty.sqlite"
    sql(empty, "PRAGMA user_version = 0")
    with pytest.raises(ConfigError, match="has not created the workspace tables yet"):
        workspace_status(empty)
    other = tmp_path / "other.sqlite"
    sql(other, "CREATE TABLE t (x)")
    with pytest.raises(ConfigError, match="no synth_opt workspace"):
        workspace_status(other)
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all, just text " * 40)
    with pytest.raises(ConfigError, match="not a SQLite database"):
        workspace_status(text)


def test_status_command_prints_json_off_a_terminal_and_tables_on_one(tmp_path: Path) -> None:
    db = build_workspace(tmp_path)
    out = io.StringIO()
    assert status_command(db, as_json=False, console=Console(file=out, force_terminal=False)) == 0
    assert json.loads(out.getvalue())["runs"][0]["run_id"] == RUN
    out = io.StringIO()
    assert status_command(db, as_json=False, console=Console(file=out, force_terminal=True, width=160)) == 0
    assert "projection freshness" in out.getvalue() and "rollout_job_status_counts" in out.getvalue()
    out = io.StringIO()
    assert status_command(db, as_json=True, console=Console(file=out, force_terminal=True)) == 0
    assert json.loads(out.getvalue())["schema_version"] == SCHEMA_VERSION


def test_repair_command_exit_codes(tmp_path: Path) -> None:
    db = build_workspace(tmp_path)
    sql(db, "DELETE FROM rollouts")
    out = io.StringIO()
    assert repair_command(db, console=Console(file=out, force_terminal=True, width=200)) == 0
    assert "rollouts +8" in out.getvalue()
    sql(db, "DELETE FROM event_stream_events WHERE type = 'rollout.completed'")
    (db.parent / "events.jsonl").unlink()  # the source is gone: the repair cannot restore it
    out = io.StringIO()
    assert repair_command(db, console=Console(file=out, force_terminal=False)) == 1
    assert json.loads(out.getvalue())["status"] == "violated"
    with pytest.raises(ConfigError):
        repair_workspace(tmp_path / "missing.sqlite")
