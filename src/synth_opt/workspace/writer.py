"""The workspace writer: drains a bus subscription into ``workspace.sqlite`` in batched transactions, and the
end-of-run finalize that back-fills from ``events.jsonl``.

The writer is the only task that writes a run's workspace while the run goes, and it never slows the pipeline:
the bus hands it events through a bounded stream (dropping, and counting, what a full stream cannot take), and the
batches are projected and committed by a child process (:mod:`synth_opt.workspace.child`), so that work holds
neither the event loop nor the run's GIL. A batch that is not written is logged and left to
:func:`finalize_workspace`, which back-fills every event of ``events.jsonl`` that the tables do not hold.

Why sqlite3 here and not aiosqlite (which the service's live readers use, :mod:`synth_opt.workspace.live`): the
writing happens in a separate process with its own synchronous loop (read a line, commit a batch), the single
writer of the file, so there is no event loop there to keep free. Only when that process cannot start or dies does
this process write the batches itself, through the same :class:`WorkspaceSink` in a worker thread: one code path for
the projection and its transactions, and the run's loop is still never blocked.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.memory import MemoryObjectReceiveStream

from synth_opt.errors import ConfigError
from synth_opt.events import Event, utc_now
from synth_opt.events.normalize import read_feed as events_of_feed
from synth_opt.logs import get_logger
from synth_opt.workspace.db import (
    apply_rows,
    load_context,
    open_workspace,
    refresh_cache_profiles,
    store_events,
    write_transaction,
)
from synth_opt.workspace.freshness import refresh_health
from synth_opt.workspace.projector import ProjectionContext, project_batch
from synth_opt.workspace.rows import Row, dumps, float_or_none, str_or_none

__all__ = [
    "WorkspaceSink",
    "WriterStats",
    "backfill_feed",
    "complete_workspace",
    "finalize_workspace",
    "manifest_row",
    "read_feed",
    "run_workspace_writer",
    "stored_manifest",
]

_log = get_logger("synth_opt.workspace")
_POLL_SECONDS = 0.01
_CHILD_EXIT_SECONDS = 60.0


@dataclass(slots=True)
class WriterStats:
    """What a writer did: batches and events committed, batches that failed (left for the back-fill), and whether
    it wrote from a child process."""

    batches: int = 0
    events: int = 0
    failed_batches: int = 0
    last_error: str | None = None
    process: bool = False

    def add(self, other: WriterStats) -> None:
        self.batches += other.batches
        self.events += other.events
        self.failed_batches += other.failed_batches
        self.last_error = other.last_error or self.last_error


class WorkspaceSink:
    """One writing connection and the projection context of one run; not thread-safe (one caller at a time)."""

    def __init__(self, db_path: Path, run_id: str) -> None:
        self.run_id = run_id
        self.conn = open_workspace(db_path)
        try:
            self.context = load_context(self.conn, run_id)
        except BaseException:
            self.conn.close()
            raise

    def write(self, events: list[Event], stats: WriterStats) -> None:
        """Commit one batch; a database error is counted and logged, never raised (the back-fill repairs it)."""
        try:
            store_events(self.conn, self.run_id, events, self.context)
        except sqlite3.Error as error:
            stats.failed_batches += 1
            stats.last_error = f"{type(error).__name__}: {error}"
            _log.warning(
                "workspace events not written; the back-fill will add them", events=len(events), error=str(error)
            )
            return
        stats.batches += 1
        stats.events += len(events)

    def close(self) -> None:
        self.conn.close()


async def run_workspace_writer(
    db_path: Path,
    events: MemoryObjectReceiveStream[Event],
    *,
    run_id: str,
    batch_size: int = 500,
    flush_seconds: float = 0.2,
    process: bool = True,
    stats: WriterStats | None = None,
) -> None:
    """Write every event received to the workspace at ``db_path``: ``batch_size`` events (or what arrived within
    ``flush_seconds`` of a batch's first event) per ``BEGIN IMMEDIATE`` transaction. Returns after a final flush
    once the stream is closed; on cancellation it flushes what it holds (shielded) and re-raises.

    With ``process`` (the default) a child process commits the batches; if it cannot start or dies, the writer
    goes on from a worker thread of this process (``process=False`` does that from the start)."""
    stats = stats if stats is not None else WriterStats()
    async with events:
        child = await _start_child(db_path, run_id) if process else None
        stats.process = child is not None
        sink: WorkspaceSink | None = None
        pending: list[Event] = []
        try:
            open_ = True
            while open_:
                open_ = await _fill(events, pending, batch_size, flush_seconds)
                if pending:
                    batch, pending = pending, []
                    child, sink = await _write(batch, child, sink, db_path, run_id, stats)
        finally:
            with anyio.CancelScope(shield=True):
                if pending:
                    child, sink = await _write(pending, child, sink, db_path, run_id, stats)
                if child is not None:
                    await _stop_child(child, stats)
                if sink is not None:
                    await anyio.to_thread.run_sync(sink.close)


async def _fill(
    events: MemoryObjectReceiveStream[Event], pending: list[Event], batch_size: int, flush_seconds: float
) -> bool:
    """Add events to ``pending`` until it is full or ``flush_seconds`` passed since its first event; False once
    the stream has ended. Waiting is done by polling: cancelling a pending ``receive`` could lose an item."""
    try:
        if not pending:
            pending.append(await events.receive())
        deadline = anyio.current_time() + flush_seconds
        while len(pending) < batch_size:
            try:
                pending.append(events.receive_nowait())
            except anyio.WouldBlock:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    break
                await anyio.sleep(min(remaining, _POLL_SECONDS))
    except anyio.EndOfStream:
        return False
    return True


async def _start_child(db_path: Path, run_id: str) -> Process | None:
    command = [sys.executable, "-m", "synth_opt.workspace.child", str(db_path), run_id]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # import what this process does
    try:
        return await anyio.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=env)
    except OSError as error:
        _log.warning("workspace writer process did not start; writing from a thread", error=str(error))
        return None


async def _write(
    batch: list[Event],
    child: Process | None,
    sink: WorkspaceSink | None,
    db_path: Path,
    run_id: str,
    stats: WriterStats,
) -> tuple[Process | None, WorkspaceSink | None]:
    """Hand one batch to the child process, or write it from a worker thread when there is no (live) child."""
    if child is not None and child.stdin is not None:
        try:
            lines = ",".join(e.encoded if e.encoded is not None else dumps(e.to_json()) for e in batch)
            await child.stdin.send(("[" + lines + "]\n").encode())
            return child, sink
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as error:
            _log.warning("workspace writer process died; writing from a thread", error=str(error))
            await _stop_child(child, stats)
            child = None
    if sink is None:
        try:
            sink = await anyio.to_thread.run_sync(WorkspaceSink, db_path, run_id)
        except (sqlite3.Error, OSError) as error:
            stats.failed_batches += 1
            stats.last_error = f"{type(error).__name__}: {error}"
            _log.warning(
                "workspace cannot be opened; the back-fill will add these events", db=str(db_path), error=str(error)
            )
            return child, None
    await anyio.to_thread.run_sync(sink.write, batch, stats)
    return child, sink


async def _stop_child(child: Process, stats: WriterStats) -> None:
    """Close the child's stdin (it commits what it has and exits) and collect its stats; kill it if it hangs."""
    output = b""
    with anyio.move_on_after(_CHILD_EXIT_SECONDS):
        if child.stdin is not None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await child.stdin.aclose()
        if child.stdout is not None:
            async for chunk in child.stdout:
                output += chunk
        await child.wait()
    if child.returncode is None:
        child.kill()
        await child.wait()
    await child.aclose()
    lines = output.decode(errors="replace").strip().splitlines()
    try:
        stats.add(WriterStats(**json.loads(lines[-1])))
    except (IndexError, ValueError, TypeError):
        stats.failed_batches += 1
        stats.last_error = f"workspace writer process exited with {child.returncode} without its stats"


def read_feed(feed_path: Path) -> list[Event]:
    """The events of an ``events.jsonl`` (none when it is missing). A torn last line is left out with a warning;
    any other damaged line is a :class:`~synth_opt.errors.ConfigError` naming the file and line, since the tables
    rebuilt without its event would never agree with the feed."""
    if not feed_path.exists():
        return []
    try:
        return list(events_of_feed(feed_path))
    except ValueError as error:  # names the file and line
        raise ConfigError(
            f"{error}; only a torn last line can be left out: restore {feed_path.name} from a copy (or delete that "
            "line, losing its event), then run the command again",
            feed=str(feed_path),
        ) from None


def backfill_feed(conn: sqlite3.Connection, feed_path: Path, run_id: str) -> int:
    """Project and store the events of ``feed_path`` that ``event_stream_events`` lacks; returns how many. The
    projection context is folded from the whole feed in order, so a back-filled delta sees its parent."""
    have = {r[0] for r in conn.execute("SELECT sequence_number FROM event_stream_events WHERE run_id = ?", (run_id,))}
    if _holds_every_line(have, feed_path):
        return 0  # the usual case: the live writer missed nothing, so the feed need not be parsed
    context = ProjectionContext()
    rows: list[Row] = []
    added = 0
    for event in read_feed(feed_path):
        if event.sequence_number in have:
            context.observe(event)
            continue
        rows.extend(project_batch([event], run_id, context))
        added += 1
    if rows:
        cache = any(table == "cache_accesses" for table, _ in rows)
        with write_transaction(conn):
            apply_rows(conn, rows)
            if cache:
                refresh_cache_profiles(conn, run_id)
    return added


def _holds_every_line(have: set[int], feed_path: Path) -> bool:
    """True when ``have`` holds sequence numbers 1..N for the N complete lines of the feed (the bus numbers its
    lines that way), counted without parsing them."""
    if not feed_path.exists():
        return True
    complete = 0
    with feed_path.open("rb") as fh:
        for line in fh:
            if line.endswith(b"\n"):
                complete += 1
    return len(have) >= complete and all(number in have for number in range(1, complete + 1))


def manifest_row(run_id: str, manifest: dict[str, Any], *, written_at: str | None = None) -> Row:
    return Row(
        "manifests",
        {
            "run_id": run_id,
            "manifest_path": str_or_none(manifest.get("manifest_path")),
            "status": str_or_none(manifest.get("status")),
            "stop_reason": str_or_none(manifest.get("stop_reason")),
            "best_candidate_id": str_or_none(manifest.get("best_candidate_id")),
            "cost_usd": float_or_none(manifest.get("cost_usd")),
            "workspace_db_path": str_or_none(manifest.get("workspace_db_path")),
            "written_at": written_at or utc_now(),
            "manifest_json": dumps(manifest),
        },
    )


def finalize_workspace(db_path: Path, feed_path: Path, *, run_id: str, manifest: dict[str, Any] | None) -> None:
    """At the end of a run (sync; idempotent): back-fill the events the writer missed, store the manifest (or, when
    None, the ``result_manifest.json`` beside the database if it is this run's), and refresh projection freshness
    and the invariant report."""
    manifest = manifest if manifest is not None else stored_manifest(Path(db_path), run_id)
    conn = open_workspace(db_path)
    try:
        backfill_feed(conn, feed_path, run_id)
        if manifest is not None:
            with write_transaction(conn):
                apply_rows(conn, [manifest_row(run_id, manifest)])
        refresh_health(conn, Path(db_path), run_id)
    finally:
        conn.close()


def complete_workspace(db_path: Path, feed_path: Path, *, run_id: str) -> bool:
    """A completed run whose workspace lacks its manifest row (killed after ``result_manifest.json`` was written
    and before the workspace stored it): finalize it now. Cheap when nothing is missing (one query); True when it
    finalized."""
    if not db_path.is_file():
        return False
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        if db.execute("SELECT 1 FROM manifests WHERE run_id = ?", (run_id,)).fetchone() is not None:
            return False
    finalize_workspace(db_path, feed_path, run_id=run_id, manifest=None)
    return True


def stored_manifest(db_path: Path, run_id: str) -> dict[str, Any] | None:
    """The ``result_manifest.json`` beside a workspace, if it belongs to ``run_id``."""
    try:
        data = json.loads((db_path.parent / "result_manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("run_id") == run_id else None
