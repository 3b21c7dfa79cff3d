"""``workspace_status``: what a workspace (or a service database) holds, live, as a plain dict.

It reads through a read-only connection in one read transaction, so it works while the run's writer (another
task or process) commits; then it stores the projection freshness and invariant report it computed through a short
``BEGIN IMMEDIATE`` write, best effort (a read-only file still gets its status, marked ``persisted: False``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from synth_opt.errors import ConfigError
from synth_opt.usage import Usage
from synth_opt.workspace.db import connect
from synth_opt.workspace.freshness import compute_health, persist_health
from synth_opt.workspace.schema import SERVICE_TABLES

__all__ = ["COUNT_KEYS", "workspace_status"]

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
_SERVICE_KEYS = {
    "run_requests": "run_request_status_counts",
    "operations": "operation_status_counts",
    "resource_leases": "resource_lease_status_counts",
}


def workspace_status(db_path: str | Path) -> dict[str, Any]:
    """``{"runs": [one dict per run], "db_path": ..., "schema_version": ...}``, plus the queue's status counts at
    the top level for a service database. Refreshes each run's projection freshness and invariant report."""
    path = Path(db_path)
    if not path.is_file():
        raise ConfigError(
            f"workspace database {path} does not exist; pass the workspace.sqlite of a run directory "
            "(--db runs/<run_id>/workspace.sqlite) or a service database"
        )
    try:
        conn = connect(path, readonly=True)
    except sqlite3.Error as error:
        raise ConfigError(f"workspace database {path} cannot be opened: {error}") from None
    health: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    try:
        tables = _tables(conn, path)
        result: dict[str, Any] = {"runs": [], "db_path": str(path), "schema_version": _version(conn)}
        if "event_stream_events" in tables:
            for run_id in _run_ids(conn):
                freshness, report = compute_health(conn, path, run_id)
                health[run_id] = (freshness, report)
                result["runs"].append(_run(conn, tables, run_id, freshness, report))
        if tables & set(SERVICE_TABLES):
            result.update(_service(conn, tables))
    finally:
        conn.close()
    persisted = _persist(path, health)
    for run in result["runs"]:
        run["invariant_report"]["persisted"] = persisted
    return result


def _tables(conn: sqlite3.Connection, path: Path) -> set[str]:
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise ConfigError(f"{path} is not a SQLite database ({error}); pass a workspace.sqlite") from None
    if not tables:
        raise ConfigError(f"{path} is empty: its writer has not created the workspace tables yet; try again shortly")
    if "event_stream_events" not in tables and not tables & set(SERVICE_TABLES):
        raise ConfigError(f"{path} holds no synth_opt workspace or service tables; pass a workspace.sqlite")
    return tables


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _run_ids(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT run_id FROM runs UNION SELECT DISTINCT run_id FROM event_stream_events ORDER BY 1")
    return [r[0] for r in rows]


def _counts(conn: sqlite3.Connection, tables: set[str], table: str, column: str, extra: str, run_id: str) -> Any:
    if table not in tables:
        return {}
    rows = conn.execute(
        f"SELECT {column}, count(*) FROM {table} WHERE run_id = ? {extra} GROUP BY {column} ORDER BY {column}",
        (run_id,),
    )
    return {str(key): count for key, count in rows}


def _one(conn: sqlite3.Connection, sql: str, *params: Any) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _run(
    conn: sqlite3.Connection, tables: set[str], run_id: str, freshness: dict[str, Any], report: dict[str, Any]
) -> dict[str, Any]:
    conn.execute("BEGIN")
    try:
        cursor = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        names = [d[0] for d in cursor.description]
        found = cursor.fetchone()
        row = dict(zip(names, found, strict=True)) if found else {}
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
            "candidates": _one(conn, "SELECT count(*) FROM candidates WHERE run_id = ?", run_id),
            "proposals": _one(conn, "SELECT count(*) FROM acceptance_decisions WHERE run_id = ?", run_id),
            "accepted": _one(conn, "SELECT count(*) FROM acceptance_decisions WHERE run_id = ? AND accepted", run_id),
            "proposals_failed": _one(
                conn,
                "SELECT count(*) FROM acceptance_decisions WHERE run_id = ? AND reason = 'proposal_failed'",
                run_id,
            ),
            "rollouts": _one(conn, "SELECT count(*) FROM rollouts WHERE run_id = ?", run_id),
            "events": _one(conn, "SELECT count(*) FROM event_stream_events WHERE run_id = ?", run_id),
            "frontier_size": _one(
                conn,
                "SELECT count(DISTINCT candidate_id) FROM frontier_cells f WHERE run_id = ? AND sequence_number = "
                "(SELECT max(sequence_number) FROM frontier_cells g WHERE g.run_id = f.run_id "
                "AND g.front_key = f.front_key)",
                run_id,
            ),
            "candidate_status_counts": _latest_status_counts(conn, tables, run_id),
            "usage": _usage(conn, run_id),
            "discarded_usage": _discarded(conn, run_id),
            "stopper": _stopper(conn, run_id),
        }
        run["rejected"] = run["proposals"] - run["accepted"]
        for key, (table, column, extra) in COUNT_KEYS.items():
            run[key] = _counts(conn, tables, table, column, extra, run_id)
    finally:
        conn.execute("COMMIT")
    run["projection_freshness"] = {
        table: {k: entry[k] for k in ("status", "source_rows", "derived_rows", "missing_rows")}
        for table, entry in freshness.items()
    }
    run["invariant_report"] = report
    return run


