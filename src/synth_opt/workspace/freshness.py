"""Projection freshness and invariant reports: does every derived table hold exactly the rows its sources imply?

The source of the derived tables is ``event_stream_events``; the source of ``event_stream_events`` is the
``events.jsonl`` beside the database, whose lines are numbered 1..N by the bus; the source of ``manifests`` is
``result_manifest.json``. Rows are counted, not events: the stored events are projected again (the same pure
projection the writer and repair use) to learn every row each derived table should hold, and each table's rows are
compared with those per source event, so an event that lost some of its rows (half of a frontier update's cells)
shows as well as one that lost all of them, and so do rows no event implies. A table is ``fresh`` when its rows
are exactly the implied ones, ``stale`` otherwise, and ``lagging`` when only the live writer's last batch is not
in yet (``event_stream_events`` of a run still going). :func:`compute_health` only reads, so
``workspace_status`` can run it on a read-only connection while the run writes; :func:`persist_health` stores it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth_opt.events import Event, utc_now
from synth_opt.workspace.db import write_transaction
from synth_opt.workspace.project_io import ROLLOUT_BOUNDARY
from synth_opt.workspace.projector import HANDLED_TYPES, PROJECTION_ERROR, ProjectionContext, project_event

__all__ = [
    "COVERAGE",
    "TERMINAL_STATES",
    "Coverage",
    "compute_health",
    "feed_run_id",
    "persist_health",
    "refresh_health",
    "repair_hint",
]

TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})
SAMPLE = 10
KEEP_REPORTS = 50
_ROLLOUTS = ("rollout.completed", "rollout.degraded")
_PROPOSER = ("proposer.called", "proposer.failed")
_USAGE_KEYS = ("calls", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd")
_SEQ = "sequence_number"


@dataclass(frozen=True, slots=True)
class Coverage:
    """``table`` holds the rows that the projection of the events (chiefly of ``types``) implies; its rows are
    matched with their events through the ``link`` column."""

    table: str
    types: tuple[str, ...]
    link: str = "sequence_number"


COVERAGE: tuple[Coverage, ...] = (
    Coverage("state_transitions", ("run.state",)),
    Coverage("candidates", ("candidate.registered",), "candidate_id"),
    Coverage("candidate_payloads", ("candidate.registered",), "candidate_id"),
    Coverage("candidate_deltas", ("candidate.registered",), "candidate_id"),
    Coverage("candidate_statuses", ("candidate.status",)),
    Coverage("acceptance_decisions", ("acceptance.decided",), "proposal_index"),
    Coverage("frontier_cells", ("frontier.updated",)),
    Coverage("plan_links", ("proposal.planned", "proposal.created", "candidate.registered")),
    Coverage("rollouts", _ROLLOUTS, "rollout_id"),
    Coverage("evidence_frames", _ROLLOUTS, "rollout_id"),
    Coverage("scores", _ROLLOUTS, "rollout_id"),
    Coverage("verifier_jobs", _ROLLOUTS, "rollout_id"),
    Coverage("trace_annotations", ("reflection.requested",)),
    Coverage("subagent_invocations", _PROPOSER),
    Coverage("usage_ledger", _ROLLOUTS + _PROPOSER),
    Coverage("stopper_states", ("budget.updated", "search.stopped", "run.finished")),
    Coverage("cache_accesses", ("cache.access",)),
    Coverage("checkpoints", ("checkpoint.written",)),
)


def repair_hint(db_path: Path) -> str:
    return f"synth-opt workspace repair --db {db_path}"


def _entry(
    source: str, source_rows: int, derived_rows: int, missing: list[str], missing_rows: int, extra_rows: int = 0
) -> dict[str, Any]:
    return {
        "source": source,
        "source_rows": source_rows,
        "derived_rows": derived_rows,
        "missing_rows": missing_rows,
        "extra_rows": extra_rows,
        "missing_sample": missing[:SAMPLE],
        "status": "fresh" if missing_rows == 0 and extra_rows == 0 else "stale",
    }


@dataclass(slots=True)
class _Implied:
    """The rows one derived table should hold, counted per link value, with the first event that implies each."""

    per_link: dict[Any, int] = field(default_factory=dict)
    first_event: dict[Any, int] = field(default_factory=dict)


def _primary_key(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    return tuple(row[1] for row in sorted(info, key=lambda row: row[5]) if row[5] > 0)


def _implied_rows(conn: sqlite3.Connection, run_id: str) -> dict[str, _Implied]:
    """Project the run's stored events again, in order, and count the rows each covered table should hold.

    Every covered table's primary key is ``(run_id, <link>, ...)``, so rows of different link values never collide.
    Rows linked by ``sequence_number`` belong to one event, so counting that event's distinct keys is exact; rows
    linked otherwise (a rollout id, a candidate id) may be implied again by a later event, so the distinct keys seen
    per link value are kept (interned: most are alike) and a repeated key counts once, as the writer's
    ``INSERT OR IGNORE`` stores it once."""
    links = {c.table: c.link for c in COVERAGE}
    rests: dict[str, tuple[str, ...]] = {}
    for table, link in links.items():
        key = _primary_key(conn, table)
        assert key[:2] == ("run_id", link), f"{table}: primary key {key} does not start with run_id, {link}"
        rests[table] = key[2:]
    implied = {table: _Implied() for table in links}
    seen: dict[str, dict[Any, frozenset[tuple[Any, ...]]]] = {t: {} for t, link in links.items() if link != _SEQ}
    interned: dict[frozenset[tuple[Any, ...]], frozenset[tuple[Any, ...]]] = {}
    context = ProjectionContext()
    marks = ", ".join("?" for _ in HANDLED_TYPES)
    cursor = conn.execute(
        f"SELECT sequence_number, payload_json FROM event_stream_events WHERE run_id = ? AND type IN ({marks}) "
        "ORDER BY sequence_number",
        (run_id, *sorted(HANDLED_TYPES)),
    )
    for seq, payload in cursor:
        try:
            event = Event.from_json(json.loads(payload))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # an unreadable stored event implies nothing (the events_project check names such events)
        _stream, *rows = project_event(event, run_id, context)
        context.observe(event)
        keys: dict[tuple[str, Any], set[tuple[Any, ...]]] = {}
        for table, values in rows:
            rest = rests.get(table)
            if rest is not None:
                found = keys.setdefault((table, values.get(links[table])), set())
                found.add(tuple(values.get(column) for column in rest) if rest else ())
        for (table, link), found in keys.items():
            into = implied[table]
            if link not in into.first_event:
                into.first_event[link] = seq
            earlier = seen.get(table)
            if earlier is None:  # linked by this event's sequence number
                into.per_link[link] = len(found)
                continue
            merged = frozenset(found) | earlier.get(link, frozenset())
            earlier[link] = interned.setdefault(merged, merged)
            into.per_link[link] = len(merged)
    return implied


def _coverage(conn: sqlite3.Connection, run_id: str, c: Coverage, implied: _Implied) -> dict[str, Any]:
    """Compare the table's rows per link value with the implied ones: rows missing, and rows no stored event
    implies. (Rows of events not stored yet, as while the live writer lags, are left to the stream's check.)"""
    stored = (
        "EXISTS (SELECT 1 FROM event_stream_events e WHERE e.run_id = d.run_id "
        "AND e.sequence_number = d.sequence_number)"
    )
    held: dict[Any, tuple[int, int]] = {
        link: (count, of_stored)
        for link, count, of_stored in conn.execute(
            f"SELECT d.{c.link}, count(*), sum({stored}) FROM {c.table} d WHERE d.run_id = ? GROUP BY d.{c.link}",
            (run_id,),
        )
    }
    missing_rows = extra_rows = 0
    short: list[tuple[int, Any, int, int]] = []
    for link, wanted in implied.per_link.items():
        have = held.get(link, (0, 0))[0]
        if have < wanted:
            missing_rows += wanted - have
            short.append((implied.first_event[link], link, have, wanted))
    for link, (_count, of_stored) in held.items():
        extra_rows += max(0, of_stored - implied.per_link.get(link, 0))
    sample = []
    for seq, link, have, wanted in sorted(short)[:SAMPLE]:
        where = f"event {seq}" if c.link == "sequence_number" else f"{c.link}={link} (event {seq})"
        sample.append(where if have == 0 else f"{where}: {have} of {wanted} rows")
    source = f"event_stream_events: the rows {', '.join(c.types)} imply"
    derived_rows = sum(count for count, _ in held.values())
    return _entry(source, sum(implied.per_link.values()), derived_rows, sample, missing_rows, extra_rows)


def feed_run_id(feed_path: Path) -> str | None:
    """The run id the first line of a feed names (the ``run.state`` ``created`` event carries it)."""
    try:
        with feed_path.open(encoding="utf-8") as fh:
            first = json.loads(fh.readline())
    except (OSError, ValueError):
        return None
    run_id = (first.get("fields") or {}).get("run_id") if isinstance(first, dict) else None
    return None if run_id is None else str(run_id)


def _feed_lines(feed_path: Path) -> int:
    with feed_path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def _stream_coverage(conn: sqlite3.Connection, run_id: str, feed_path: Path, only_run: bool) -> dict[str, Any]:
    stored = conn.execute("SELECT count(*) FROM event_stream_events WHERE run_id = ?", (run_id,)).fetchone()[0]
    owner = feed_run_id(feed_path) if feed_path.exists() else None
    if not feed_path.exists() or (owner != run_id and not (owner is None and only_run)):
        return _entry("events.jsonl (not beside the database)", stored, stored, [], 0)
    lines = _feed_lines(feed_path)
    covered = conn.execute(
        "SELECT count(*) FROM event_stream_events WHERE run_id = ? AND sequence_number BETWEEN 1 AND ?", (run_id, lines)
    ).fetchone()[0]
    missing: list[int] = []
    if covered < lines:  # only then list which (the bus numbers the feed's lines 1..N)
        rows = conn.execute("SELECT sequence_number FROM event_stream_events WHERE run_id = ?", (run_id,))
        missing = sorted(set(range(1, lines + 1)) - {r[0] for r in rows})
    return _entry(str(feed_path), lines, stored, [f"event {seq}" for seq in missing], lines - covered)


def _profile_coverage(conn: sqlite3.Connection, run_id: str) -> dict[str, Any]:
    groups = conn.execute(
        "SELECT a.namespace, a.boundary, count(*), p.accesses FROM cache_accesses a LEFT JOIN cache_profiles p "
        "ON p.run_id = a.run_id AND p.namespace = a.namespace AND p.boundary = a.boundary "
        "WHERE a.run_id = ? GROUP BY a.namespace, a.boundary",
        (run_id,),
    ).fetchall()
    derived = conn.execute("SELECT count(*) FROM cache_profiles WHERE run_id = ?", (run_id,)).fetchone()[0]
    missing = [f"namespace={ns} boundary={b}" for ns, b, n, have in groups if have != n]
    return _entry("cache_accesses grouped by namespace and boundary", len(groups), derived, missing, len(missing))


def _manifest_coverage(conn: sqlite3.Connection, run_id: str, db_path: Path) -> dict[str, Any]:
    path = db_path.parent / "result_manifest.json"
    have = conn.execute("SELECT count(*) FROM manifests WHERE run_id = ?", (run_id,)).fetchone()[0]
    source = 0
    if path.exists():
        try:
            source = int(json.loads(path.read_text(encoding="utf-8")).get("run_id") == run_id)
        except (OSError, ValueError, AttributeError):
            source = 0
    missing = [str(path)] if source and not have else []
    return _entry(str(path), source, have, missing, len(missing))


def _checks(conn: sqlite3.Connection, run_id: str, terminal: bool) -> dict[str, dict[str, Any]]:
    def one(sql: str, *params: Any) -> Any:
        return conn.execute(sql, (run_id, *params)).fetchone()[0]

    checks: dict[str, dict[str, Any]] = {}
    errors = [
        r[0]
        for r in conn.execute(
            "SELECT sequence_number FROM event_stream_events WHERE run_id = ? AND instr(projected_tables, ?) > 0",
            (run_id, f",{PROJECTION_ERROR},"),
        )
    ]
    checks["events_project"] = {"status": "violated" if errors else "ok", "events": errors[:SAMPLE]}
    counts = {
        "rollouts": one("SELECT count(*) FROM rollouts WHERE run_id = ?"),
        "evidence_frames": one("SELECT count(*) FROM evidence_frames WHERE run_id = ?"),
        "usage_ledger": one("SELECT count(*) FROM usage_ledger WHERE run_id = ? AND boundary = ?", ROLLOUT_BOUNDARY),
    }
    checks["rollout_rows_agree"] = {"status": "ok" if len(set(counts.values())) == 1 else "violated", **counts}
    undecided = [
        r[0]
        for r in conn.execute(
            "SELECT c.candidate_id FROM candidates c WHERE c.run_id = ? AND c.proposal_index IS NOT NULL AND NOT "
            "EXISTS (SELECT 1 FROM acceptance_decisions a WHERE a.run_id = c.run_id "
            "AND a.proposal_index = c.proposal_index)",
            (run_id,),
        )
    ]
    status = "ok" if not undecided else ("violated" if terminal else "pending")
    checks["candidates_have_decisions"] = {"status": status, "candidates": undecided[:SAMPLE]}
    blind = [
        f"{cid} <- {parent}"
        for cid, parent in conn.execute(
            # a delta written before its parent's payload was known, though the parent had that module
            "SELECT d.candidate_id, d.parent_id FROM candidate_deltas d JOIN candidate_payloads p "
            "ON p.run_id = d.run_id AND p.candidate_id = d.parent_id WHERE d.run_id = ? AND d.old_text_sha256 IS NULL "
            "AND json_type(p.payload_json, '$.' || json_quote(d.module)) IS NOT NULL",
            (run_id,),
        )
    ]
    checks["deltas_know_their_parent"] = {"status": "violated" if blind else "ok", "deltas": blind[:SAMPLE]}
    checks["usage_matches_manifest"] = _usage_check(conn, run_id)
    return checks


def _usage_check(conn: sqlite3.Connection, run_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT manifest_json FROM manifests WHERE run_id = ?", (run_id,)).fetchone()
    usage = (json.loads(row[0]).get("usage") or {}) if row else {}
    if not usage:
        return {"status": "ok", "detail": "no manifest usage to compare"}
    ledger = {}
    for kind, clause in (("rollout", "boundary = ?"), ("proposer", "boundary <> ?")):
        sums = conn.execute(
            "SELECT coalesce(sum(calls), 0), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
            f"coalesce(sum(total_tokens), 0), sum(cost_usd) FROM usage_ledger WHERE run_id = ? AND {clause}",
            (run_id, ROLLOUT_BOUNDARY),
        ).fetchone()
        ledger[kind] = dict(zip(_USAGE_KEYS, sums, strict=True))
    differences = [
        f"{kind}.{key}: ledger {ledger[kind][key]} vs manifest {expected.get(key)}"
        for kind, expected in ((k, usage.get(k) or {}) for k in ("rollout", "proposer"))
        for key in _USAGE_KEYS
        if abs((ledger[kind][key] or 0) - (expected.get(key) or 0)) > 1e-6
    ]
    return {"status": "violated" if differences else "ok", "differences": differences[:SAMPLE], "ledger": ledger}


def compute_health(conn: sqlite3.Connection, db_path: Path, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read-only: ``(projection_freshness, invariant_report)`` for one run, computed in one read transaction."""
    conn.execute("BEGIN")
    try:
        status = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        terminal = status is not None and status[0] in TERMINAL_STATES
        runs = [r[0] for r in conn.execute("SELECT DISTINCT run_id FROM event_stream_events")]
        freshness: dict[str, dict[str, Any]] = {
            "event_stream_events": _stream_coverage(conn, run_id, db_path.parent / "events.jsonl", runs == [run_id])
        }
        has_events = conn.execute("SELECT 1 FROM event_stream_events WHERE run_id = ? LIMIT 1", (run_id,)).fetchone()
        missing_run = [f"run_id={run_id}"] if has_events and status is None else []
        freshness["runs"] = _entry(
            "event_stream_events", int(has_events is not None), int(status is not None), missing_run, len(missing_run)
        )
        implied = _implied_rows(conn, run_id)
        for coverage in COVERAGE:
            freshness[coverage.table] = _coverage(conn, run_id, coverage, implied[coverage.table])
        freshness["cache_profiles"] = _profile_coverage(conn, run_id)
        freshness["manifests"] = _manifest_coverage(conn, run_id, db_path)
        checks = _checks(conn, run_id, terminal)
    finally:
        conn.execute("COMMIT")
    if not terminal and freshness["event_stream_events"]["status"] == "stale":
        freshness["event_stream_events"]["status"] = "lagging"
    return freshness, _report(run_id, db_path, freshness, checks)


def _report(run_id: str, db_path: Path, freshness: dict[str, Any], checks: dict[str, Any]) -> dict[str, Any]:
    stale = [t for t, f in freshness.items() if f["status"] == "stale"]
    lagging = [t for t, f in freshness.items() if f["status"] == "lagging"]
    violated = [name for name, c in checks.items() if c["status"] == "violated"]
    missing = {
        t: {
            "missing_rows": freshness[t]["missing_rows"],
            "extra_rows": freshness[t].get("extra_rows", 0),
            "sample": freshness[t]["missing_sample"],
        }
        for t in stale
    }
    status = "violated" if stale or violated else ("lagging" if lagging else "ok")
    hint = repair_hint(db_path) if status == "violated" else None
    parts = []
    for t, m in missing.items():
        if m["missing_rows"]:
            parts.append(f"{t} misses {m['missing_rows']} row(s) ({', '.join(m['sample'][:3])})")
        if m["extra_rows"]:
            parts.append(f"{t} holds {m['extra_rows']} row(s) that no stored event implies")
    parts += [f"check {name} failed" for name in violated]
    if status == "violated":
        message = "; ".join(parts) + f". Rebuild the derived tables with: {hint}"
    elif status == "lagging":
        message = "the live writer is behind events.jsonl by its last batch; this is expected while the run goes"
    else:
        message = "every derived table covers its source rows"
    return {
        "run_id": run_id,
        "checked_at": utc_now(),
        "status": status,
        "missing": missing,
        "stale_tables": stale,
        "lagging_tables": lagging,
        "checks": checks,
        "violated_checks": violated,
        "repair_hint": hint,
        "message": message,
    }


def persist_health(conn: sqlite3.Connection, run_id: str, freshness: dict[str, Any], report: dict[str, Any]) -> None:
    """Store freshness rows and the report (keeping the last ``KEEP_REPORTS`` per run) in one write transaction."""
    checked = report["checked_at"]
    with write_transaction(conn):
        conn.executemany(
            "INSERT OR REPLACE INTO projection_freshness (run_id, table_name, source, source_rows, derived_rows, "
            "missing_rows, status, missing_sample_json, checked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    t,
                    f["source"],
                    f["source_rows"],
                    f["derived_rows"],
                    f["missing_rows"],
                    f["status"],
                    json.dumps(f["missing_sample"]),
                    checked,
                )
                for t, f in freshness.items()
            ],
        )
        conn.execute(
            "INSERT INTO invariant_reports (run_id, checked_at, status, missing_json, stale_tables_json, repair_hint, "
            "report_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                checked,
                report["status"],
                json.dumps(report["missing"]),
                json.dumps(report["stale_tables"]),
                report["repair_hint"],
                json.dumps(report, default=str),
            ),
        )
        conn.execute(
            "DELETE FROM invariant_reports WHERE run_id = ? AND report_id NOT IN (SELECT report_id FROM "
            "invariant_reports WHERE run_id = ? ORDER BY report_id DESC LIMIT ?)",
            (run_id, run_id, KEEP_REPORTS),
        )


def refresh_health(conn: sqlite3.Connection, db_path: Path, run_id: str) -> dict[str, Any]:
    """Compute and store a run's freshness and invariant report (on a writing connection); return the report."""
    freshness, report = compute_health(conn, db_path, run_id)
    persist_health(conn, run_id, freshness, report)
    return report
