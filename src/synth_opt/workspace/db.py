"""Connections, migrations and the one write path of a workspace database.

Every connection sets ``busy_timeout`` and ``foreign_keys``; writing connections also put the file in WAL mode with
``synchronous=NORMAL`` (a run workspace can be rebuilt from ``events.jsonl``, so losing the last commits on power
loss is acceptable). Every write runs in ``BEGIN IMMEDIATE``: a deferred transaction that later upgrades to a write
fails with SQLITE_BUSY at once instead of waiting for the timeout. Connections are opened in autocommit mode
(``isolation_level=None``) so that the transactions are exactly the ones written here.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synth_opt.errors import InvariantError
from synth_opt.events import Event
from synth_opt.workspace.projector import ProjectionContext, Row, project_batch
from synth_opt.workspace.schema import MIGRATIONS

__all__ = [
    "BUSY_TIMEOUT_MS",
    "apply_rows",
    "connect",
    "load_context",
    "migrate",
    "open_workspace",
    "refresh_cache_profiles",
    "store_events",
    "table_columns",
    "write_transaction",
]

BUSY_TIMEOUT_MS = 5000

# Parents before children, so foreign keys hold within one batch.
_INSERT_ORDER = (
    "runs",
    "event_stream_events",
    "candidates",
    "candidate_payloads",
    "candidate_deltas",
    "rollouts",
    "evidence_frames",
    "scores",
    "verifier_jobs",
)
_DEFAULTS: dict[str, dict[str, Any]] = {"runs": {"status_seq": -1, "best_seq": -1}}
_REPLACING = frozenset({"manifests"})

# A run's row is folded from many events: the status and the best candidate follow the newest event that set them
# (so a back-filled older event cannot roll them back); the other columns keep the first value anyone gave.
_RUNS_UPSERT = """
INSERT INTO runs ({columns}) VALUES ({marks})
ON CONFLICT (run_id) DO UPDATE SET
    status = CASE WHEN excluded.status_seq > runs.status_seq THEN excluded.status ELSE runs.status END,
    error = CASE WHEN excluded.status_seq > runs.status_seq THEN excluded.error ELSE runs.error END,
    status_seq = max(runs.status_seq, excluded.status_seq),
    best_candidate_id = CASE WHEN excluded.best_seq > runs.best_seq
        THEN excluded.best_candidate_id ELSE runs.best_candidate_id END,
    best_mean_score = CASE WHEN excluded.best_seq > runs.best_seq
        THEN excluded.best_mean_score ELSE runs.best_mean_score END,
    best_seq = max(runs.best_seq, excluded.best_seq),
    created_at = coalesce(min(runs.created_at, excluded.created_at), runs.created_at, excluded.created_at),
    updated_at = coalesce(max(runs.updated_at, excluded.updated_at), runs.updated_at, excluded.updated_at),
    last_sequence_number = coalesce(max(runs.last_sequence_number, excluded.last_sequence_number),
        runs.last_sequence_number, excluded.last_sequence_number),
    config_path = coalesce(runs.config_path, excluded.config_path),
    config_digest = coalesce(runs.config_digest, excluded.config_digest),
    stop_reason = coalesce(excluded.stop_reason, runs.stop_reason),
    seed_candidate_id = coalesce(runs.seed_candidate_id, excluded.seed_candidate_id),
    seed_train_score = coalesce(excluded.seed_train_score, runs.seed_train_score),
    best_train_score = coalesce(excluded.best_train_score, runs.best_train_score)
"""

_CONTEXT_TYPES = ("run.state", "run.config", "candidate.registered", "frontier.updated", "budget.updated")


def connect(path: str | Path, *, readonly: bool = False, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Open a connection with the workspace PRAGMAs. ``readonly`` opens with ``mode=ro`` (never creates the file)."""
    if readonly:
        conn = sqlite3.connect(
            f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, migrations: Sequence[Sequence[str]] = MIGRATIONS) -> int:
    """Apply the migrations the file has not seen yet, in order, in one write transaction; return the version."""
    target = len(migrations)
    if _user_version(conn) == target:
        return target
    with write_transaction(conn):
        version = _user_version(conn)  # read again under the write lock: another opener may have migrated
        if version > target:
            raise InvariantError(
                f"workspace schema version {version} is newer than this synth_opt knows ({target}); "
                "upgrade synth_opt to read it",
                schema_version=version,
            )
        for number in range(version, target):
            for statement in migrations[number]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {target}")
    return target


