"""``workspace_status``: what a workspace (or a service database) holds, live, as a plain dict.

It reads through a read-only connection in one read transaction, so it works while the run's writer (another
task or process) commits; then it stores the projection freshness and invariant report it computed through a short
``BEGIN IMMEDIATE`` write, best effort (a read-only file, or one in a directory this user cannot write, still gets
its status, marked ``persisted: False``).

The reads are written once, as *readers* (generators that yield their queries and are sent the rows), so the
sqlite3 driver here and the aiosqlite driver of :mod:`synth_opt.workspace.live` run the same code.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from synth_opt.errors import ConfigError
from synth_opt.usage import Usage
from synth_opt.workspace.db import connect
from synth_opt.workspace.freshness import compute_health, persist_health
from synth_opt.workspace.schema import SERVICE_TABLES

__all__ = [
    "COUNT_KEYS",
    "Layout",
    "Reader",
    "cannot_write_beside",
    "persist_all",
    "read_layout",
    "read_run",
    "read_service",
    "run_reader",
    "with_health",
    "workspace_status",
]

T = TypeVar("T")

# key -> (table, grouped column, extra condition)
COUNT_KEYS: dict[str, tuple[str, str, str]] = {
    "rollout_job_status_counts": ("rollouts", "status", ""),
    "rollout_event_type_counts": ("event_stream_events", "type", "AND type LIKE 'rollout.%'"),
    "score_objective_counts": ("scores", "objective", ""),
    "evidence_frame_kind_counts": ("evidence_frames", "frame_kind", ""),
    "verifier_job_status_counts": ("verifier_jobs", "status", ""),
    "cache_access_action_counts": ("cache_accesses", "action", ""),
    "cache_access_boundary_counts": ("cache_accesses", "boundary", ""),
    "event_stream_event_type_counts": ("event_stream_events", "type", ""),
    "usage_ledger_boundary_counts": ("usage_ledger", "boundary", ""),
}
_SQLITE_READONLY = 8
_SQLITE_CANTOPEN = 14
_SERVICE_KEYS = {
    "run_requests": "run_request_status_counts",
    "operations": "operation_status_counts",
    "resource_leases": "resource_lease_status_counts",
}


Query = tuple[str, tuple[Any, ...]]
# A reader is one code path for the sync (sqlite3) and async (aiosqlite, :mod:`synth_opt.workspace.live`) drivers:
# it yields each query, is sent its rows (``sqlite3.Row``), has the driver's sqlite3 errors thrown into it, and
# returns what it read.
Reader = Generator[Query, list[sqlite3.Row], T]


def run_reader(conn: sqlite3.Connection, reader: Reader[T]) -> T:
    """Drive ``reader`` on a sqlite3 connection."""
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row
    try:
        query = next(reader)
        while True:
            try:
                rows = cursor.execute(*query).fetchall()
            except sqlite3.Error as error:
                query = reader.throw(error)
            else:
                query = reader.send(rows)
    except StopIteration as done:
        value: T = done.value
        return value
    finally:
        cursor.close()


def missing_workspace(path: Path) -> ConfigError:
    return ConfigError(
        f"workspace database {path} does not exist; pass the workspace.sqlite of a run directory "
        "(--db runs/<run_id>/workspace.sqlite) or a service database"
    )


def unopenable_workspace(path: Path, error: sqlite3.Error) -> ConfigError:
    return ConfigError(
        f"workspace database {path} cannot be opened: {error}; check that this user can read it and its directory"
    )


def workspace_status(db_path: str | Path) -> dict[str, Any]:
    """``{"runs": [one dict per run], "db_path": ..., "schema_version": ...}``, plus the queue's status counts at
    the top level for a service database. Refreshes each run's projection freshness and invariant report.
    :func:`synth_opt.workspace.live.live_workspace_status` is the same for async callers."""
    path = Path(db_path)
    if not path.is_file():
        raise missing_workspace(path)
    try:
        conn = _reading_connection(path)
    except sqlite3.Error as error:
        raise unopenable_workspace(path, error) from None
    health: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    try:
        layout = run_reader(conn, read_layout(path))
        result: dict[str, Any] = {"runs": [], "db_path": str(path), "schema_version": layout.version}
        for run_id in layout.run_ids:
            freshness, report = compute_health(conn, path, run_id)
            health[run_id] = (freshness, report)
            conn.execute("BEGIN")
            try:
                run = run_reader(conn, read_run(layout.tables, run_id))
            finally:
                conn.execute("COMMIT")
            result["runs"].append(with_health(run, freshness, report))
        if layout.service:
            result.update(run_reader(conn, read_service(layout.tables)))
    finally:
        conn.close()
    persisted = persist_all(path, health)
    for run in result["runs"]:
        run["invariant_report"]["persisted"] = persisted
    return result


def _reading_connection(path: Path) -> sqlite3.Connection:
    """A read-only connection. Reading a WAL database takes its ``-shm`` file, which SQLite creates beside it; in a
    directory this process cannot write (a finished run copied read-only, a read-only mount) that is refused, and
    then, when no write-ahead log lies beside it (so the file holds the whole database), the file is read as
    ``immutable``, which creates nothing."""
    conn = connect(path, readonly=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    except sqlite3.Error as error:
        wal = Path(f"{path}-wal")
        if not cannot_write_beside(error) or (wal.exists() and wal.stat().st_size > 0):
            return conn  # read_layout says what is wrong
        conn.close()
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    return conn


def cannot_write_beside(error: sqlite3.Error) -> bool:
    """Whether SQLite failed for want of writing a ``-shm`` (or ``-wal``) file beside the database."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and (int(code) & 0xFF) in (_SQLITE_READONLY, _SQLITE_CANTOPEN)


