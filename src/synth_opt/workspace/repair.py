"""Repair: rebuild every derived table of a workspace from its sources.

First the ``events.jsonl`` beside the database back-fills ``event_stream_events``; then, per run and in one write
transaction, every derived table is emptied and re-projected from ``event_stream_events`` in sequence order (the
same projection the live writer uses), the manifest row is re-read from ``result_manifest.json``, and the
freshness rows and an invariant report are refreshed.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from synth_opt.errors import ConfigError
from synth_opt.events import Event
from synth_opt.workspace.db import apply_rows, open_workspace, refresh_cache_profiles, write_transaction
from synth_opt.workspace.freshness import feed_run_id, refresh_health
from synth_opt.workspace.projector import ProjectionContext, Row, project_event, touch_run
from synth_opt.workspace.schema import DERIVED_TABLES
from synth_opt.workspace.writer import backfill_feed, manifest_row, stored_manifest

__all__ = ["repair_workspace"]

_CHUNK = 5000


def repair_workspace(db_path: str | Path) -> dict[str, Any]:
    """Rebuild the derived tables of every run in the workspace; return what was back-filled and restored, and
    each run's invariant status afterwards."""
    path = Path(db_path)
    if not path.is_file():
        raise ConfigError(f"workspace database {path} does not exist; pass --db runs/<run_id>/workspace.sqlite")
    conn = open_workspace(path)
    try:
        run_ids = _run_ids(conn)
        feed = path.parent / "events.jsonl"
        backfilled = 0
        if feed.exists():
            owner = feed_run_id(feed) or (run_ids[0] if len(run_ids) == 1 else None)
            if owner is not None:
                backfilled = backfill_feed(conn, feed, owner)
                run_ids = _run_ids(conn)
        runs: dict[str, Any] = {}
        for run_id in run_ids:
            with write_transaction(conn):
                restored = _rebuild(conn, run_id, path)
            report = refresh_health(conn, path, run_id)
            runs[run_id] = {
                "restored_rows": restored,
                "invariant_status": report["status"],
                "stale_tables": report["stale_tables"],
                "message": report["message"],
            }
    finally:
        conn.close()
    ok = all(run["invariant_status"] != "violated" for run in runs.values())
    return {"db_path": str(path), "backfilled_events": backfilled, "runs": runs, "status": "ok" if ok else "violated"}


def _run_ids(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT run_id FROM runs UNION SELECT DISTINCT run_id FROM event_stream_events ORDER BY 1")
    return [r[0] for r in rows]


def _counts(conn: sqlite3.Connection, run_id: str) -> dict[str, int]:
    tables = (*DERIVED_TABLES, "manifests")
    return {t: conn.execute(f"SELECT count(*) FROM {t} WHERE run_id = ?", (run_id,)).fetchone()[0] for t in tables}


def _rebuild(conn: sqlite3.Connection, run_id: str, db_path: Path) -> dict[str, int]:
    """Inside the caller's transaction: empty and re-project one run; return the rows restored per table."""
    before = _counts(conn, run_id)
    for table in DERIVED_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
    context = ProjectionContext()
    cursor = conn.execute(
        "SELECT sequence_number, projected_tables, payload_json FROM event_stream_events WHERE run_id = ? "
        "ORDER BY sequence_number",
        (run_id,),
    )
    ends: list[Event] = []
    while chunk := cursor.fetchmany(_CHUNK):
        rows: list[Row] = []
        marks: list[tuple[str, str, int]] = []
        for seq, projected, payload in chunk:
            event = Event.from_json(json.loads(payload))
            stream, *derived = project_event(event, run_id, context)
            context.observe(event)
            rows.extend(derived)
            if stream.values["projected_tables"] != projected:
                marks.append((stream.values["projected_tables"], run_id, seq))
            ends = [ends[0] if ends else event, event]
        conn.executemany(
            "UPDATE event_stream_events SET projected_tables = ? WHERE run_id = ? AND sequence_number = ?", marks
        )
        apply_rows(conn, rows)
    if ends:
        apply_rows(conn, [touch_run(run_id, ends)])
    refresh_cache_profiles(conn, run_id)
    manifest = stored_manifest(db_path, run_id)
    if manifest is not None:
        apply_rows(conn, [manifest_row(run_id, manifest)])
    after = _counts(conn, run_id)
    return {t: after[t] - before[t] for t in after if after[t] != before[t]}
