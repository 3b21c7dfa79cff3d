"""Repair: rebuild every derived table of a workspace from its sources.

First the ``events.jsonl`` beside the database back-fills ``event_stream_events``; then, per run and in one write
transaction, every derived table is emptied and re-projected from ``event_stream_events`` in sequence order (the
same projection the live writer uses), the manifest row is re-read from ``result_manifest.json``, and the
freshness rows and an invariant report are refreshed.

A database SQLite cannot read (overwritten, truncated, or failing ``PRAGMA quick_check``) is first moved aside,
never deleted: ``workspace.sqlite`` becomes ``workspace.sqlite.corrupt-<n>`` (with its ``-wal`` and ``-shm``, so
the copy stays openable), ``<n>`` the first number not taken, and a fresh database is rebuilt from ``events.jsonl``
and ``result_manifest.json``. Without an ``events.jsonl`` to rebuild from, repair refuses and leaves the file alone;
in a run directory it first takes the run's lock, so a live run's database is never moved from under it.
(Checkpoints are not derived rows; the newest one lives in the run directory's own file.)
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from synth_opt.dir_lock import LOCK_FILE, RunDirLock, is_run_dir
from synth_opt.errors import ConfigError
from synth_opt.events import Event
from synth_opt.workspace.db import apply_rows, open_workspace, refresh_cache_profiles, write_transaction
from synth_opt.workspace.freshness import feed_run_id, refresh_health
from synth_opt.workspace.projector import ProjectionContext, Row, project_event, touch_run
from synth_opt.workspace.schema import DERIVED_TABLES
from synth_opt.workspace.writer import backfill_feed, manifest_row, read_feed, stored_manifest

__all__ = ["database_problem", "repair_workspace"]

_CHUNK = 5000
_CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes)
_SIDE_FILES = ("-wal", "-shm", "-journal")


def repair_workspace(db_path: str | Path) -> dict[str, Any]:
    """Rebuild the derived tables of every run in the workspace; return what was back-filled and restored, and
    each run's invariant status afterwards."""
    path = Path(db_path)
    if not path.is_file():
        raise ConfigError(f"workspace database {path} does not exist; pass --db runs/<run_id>/workspace.sqlite")
    unwritable = [str(where) for where in (path, path.parent) if not os.access(where, os.W_OK)]
    if unwritable:
        raise ConfigError(
            f"cannot repair {path}: {' and '.join(unwritable)} {'is' if len(unwritable) == 1 else 'are'} not "
            "writable by this user (a repair rewrites the "
            "workspace's derived tables, and SQLite writes its journal beside the database); make them writable, "
            "or copy the run directory somewhere writable and repair the copy's workspace.sqlite"
        )
    moved_aside: dict[str, Any] | None = None
    lock: RunDirLock | None = None
    problem = database_problem(path)
    try:
        if problem is not None:
            feed = path.parent / "events.jsonl"
            if feed.exists():
                read_feed(feed)  # a damaged feed line is named before the database is moved aside
            if (path.parent / LOCK_FILE).exists() or is_run_dir(path.parent):
                lock = RunDirLock(path.parent)  # a live run must not lose its database under it
                lock.acquire()
            moved_aside = {"problem": problem, "to": str(_move_aside(path, problem)), "rebuilt_from": None}
        return _repair(path, moved_aside)
    finally:
        if lock is not None:
            lock.release()


def _repair(path: Path, moved_aside: dict[str, Any] | None) -> dict[str, Any]:
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
    if moved_aside is not None:
        moved_aside["rebuilt_from"] = str(path.parent / "events.jsonl")
    return {
        "db_path": str(path),
        "moved_aside": moved_aside,
        "backfilled_events": backfilled,
        "runs": runs,
        "status": "ok" if ok else "violated",
    }


def database_problem(path: Path) -> str | None:
    """Why SQLite cannot use the database at ``path`` (not a database, or damaged), or None when it can. The file
    is opened ``immutable``, so the check writes, checkpoints and deletes nothing (a normal connection would fold or
    remove a ``-wal`` file beside it on close). Errors that say nothing about the file (permission, ...) propagate."""
    uri = f"{path.resolve().as_uri()}?immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        if _corrupt(error):
            return str(error)
        raise
    return None if rows == ["ok"] else "quick_check: " + "; ".join(rows[:3])


def _corrupt(error: sqlite3.DatabaseError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES
    text = str(error)
    return "not a database" in text or "malformed" in text


def _move_aside(path: Path, problem: str) -> Path:
    """Rename a corrupt database and its side files to the first free ``<name>.corrupt-<n>``; refuse (leaving the
    file alone) when there is no feed to rebuild from."""
    feed = path.parent / "events.jsonl"
    if not feed.is_file() or feed_run_id(feed) is None:
        raise ConfigError(
            f"workspace database {path} is corrupt ({problem}) and there is no readable events.jsonl beside it to "
            "rebuild it from; it was left as it is (restore it from a copy, or delete it to start a new workspace)",
            db_path=str(path),
        )
    number = 1
    while any(path.with_name(f"{path.name}.corrupt-{number}{suffix}").exists() for suffix in ("", *_SIDE_FILES)):
        number += 1
    target = path.with_name(f"{path.name}.corrupt-{number}")
    path.rename(target)
    for suffix in _SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    return target


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