@dataclass(frozen=True)
class Layout:
    """What a workspace or service database holds: its tables, schema version and runs."""

    tables: frozenset[str]
    version: int
    run_ids: tuple[str, ...]

    @property
    def service(self) -> bool:
        return bool(self.tables & set(SERVICE_TABLES))


def read_layout(path: Path) -> Reader[Layout]:
    """The tables, schema version and run ids; a ConfigError for a file that is not a workspace (yet)."""
    try:
        rows = yield ("SELECT name FROM sqlite_master WHERE type = 'table'", ())
    except sqlite3.DatabaseError as error:
        if cannot_write_beside(error) and Path(f"{path}-wal").exists():
            raise ConfigError(
                f"{path} cannot be read without writing beside it ({error}): SQLite needs to create "
                f"{path.name}-shm to read its write-ahead log {path.name}-wal; make {path.parent} writable for this "
                "user, or copy the run directory somewhere writable and pass the copy's workspace.sqlite"
            ) from None
        if cannot_write_beside(error):
            raise unopenable_workspace(path, error) from None
        raise ConfigError(f"{path} is not a SQLite database ({error}); pass a workspace.sqlite") from None
    tables = frozenset(str(r[0]) for r in rows)
    if not tables:
        raise ConfigError(f"{path} is empty: its writer has not created the workspace tables yet; try again shortly")
    if "event_stream_events" not in tables and not tables & set(SERVICE_TABLES):
        raise ConfigError(f"{path} holds no synth_opt workspace or service tables; pass a workspace.sqlite")
    version = yield from _one("PRAGMA user_version")
    run_ids: list[str] = []
    if "event_stream_events" in tables:
        found = yield ("SELECT run_id FROM runs UNION SELECT DISTINCT run_id FROM event_stream_events ORDER BY 1", ())
        run_ids = [r[0] for r in found]
    return Layout(tables, int(version), tuple(run_ids))


def _counts(tables: frozenset[str], table: str, column: str, extra: str, run_id: str) -> Reader[dict[str, int]]:
    if table not in tables:
        return {}
    rows = yield (
        f"SELECT {column}, count(*) FROM {table} WHERE run_id = ? {extra} GROUP BY {column} ORDER BY {column}",
        (run_id,),
    )
    return {str(key): count for key, count in rows}