def open_workspace(path: str | Path) -> sqlite3.Connection:
    """A writing connection to a workspace, created and migrated to the current schema as needed."""
    conn = connect(path)
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


@functools.cache
def _all_columns() -> dict[str, tuple[str, ...]]:
    """Column names of every table at the current schema version (read from a scratch in-memory database)."""
    scratch = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for statements in MIGRATIONS:
            for statement in statements:
                scratch.execute(statement)
        tables = [r[0] for r in scratch.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        # table_info leaves out generated columns, which cannot be inserted
        return {t: tuple(r[1] for r in scratch.execute(f"PRAGMA table_info({t})")) for t in tables}
    finally:
        scratch.close()


def table_columns(table: str) -> tuple[str, ...]:
    return _all_columns()[table]


@functools.cache
def _statement(table: str) -> str:
    columns = table_columns(table)
    names, marks = ", ".join(columns), ", ".join("?" for _ in columns)
    if table == "runs":
        return _RUNS_UPSERT.format(columns=names, marks=marks)
    verb = "INSERT OR REPLACE" if table in _REPLACING else "INSERT OR IGNORE"
    return f"{verb} INTO {table} ({names}) VALUES ({marks})"


def apply_rows(conn: sqlite3.Connection, rows: Iterable[Row]) -> int:
    """Write rows (inside the caller's transaction): one ``executemany`` per table, parents first. Rows whose
    natural key is already present are ignored, which makes every projection idempotent."""
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    columns = _all_columns()
    count = 0
    for table, values in rows:
        defaults = _DEFAULTS.get(table)
        if defaults:
            values = {**defaults, **{k: v for k, v in values.items() if v is not None or k not in defaults}}
        params = grouped.get(table)
        if params is None:
            params = grouped[table] = []
        params.append(tuple(map(values.get, columns[table])))
        count += 1
    order = [t for t in _INSERT_ORDER if t in grouped] + [t for t in grouped if t not in _INSERT_ORDER]
    for table in order:
        conn.executemany(_statement(table), grouped[table])
    return count


def refresh_cache_profiles(
    conn: sqlite3.Connection, run_id: str, groups: Iterable[tuple[str, str]] | None = None
) -> None:
    """Recompute cache profiles (hits, misses, writes per namespace and boundary) from ``cache_accesses``: all of
    a run's, or only the ``(namespace, boundary)`` groups given."""
    select = """
        INSERT OR REPLACE INTO cache_profiles (run_id, namespace, boundary, hits, misses, writes, accesses,
            first_sequence_number, last_sequence_number)
        SELECT run_id, namespace, boundary, sum(action = 'hit'), sum(action = 'miss'), sum(action = 'write'),
            count(*), min(sequence_number), max(sequence_number)
        FROM cache_accesses WHERE run_id = ?"""
    if groups is None:
        conn.execute("DELETE FROM cache_profiles WHERE run_id = ?", (run_id,))
        conn.execute(select + " GROUP BY run_id, namespace, boundary", (run_id,))
        return
    for namespace, boundary in set(groups):
        conn.execute(select + " AND namespace = ? AND boundary = ? GROUP BY run_id", (run_id, namespace, boundary))


def store_events(conn: sqlite3.Connection, run_id: str, events: Sequence[Event], context: ProjectionContext) -> int:
    """Project events and write them in one ``BEGIN IMMEDIATE`` transaction; returns the number of rows."""
    rows = project_batch(events, run_id, context)
    cache_groups = [(v["namespace"], v["boundary"]) for t, v in rows if t == "cache_accesses"]
    with write_transaction(conn):
        count = apply_rows(conn, rows)
        if cache_groups:
            refresh_cache_profiles(conn, run_id, cache_groups)
    return count


def load_context(conn: sqlite3.Connection, run_id: str) -> ProjectionContext:
    """The projection context after every event already stored for a run (for a writer that starts late)."""
    context = ProjectionContext()
    marks = ", ".join("?" for _ in _CONTEXT_TYPES)
    cursor = conn.execute(
        f"SELECT payload_json FROM event_stream_events WHERE run_id = ? AND type IN ({marks}) ORDER BY sequence_number",
        (run_id, *_CONTEXT_TYPES),
    )
    for (payload,) in cursor:
        context.observe(_event(payload))
    return context


def _event(payload_json: str) -> Event:
    return Event.from_json(json.loads(payload_json))
