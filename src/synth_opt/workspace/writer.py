"""The workspace writer: drains a bus subscription into ``workspace.sqlite`` in batched transactions, and the
end-of-run finalize that back-fills from ``events.jsonl``.

The writer is the only task that writes a run's workspace while the run goes. It never slows the pipeline: the bus
hands it events through a bounded stream and drops (and counts) what a full stream cannot take, and each batch is
written in a worker thread, so the event loop only waits on the stream. A batch that fails to write is logged and
left to :func:`finalize_workspace`, which back-fills every event of ``events.jsonl`` the tables do not hold.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from synth_opt.events import Event, utc_now
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
    "WriterStats",
    "backfill_feed",
    "finalize_workspace",
    "manifest_row",
    "read_feed",
    "run_workspace_writer",
]

_log = logging.getLogger("synth_opt.workspace")
_POLL_SECONDS = 0.01


@dataclass(slots=True)
class WriterStats:
    """What a writer did: batches and events written, batches that failed (left for the back-fill)."""

    batches: int = 0
    events: int = 0
    failed_batches: int = 0
    last_error: str | None = None


class _Sink:
    """The synchronous side of the writer; every call runs in a worker thread, one at a time."""

    def __init__(self, db_path: Path, run_id: str) -> None:
        self.run_id = run_id
        self.conn = open_workspace(db_path)
        try:
            self.context = load_context(self.conn, run_id)
        except BaseException:
            self.conn.close()
            raise

    def write(self, events: list[Event], stats: WriterStats) -> None:
        try:
            store_events(self.conn, self.run_id, events, self.context)
        except sqlite3.Error as error:
            stats.failed_batches += 1
            stats.last_error = f"{type(error).__name__}: {error}"
            _log.warning("workspace: %d events not written (%s); the back-fill will add them", len(events), error)
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
    stats: WriterStats | None = None,
) -> None:
    """Write every event received to the workspace at ``db_path``, ``batch_size`` events (or what arrived within
    ``flush_seconds`` of a batch's first event) per ``BEGIN IMMEDIATE`` transaction. Returns after a final flush
    once the stream is closed; on cancellation it flushes what it holds (shielded) and re-raises."""
    stats = stats if stats is not None else WriterStats()
    pending: list[Event] = []
    sink: _Sink | None = None
    try:
        sink = await anyio.to_thread.run_sync(_Sink, db_path, run_id)
    except (sqlite3.Error, OSError) as error:
        stats.last_error = f"{type(error).__name__}: {error}"
        _log.warning("workspace %s cannot be opened (%s); the run goes on without it", db_path, error)
        await events.aclose()
        return
    try:
        async with events:
            open_ = True
            while open_:
                open_ = await _fill(events, pending, batch_size, flush_seconds)
                if pending:
                    batch, pending = pending, []
                    await anyio.to_thread.run_sync(sink.write, batch, stats)
    finally:
        with anyio.CancelScope(shield=True):
            if pending:
                await anyio.to_thread.run_sync(sink.write, pending, stats)
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


def read_feed(feed_path: Path) -> list[Event]:
    """Every complete line of an ``events.jsonl`` (a torn last line is skipped)."""
    events: list[Event] = []
    if not feed_path.exists():
        return events
    with feed_path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            try:
                events.append(Event.from_json(json.loads(line)))
            except (ValueError, KeyError):
                continue
    return events


def backfill_feed(conn: sqlite3.Connection, feed_path: Path, run_id: str) -> int:
    """Project and store the events of ``feed_path`` that ``event_stream_events`` lacks; returns how many. The
    projection context is folded from the whole feed in order, so a back-filled delta sees its parent."""
    have = {r[0] for r in conn.execute("SELECT sequence_number FROM event_stream_events WHERE run_id = ?", (run_id,))}
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
    """At the end of a run (sync; idempotent): back-fill the events the writer missed, store the manifest, and
    refresh projection freshness and the invariant report."""
    conn = open_workspace(db_path)
    try:
        backfill_feed(conn, feed_path, run_id)
        if manifest is not None:
            with write_transaction(conn):
                apply_rows(conn, [manifest_row(run_id, manifest)])
        refresh_health(conn, Path(db_path), run_id)
    finally:
        conn.close()