def _one(sql: str, *params: Any) -> Reader[Any]:
    rows = yield (sql, params)
    return None if not rows else rows[0][0]


def read_run(tables: frozenset[str], run_id: str) -> Reader[dict[str, Any]]:
    """One run's summary and counts (the driver runs it in one read transaction, so they agree)."""
    found = yield ("SELECT * FROM runs WHERE run_id = ?", (run_id,))
    row: dict[str, Any] = dict(zip(found[0].keys(), found[0], strict=True)) if found else {}
    run: dict[str, Any] = {
        "run_id": run_id,
        "status": row.get("status") or "unknown",
        "error": row.get("error"),
        "created_at": row.get("created_at"),
        "updated_at": row.get("updated_at"),
        "last_sequence_number": row.get("last_sequence_number"),
        "stop_reason": row.get("stop_reason"),
        "seed_candidate_id": row.get("seed_candidate_id"),
        "best_candidate_id": row.get("best_candidate_id"),
        "best_mean_score": row.get("best_mean_score"),
        "candidates": (yield from _one("SELECT count(*) FROM candidates WHERE run_id = ?", run_id)),
        "proposals": (yield from _one("SELECT count(*) FROM acceptance_decisions WHERE run_id = ?", run_id)),
        "accepted": (
            yield from _one("SELECT count(*) FROM acceptance_decisions WHERE run_id = ? AND accepted", run_id)
        ),
        "proposals_failed": (
            yield from _one(
                "SELECT count(*) FROM acceptance_decisions WHERE run_id = ? AND reason = 'proposal_failed'", run_id
            )
        ),
        "rollouts": (yield from _one("SELECT count(*) FROM rollouts WHERE run_id = ?", run_id)),
        "events": (yield from _one("SELECT count(*) FROM event_stream_events WHERE run_id = ?", run_id)),
        "frontier_size": (
            yield from _one(
                "SELECT count(DISTINCT candidate_id) FROM frontier_cells f WHERE run_id = ? AND sequence_number = "
                "(SELECT max(sequence_number) FROM frontier_cells g WHERE g.run_id = f.run_id "
                "AND g.front_key = f.front_key)",
                run_id,
            )
        ),
        "candidate_status_counts": (yield from _latest_status_counts(tables, run_id)),
        "usage": (yield from _usage(run_id)),
        "discarded_usage": (yield from _discarded(run_id)),
        "stopper": (yield from _stopper(run_id)),
    }
    run["rejected"] = run["proposals"] - run["accepted"]
    for key, (table, column, extra) in COUNT_KEYS.items():
        run[key] = yield from _counts(tables, table, column, extra, run_id)
    return run