def _latest_status_counts(conn: sqlite3.Connection, tables: set[str], run_id: str) -> dict[str, int]:
    """Candidates by their latest registry status (seed, accepted, rejected, ...)."""
    if "candidate_statuses" not in tables:
        return {}
    rows = conn.execute(
        "SELECT status, count(*) FROM candidate_statuses s WHERE run_id = ? AND sequence_number = (SELECT "
        "max(sequence_number) FROM candidate_statuses t WHERE t.run_id = s.run_id AND t.candidate_id = s.candidate_id) "
        "GROUP BY status ORDER BY status",
        (run_id,),
    )
    return {str(status): n for status, n in rows}


def _usage(conn: sqlite3.Connection, run_id: str) -> dict[str, Any]:
    calls, tokens, cost = conn.execute(
        "SELECT coalesce(sum(calls), 0), coalesce(sum(total_tokens), 0), sum(cost_usd) FROM usage_ledger "
        "WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    return {"calls": calls, "total_tokens": tokens, "cost_usd": cost}


def _discarded(conn: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
    """What the run paid for and threw away: the latest ``run.discarded`` (cumulative over its restarts, the
    outage probes of earlier attempts included) plus the outage probes served since (``container.outage`` lines of
    state ``canary_served``), as the result's ``usage.discarded``; None when there is neither."""
    row = conn.execute(
        "SELECT sequence_number, fields_json FROM event_stream_events WHERE run_id = ? AND type = 'run.discarded' "
        "ORDER BY sequence_number DESC LIMIT 1",
        (run_id,),
    ).fetchone()
    base = None if row is None or row[1] is None else dict(json.loads(row[1]))
    probes = [
        fields
        for (text,) in conn.execute(
            "SELECT fields_json FROM event_stream_events WHERE run_id = ? AND type = 'container.outage' "
            "AND sequence_number > ? ORDER BY sequence_number",
            (run_id, 0 if row is None else row[0]),
        )
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


def _stopper(conn: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
    cursor = conn.execute(
        "SELECT * FROM stopper_states WHERE run_id = ? ORDER BY sequence_number DESC LIMIT 1", (run_id,)
    )
    names = [d[0] for d in cursor.description]
    found = cursor.fetchone()
    if found is None:
        return None
    data = dict(zip(names, found, strict=True))
    data["reserved"] = json.loads(data.pop("reserved_json") or "{}")
    data.pop("run_id")
    return data


def _service(conn: sqlite3.Connection, tables: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for table, key in _SERVICE_KEYS.items():
        out[key] = _status_counts(conn, tables, table, f"SELECT status, count(*) FROM {table} GROUP BY status")
    out["projection_status_counts"] = _status_counts(
        conn, tables, "projection_freshness", "SELECT status, count(*) FROM projection_freshness GROUP BY status"
    )
    out["invariant_status_counts"] = _status_counts(
        conn,
        tables,
        "invariant_reports",
        "SELECT status, count(*) FROM invariant_reports WHERE report_id IN "
        "(SELECT max(report_id) FROM invariant_reports GROUP BY run_id) GROUP BY status",
    )
    return out


def _status_counts(conn: sqlite3.Connection, tables: set[str], table: str, sql: str) -> dict[str, int]:
    if table not in tables:
        return {}
    try:
        return {str(status): count for status, count in conn.execute(sql)}
    except sqlite3.OperationalError:  # a table of that name without a status column
        return {}


def _persist(path: Path, health: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> bool:
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
