"""The queue's projection freshness and invariant report, in the workspace's table shapes (run id ``service``), so
``workspace_status`` of a service database shows ``projection_status_counts`` and ``invariant_status_counts``.

Derived state checked against ``run_requests`` (the source of truth): every live lease's resources have an active
``resource_leases`` row and no finished lease keeps one; every request has its ``submit`` operation. Invariants: no
two live, unexpired requests share a container URL or cache namespace; a leased or running request has a lease
token and an expiry; a terminal request has a finish time. Refreshed by ``recover()`` inside its transaction (a
plan of :mod:`synth_opt.service.queue.plans`, so every driver runs it).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

__all__ = ["SERVICE_RUN_ID", "queue_health_plan"]

T = TypeVar("T")
# a plan of :mod:`synth_opt.service.queue.plans`: yields statements, is sent their rows
_Plan = Generator[tuple[str, Mapping[str, Any] | tuple[Any, ...]], list[Any], T]

SERVICE_RUN_ID = "service"
KEEP_REPORTS = 50
SAMPLE = 10
_LIVE_LEASE = "r.status IN ('leased', 'running') AND r.lease_token IS NOT NULL"


def _ids(sql: str, *params: Any) -> _Plan[list[str]]:
    rows = yield (sql, params)
    return [str(row[0]) for row in rows]


def _one(sql: str) -> _Plan[Any]:
    rows = yield (sql, ())
    return rows[0][0]


def _freshness() -> _Plan[dict[str, dict[str, Any]]]:
    held = yield from _one(
        f"SELECT count(*) FROM request_resources x JOIN run_requests r ON r.request_id = x.request_id "
        f"WHERE {_LIVE_LEASE}"
    )
    active = yield from _one("SELECT count(*) FROM resource_leases WHERE status = 'active'")
    unleased = yield from _ids(
        f"SELECT r.request_id FROM run_requests r WHERE {_LIVE_LEASE} "
        "AND EXISTS (SELECT 1 FROM request_resources x WHERE x.request_id = r.request_id) "
        "AND NOT EXISTS (SELECT 1 FROM resource_leases l WHERE l.request_id = r.request_id "
        "AND l.lease_token = r.lease_token AND l.status = 'active')",
    )
    requests = yield from _one("SELECT count(*) FROM run_requests")
    submitted = yield from _one("SELECT count(DISTINCT request_id) FROM operations WHERE kind = 'submit'")
    unaudited = yield from _ids(
        "SELECT request_id FROM run_requests r WHERE NOT EXISTS (SELECT 1 FROM operations o "
        "WHERE o.request_id = r.request_id AND o.kind = 'submit')",
    )
    return {
        "resource_leases": _entry("run_requests", held, active, unleased),
        "operations": _entry("run_requests", requests, submitted, unaudited),
    }


def _entry(source: str, source_rows: int, derived_rows: int, missing: list[str]) -> dict[str, Any]:
    return {
        "source": source,
        "source_rows": source_rows,
        "derived_rows": derived_rows,
        "missing_rows": len(missing),
        "missing_sample": missing[:SAMPLE],
        "status": "fresh" if not missing else "stale",
    }


def _checks(now: float) -> _Plan[dict[str, dict[str, Any]]]:
    shared = yield from _ids(
        "SELECT DISTINCT a.request_id || ' & ' || b.request_id FROM request_resources x "
        "JOIN request_resources y ON y.resource_kind = x.resource_kind AND y.resource_key = x.resource_key "
        "AND x.request_id < y.request_id "
        "JOIN run_requests a ON a.request_id = x.request_id JOIN run_requests b ON b.request_id = y.request_id "
        "WHERE a.status IN ('leased', 'running') AND b.status IN ('leased', 'running') "
        "AND a.lease_expires_at > ? AND b.lease_expires_at > ?",
        now,
        now,
    )
    tokenless = yield from _ids(
        "SELECT request_id FROM run_requests WHERE status IN ('leased', 'running') "
        "AND (lease_token IS NULL OR lease_expires_at IS NULL)",
    )
    unfinished = yield from _ids(
        "SELECT request_id FROM run_requests WHERE status IN ('completed', 'failed', 'cancelled') "
        "AND finished_at IS NULL",
    )
    stale_leases = yield from _ids(
        "SELECT l.lease_id FROM resource_leases l JOIN run_requests r ON r.request_id = l.request_id "
        "WHERE l.status = 'active' AND (r.status NOT IN ('leased', 'running') OR r.lease_token IS NULL "
        "OR r.lease_token <> l.lease_token)",
    )
    checks = {
        "one_live_request_per_resource": shared,
        "live_requests_hold_a_lease": tokenless,
        "terminal_requests_have_finished_at": unfinished,
        "finished_leases_released": stale_leases,
    }
    return {name: {"status": "violated" if rows else "ok", "rows": rows[:SAMPLE]} for name, rows in checks.items()}


def queue_health_plan(now: float) -> _Plan[dict[str, Any]]:
    """Compute and store (inside the driver's write transaction) the queue's freshness rows and invariant report;
    return the report."""
    checked_at = datetime.fromtimestamp(now, UTC).isoformat()
    freshness = yield from _freshness()
    checks = yield from _checks(now)
    stale = [table for table, entry in freshness.items() if entry["status"] == "stale"]
    violated = [name for name, check in checks.items() if check["status"] == "violated"]
    status = "violated" if stale or violated else "ok"
    hint = "synth-opt workspace recover --db <service db>" if status == "violated" else None
    report = {"status": status, "stale_tables": stale, "violated": violated, "checks": checks, "repair_hint": hint}
    for table, entry in freshness.items():
        yield (
            "INSERT INTO projection_freshness (run_id, table_name, source, source_rows, derived_rows, "
            "missing_rows, status, missing_sample_json, checked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id, table_name) DO UPDATE SET source = excluded.source, source_rows = "
            "excluded.source_rows, derived_rows = excluded.derived_rows, missing_rows = excluded.missing_rows, "
            "status = excluded.status, missing_sample_json = excluded.missing_sample_json, "
            "checked_at = excluded.checked_at",
            (
                SERVICE_RUN_ID,
                table,
                entry["source"],
                entry["source_rows"],
                entry["derived_rows"],
                entry["missing_rows"],
                entry["status"],
                json.dumps(entry["missing_sample"]),
                checked_at,
            ),
        )
    yield (
        "INSERT INTO invariant_reports (run_id, checked_at, status, missing_json, stale_tables_json, repair_hint, "
        "report_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            SERVICE_RUN_ID,
            checked_at,
            status,
            json.dumps({name: checks[name]["rows"] for name in violated}),
            json.dumps(stale),
            hint,
            json.dumps(report, sort_keys=True),
        ),
    )
    yield (
        "DELETE FROM invariant_reports WHERE run_id = ? AND report_id NOT IN (SELECT report_id FROM "
        "invariant_reports WHERE run_id = ? ORDER BY report_id DESC LIMIT ?)",
        (SERVICE_RUN_ID, SERVICE_RUN_ID, KEEP_REPORTS),
    )
    return report