def with_health(run: dict[str, Any], freshness: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """A run's summary with its projection freshness (the counts of each table) and invariant report."""
    run["projection_freshness"] = {
        table: {k: entry[k] for k in ("status", "source_rows", "derived_rows", "missing_rows")}
        for table, entry in freshness.items()
    }
    run["invariant_report"] = report
    return run


def _latest_status_counts(tables: frozenset[str], run_id: str) -> Reader[dict[str, int]]:
    """Candidates by their latest registry status (seed, accepted, rejected, ...)."""
    if "candidate_statuses" not in tables:
        return {}
    rows = yield (
        "SELECT status, count(*) FROM candidate_statuses s WHERE run_id = ? AND sequence_number = (SELECT "
        "max(sequence_number) FROM candidate_statuses t WHERE t.run_id = s.run_id AND t.candidate_id = s.candidate_id) "
        "GROUP BY status ORDER BY status",
        (run_id,),
    )
    return {str(status): n for status, n in rows}


def _usage(run_id: str) -> Reader[dict[str, Any]]:
    rows = yield (
        "SELECT coalesce(sum(calls), 0), coalesce(sum(total_tokens), 0), sum(cost_usd) FROM usage_ledger "
        "WHERE run_id = ?",
        (run_id,),
    )
    calls, tokens, cost = rows[0]
    return {"calls": calls, "total_tokens": tokens, "cost_usd": cost}


def _discarded(run_id: str) -> Reader[dict[str, Any] | None]:
    """What the run paid for and threw away: the latest ``run.discarded`` (cumulative over its restarts, the
    outage probes of earlier attempts included) plus the outage probes served since (``container.outage`` lines of
    state ``canary_served``), as the result's ``usage.discarded``; None when there is neither."""
    found = yield (
        "SELECT sequence_number, fields_json FROM event_stream_events WHERE run_id = ? AND type = 'run.discarded' "
        "ORDER BY sequence_number DESC LIMIT 1",
        (run_id,),
    )
    row = found[0] if found else None
    base = None if row is None or row[1] is None else dict(json.loads(row[1]))
    outages = yield (
        "SELECT fields_json FROM event_stream_events WHERE run_id = ? AND type = 'container.outage' "
        "AND sequence_number > ? ORDER BY sequence_number",
        (run_id, 0 if row is None else row[0]),
    )
    probes = [
        fields
        for (text,) in outages
        if text is not None
        for fields in [json.loads(text)]
        if fields.get("state") == "canary_served"
    ]
    if not probes:
        return base
    spent = Usage()
    for fields in probes:
        usage = fields.get("usage")
        spent = spent + _as_usage(usage)
    total: dict[str, Any] = dict(base) if base is not None else {"rollouts": 0}
    for key in ("rollout", "proposer"):
        total.setdefault(key, Usage().to_dict())
    total["probes"] = int(total.get("probes") or 0) + len(probes)
    total["probe"] = (_as_usage(total.get("probe")) + spent).to_dict()
    total["total"] = (_as_usage(total.get("total")) + spent).to_dict()
    return total


def _as_usage(value: Any) -> Usage:
    return Usage.from_dict(value) if isinstance(value, dict) else Usage()


def _stopper(run_id: str) -> Reader[dict[str, Any] | None]:
    found = yield ("SELECT * FROM stopper_states WHERE run_id = ? ORDER BY sequence_number DESC LIMIT 1", (run_id,))
    if not found:
        return None
    data = dict(zip(found[0].keys(), found[0], strict=True))
    data["reserved"] = json.loads(data.pop("reserved_json") or "{}")
    data.pop("run_id")
    return data


def read_service(tables: frozenset[str]) -> Reader[dict[str, Any]]:
    """The queue's status counts of a service database."""
    out: dict[str, Any] = {}
    for table, key in _SERVICE_KEYS.items():
        out[key] = yield from _status_counts(tables, table, f"SELECT status, count(*) FROM {table} GROUP BY status")
    out["projection_status_counts"] = yield from _status_counts(
        tables, "projection_freshness", "SELECT status, count(*) FROM projection_freshness GROUP BY status"
    )
    out["invariant_status_counts"] = yield from _status_counts(
        tables,
        "invariant_reports",
        "SELECT status, count(*) FROM invariant_reports WHERE report_id IN "
        "(SELECT max(report_id) FROM invariant_reports GROUP BY run_id) GROUP BY status",
    )
    return out


def _status_counts(tables: frozenset[str], table: str, sql: str) -> Reader[dict[str, int]]:
    if table not in tables:
        return {}
    try:
        rows = yield (sql, ())
    except sqlite3.OperationalError:  # a table of that name without a status column
        return {}
    return {str(status): count for status, count in rows}


def persist_all(path: Path, health: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> bool:
    """Store each run's freshness and invariant report through a short write, best effort: False when the file
    cannot be written (read-only)."""
    if not health:
        return True
    try:
        conn = connect(path)
    except sqlite3.Error:
        return False
    try:
        for run_id, (freshness, report) in health.items():
            persist_health(conn, run_id, freshness, report)
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    return True
