"""The queue's operations, written once for every driver.

Each operation is a *plan*: a generator that yields its statements (``(sql, params)``, in SQL that SQLite and
PostgreSQL both accept), is sent each statement's rows (``sqlite3.Row``, or a row of the same two faces) and
returns its record. The drivers only drive plans: SQLite's synchronous (:mod:`~synth_opt.service.queue.sqlite`)
and async (:mod:`~synth_opt.service.queue.aio`) ones each write in one ``BEGIN IMMEDIATE`` transaction,
PostgreSQL's (:mod:`~synth_opt.service.queue.postgres`) in one transaction under an advisory lock, so the claim,
the fencing and the audit trail cannot drift apart between them. A refusal that must still be audited (a fenced
write whose lease is gone) is returned as :class:`Refused`: the driver commits the audit row, then raises the
error. A request's ``request_resources`` rows live while it does: a terminal request's are deleted, so the claim's
check never joins past requests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from synth_opt.errors import LeaseLostError, RunFailedError, SynthOptimizerError
from synth_opt.service.errors import QueueConflictError, RunRequestNotFoundError
from synth_opt.service.queue.health import queue_health_plan
from synth_opt.service.queue.records import Recovery, RequestStatus, RunRequest, Submission
from synth_opt.service.queue.rows import dumps, summary_columns
from synth_opt.service.queue.schema import LIVE_STATUSES, TERMINAL_STATUSES

__all__ = [
    "MAX_EXPIRED_LEASES",
    "MAX_LIST",
    "Built",
    "Plan",
    "QueuePlans",
    "Refused",
    "Step",
    "new_request_id",
    "not_found",
]

T = TypeVar("T")
Step = tuple[str, Mapping[str, Any] | tuple[Any, ...]]
Plan = Generator[Step, list[Any], T]
MAX_LIST = 1000

_CLAIM = """
UPDATE run_requests
SET status = 'leased', lease_owner = :owner, lease_token = :token, lease_seconds = :lease,
    lease_expires_at = :now + :lease, leased_at = :now, heartbeat_at = :now, attempts = attempts + 1
WHERE request_id = (
    SELECT q.request_id FROM run_requests AS q
    WHERE q.status = 'queued' AND q.cancel_requested = 0
      AND NOT EXISTS (
        SELECT 1 FROM request_resources AS mine
        JOIN request_resources AS theirs
          ON theirs.resource_kind = mine.resource_kind AND theirs.resource_key = mine.resource_key
         AND theirs.request_id <> mine.request_id
        JOIN run_requests AS held ON held.request_id = theirs.request_id
        WHERE mine.request_id = q.request_id
          AND held.status IN ('leased', 'running') AND held.lease_expires_at > :now)
    ORDER BY q.priority DESC, q.submitted_at, q.rowid
    LIMIT 1{lock})
RETURNING *
"""
_EXPIRED = "status IN ('leased', 'running') AND lease_expires_at <= ?"
MAX_EXPIRED_LEASES = 3
"""A request whose lease expires this many times (its worker died each time) is failed instead of requeued."""
_EARLIER_EXPIRIES = "SELECT count(*) FROM operations WHERE request_id = ? AND kind = 'recover'"
# the status a fenced write leaves its request in ("" for complete: the status it writes), by operation kind: how a
# write run a second time recognises that the first one committed (release clears the token: not recognisable)
_DONE = {"start": "running", "complete": "", "fail": "", "cancel": ""}
_EVENT_ROWS = 100  # rows per INSERT of an append (SQLite allows 32,766 parameters a statement; 4 a row)
_STATUS_COUNTS = {
    "run_requests": "run_request_status_counts",
    "operations": "operation_status_counts",
    "resource_leases": "resource_lease_status_counts",
    "projection_freshness": "projection_status_counts",
}


@dataclass(frozen=True, slots=True)
class Refused:
    """A plan's refusal: the driver commits what the plan wrote (its audit row), then raises ``error``."""

    error: SynthOptimizerError


@dataclass(frozen=True, slots=True)
class Built(Generic[T]):
    """A plan's result still as its row: the driver builds the record (``build(row)``) once the transaction has
    committed, outside the write lock the other workers wait on."""

    build: Callable[[Any], T]
    row: Any

    def value(self) -> T:
        return self.build(self.row)


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex[:20]}"


def not_found(request_id: str) -> RunRequestNotFoundError:
    return RunRequestNotFoundError(
        f"run request {request_id} does not exist; list requests with GET /runs", request_id=request_id
    )


def _forget_resources(request_id: str) -> Plan[None]:
    """A terminal request holds nothing any more: its resource rows go (the claim's check joins live ones only)."""
    yield ("DELETE FROM request_resources WHERE request_id = ?", (request_id,))


def _first(rows: list[Any]) -> Any:
    return rows[0] if rows else None


def _given_up(request_id: str, expiries: int, owner: str | None) -> RunFailedError:
    return RunFailedError(
        f"run request {request_id} was given up after {expiries} attempts: each time, the worker running it "
        f"({owner or 'unknown'} the last time) stopped heartbeating before it wrote an outcome (it died, hung or "
        "lost the database) and its lease expired; see that worker's log for the cause, fix it and submit the "
        "config again",
        request_id=request_id,
        attempts=expiries,
        max_attempts=MAX_EXPIRED_LEASES,
        last_owner=owner,
    )


class QueuePlans:
    """The plans of every queue operation; a driver subclass provides ``clock`` and ``lease_seconds``, and a
    backend whose claims lock rows sets ``claim_lock`` (PostgreSQL: ``FOR UPDATE OF q SKIP LOCKED``)."""

    clock: Callable[[], float]
    lease_seconds: float
    claim_lock: str = ""
    rerun: bool = False
    """Set by a driver while it runs an operation a second time, after its connection was lost before the first
    try's commit was acknowledged: a fenced write that finds its own result then returns it instead of a refusal."""

    def _record(self, request_id: str | None, kind: str, status: str, worker: str | None, **detail: Any) -> Plan[None]:
        yield (
            "INSERT INTO operations (request_id, kind, status, worker_id, at, detail_json) VALUES (?, ?, ?, ?, ?, ?)",
            (request_id, kind, status, worker, self.clock(), dumps(detail) or "{}"),
        )

    # -- submission -----------------------------------------------------------------------------------------------

    def _submit_plan(
        self,
        *,
        run_id: str,
        config_path: str,
        run_dir: str | None,
        container_url: str | None,
        cache_namespace: str | None,
        priority: int,
        idempotency_key: str | None,
        fresh: bool,
        container_urls: Sequence[str] = (),
        request_id: str | None = None,
    ) -> Plan[Submission | Refused]:
        """``container_urls``: the replicas of ``[container] urls``; each is a resource of the request, as
        ``container_url`` is (and ``container_url`` shows them, comma-separated, when it is not given).
        ``request_id``: chosen by the caller before the first try, so a submission run again after a lost
        connection finds its own request instead of a conflict with it."""
        now = self.clock()
        request_id = request_id or new_request_id()
        mine = _first((yield ("SELECT * FROM run_requests WHERE request_id = ?", (request_id,))))
        if mine is not None:  # this submission committed before its connection was lost
            return Submission(RunRequest.from_row(mine), deduplicated=False)
        urls = list(dict.fromkeys(container_urls)) or ([container_url] if container_url else [])
        container_url = container_url or (", ".join(urls) if urls else None)
        if idempotency_key is not None:
            existing = _first((yield ("SELECT * FROM run_requests WHERE idempotency_key = ?", (idempotency_key,))))
            if existing is not None:
                if existing["run_id"] == run_id and existing["config_path"] == config_path:
                    yield from self._record(existing["request_id"], "submit", "deduplicated", None, key=idempotency_key)
                    return Submission(RunRequest.from_row(existing), deduplicated=True)
                return Refused(
                    QueueConflictError(
                        f"idempotency key {idempotency_key!r} already names request {existing['request_id']} for "
                        f"run {existing['run_id']} ({existing['config_path']}); use a new key for another config",
                        request_id=existing["request_id"],
                        run_id=existing["run_id"],
                    )
                )
        live = _first(
            (
                yield (
                    "SELECT request_id, status FROM run_requests WHERE run_id = ? AND status IN (?, ?, ?)",
                    (run_id, *LIVE_STATUSES),
                )
            )
        )
        if live is not None:
            return Refused(
                QueueConflictError(
                    f"run {run_id} already has a {live['status']} request {live['request_id']}; wait for it, cancel "
                    "it, or resubmit with the idempotency key it was submitted with",
                    request_id=live["request_id"],
                    run_id=run_id,
                    status=live["status"],
                )
            )
        rows = yield (
            "INSERT INTO run_requests (request_id, run_id, config_path, run_dir, container_url, "
            "cache_namespace, priority, status, idempotency_key, submitted_at, fresh) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?) RETURNING *",
            (
                request_id,
                run_id,
                config_path,
                run_dir,
                container_url,
                cache_namespace,
                int(priority),
                idempotency_key,
                now,
                int(bool(fresh)),
            ),
        )
        resources = [("container_url", url) for url in urls]
        resources += [("cache_namespace", cache_namespace)] if cache_namespace is not None else []
        for kind, key in resources:
            yield (
                "INSERT INTO request_resources (request_id, resource_kind, resource_key) VALUES (?, ?, ?)",
                (request_id, kind, key),
            )
        yield from self._record(request_id, "submit", "succeeded", None, run_id=run_id, priority=priority)
        return Submission(RunRequest.from_row(rows[0]), deduplicated=False)

    # -- the worker's lease ---------------------------------------------------------------------------------------

    def _claim_plan(
        self, worker_id: str, lease_seconds: float | None, token: str | None = None
    ) -> Plan[Built[RunRequest] | None]:
        """``token``: the new lease's fencing token, chosen by the caller before the first try, so a claim run again
        after a lost connection returns the lease it took instead of taking a second one."""
        lease = float(lease_seconds or self.lease_seconds)
        params = {"owner": worker_id, "token": token or uuid.uuid4().hex, "lease": lease, "now": self.clock()}
        if token is not None:
            mine = _first((yield ("SELECT * FROM run_requests WHERE lease_token = ?", (token,))))
            if mine is not None:
                return Built(RunRequest.from_row, mine)
        row = _first((yield (_CLAIM.format(lock=self.claim_lock), params)))
        if row is None:
            return None
        held = yield (
            "SELECT resource_kind, resource_key FROM request_resources WHERE request_id = ? "
            "ORDER BY resource_kind DESC, resource_key",  # container URLs first, then the namespace
            (row["request_id"],),
        )
        for resource in held:
            yield (
                "INSERT INTO resource_leases (request_id, resource_kind, resource_key, owner, lease_token, "
                "status, acquired_at, expires_at) VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
                (
                    row["request_id"],
                    resource["resource_kind"],
                    resource["resource_key"],
                    worker_id,
                    params["token"],
                    params["now"],
                    row["lease_expires_at"],
                ),
            )
        yield from self._record(row["request_id"], "claim", "succeeded", worker_id, attempt=row["attempts"])
        return Built(RunRequest.from_row, row)

    def _start_plan(self, request_id: str, lease_token: str | None) -> Plan[Built[RunRequest] | Refused]:
        return self._fenced_plan(
            "start",
            request_id,
            lease_token,
            "UPDATE run_requests SET status = 'running', started_at = :now, heartbeat_at = :now, "
            "lease_expires_at = :now + lease_seconds WHERE request_id = :id AND status = 'leased' {fence} RETURNING *",
        )

    def _heartbeat_plan(self, request_id: str, lease_token: str) -> Plan[Built[RunRequest] | Refused]:
        return self._fenced_plan(
            "heartbeat",
            request_id,
            lease_token,
            "UPDATE run_requests SET heartbeat_at = :now, lease_expires_at = :now + lease_seconds "
            "WHERE request_id = :id AND status IN ('leased', 'running') {fence} RETURNING *",
        )

    def _complete_plan(
        self,
        request_id: str,
        result: Mapping[str, Any] | None,
        error: Mapping[str, Any] | None,
        lease_token: str | None,
    ) -> Plan[Built[RunRequest] | Refused]:
        status = "completed" if error is None else "cancelled" if error.get("code") == "run_cancelled" else "failed"
        summary = summary_columns(result)
        assignments = ", ".join(f"{column} = :{column}" for column in summary)
        kind = {"completed": "complete", "failed": "fail", "cancelled": "cancel"}[status]
        cancel = dumps({"reason": error.get("message"), "by": "worker"}) if error and status == "cancelled" else None
        return self._fenced_plan(
            kind,
            request_id,
            lease_token,
            f"UPDATE run_requests SET status = :status, finished_at = :now, lease_expires_at = NULL, "
            f"error_json = :error, cancel_json = coalesce(cancel_json, :cancel), {assignments} "
            "WHERE request_id = :id AND status IN ('leased', 'running') {fence} RETURNING *",
            status=status,
            error=dumps(dict(error)) if error is not None else None,
            cancel=cancel,
            **summary,
        )

    def _release_plan(self, request_id: str, lease_token: str, reason: str) -> Plan[Built[RunRequest] | Refused]:
        return self._fenced_plan(
            "release",
            request_id,
            lease_token,
            "UPDATE run_requests SET status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END, "
            "finished_at = CASE WHEN cancel_requested = 1 THEN :now END, lease_owner = NULL, lease_token = NULL, "
            "lease_expires_at = NULL, leased_at = NULL, started_at = NULL, heartbeat_at = NULL "
            "WHERE request_id = :id AND status IN ('leased', 'running') {fence} RETURNING *",
            reason=reason,
        )

    def _fenced_plan(
        self, kind: str, request_id: str, lease_token: str | None, sql: str, *, status: str = "", **values: Any
    ) -> Plan[Built[RunRequest] | Refused]:
        """One worker write; fenced by the lease token when one is given. Nothing changed means the lease is lost
        (token given and no longer the request's), the request is unknown, or it is in the wrong state."""
        params = {"id": request_id, "token": lease_token, "now": self.clock(), "status": status, **values}
        statement = sql.replace("{fence}", "" if lease_token is None else "AND lease_token = :token")
        row = _first((yield (statement, params)))
        if row is not None:
            yield from self._after_write(kind, row, lease_token or row["lease_token"], params["now"])
            yield from self._record(request_id, kind, "succeeded", row["lease_owner"], attempt=row["attempts"])
            return Built(RunRequest.from_row, row)
        done = _DONE.get(kind)
        if self.rerun and lease_token is not None and done is not None:
            # this very write may have committed already: the driver runs an operation again when its connection
            # was lost before the commit was acknowledged; the request as that write left it is its result
            again = _first((yield ("SELECT * FROM run_requests WHERE request_id = ?", (request_id,))))
            if again is not None and again["lease_token"] == lease_token and again["status"] == (done or status):
                return Built(RunRequest.from_row, again)
        refused = yield from self._refusal(kind, request_id, lease_token)
        if not isinstance(refused, RunRequestNotFoundError):
            yield from self._record(request_id, kind, "rejected", None, error=refused.error_code)
        return Refused(refused)

    def _after_write(self, kind: str, row: Any, token: str, now: float) -> Plan[None]:
        """Keep ``resource_leases`` in step with the request's lease."""
        if kind in ("start", "heartbeat"):
            yield (
                "UPDATE resource_leases SET expires_at = ? WHERE request_id = ? AND lease_token = ? "
                "AND status = 'active'",
                (row["lease_expires_at"], row["request_id"], token),
            )
        else:
            yield (
                "UPDATE resource_leases SET status = 'released', released_at = ? WHERE request_id = ? "
                "AND lease_token = ? AND status = 'active'",
                (now, row["request_id"], token),
            )
        if row["status"] in TERMINAL_STATUSES:
            yield from _forget_resources(row["request_id"])

    def _refusal(self, kind: str, request_id: str, lease_token: str | None) -> Plan[SynthOptimizerError]:
        row = _first(
            (
                yield (
                    "SELECT status, lease_owner, lease_token FROM run_requests WHERE request_id = ?",
                    (request_id,),
                )
            )
        )
        if row is None:
            return not_found(request_id)
        if lease_token is not None and row["lease_token"] != lease_token:
            return LeaseLostError(
                f"{kind} of run request {request_id} refused: this worker's lease is gone (the request is now "
                f"{row['status']}, held by {row['lease_owner'] or 'nobody'}); stop working on it",
                request_id=request_id,
                status=row["status"],
                lease_owner=row["lease_owner"],
            )
        return QueueConflictError(
            f"cannot {kind} run request {request_id}: it is {row['status']}",
            request_id=request_id,
            status=row["status"],
        )

    # -- the event stream -----------------------------------------------------------------------------------------

    def _append_events_plan(
        self, request_id: str, lease_token: str, attempt: int, first_line: int, lines: list[str]
    ) -> Plan[Refused | None]:
        """Append an attempt's feed lines from line number ``first_line``, fenced by the lease token; lines already
        there (an append retried after its commit) are kept as they are."""
        row = _first((yield ("SELECT lease_token FROM run_requests WHERE request_id = ?", (request_id,))))
        if row is None or row["lease_token"] != lease_token:
            refused = yield from self._refusal("append events to", request_id, lease_token)
            return Refused(refused)
        for start in range(0, len(lines), _EVENT_ROWS):
            chunk = lines[start : start + _EVENT_ROWS]
            values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
            params = [
                value
                for number, line in enumerate(chunk, start=first_line + start)
                for value in (request_id, attempt, number, line)
            ]
            yield (
                f"INSERT INTO request_events (request_id, attempt, line_no, line) VALUES {values} "
                "ON CONFLICT (request_id, attempt, line_no) DO NOTHING",
                tuple(params),
            )
        return None

    def _events_plan(self, request_id: str, attempt: int, after: int, limit: int) -> Plan[list[tuple[int, str]]]:
        """An attempt's feed lines numbered above ``after`` (-1: from the first), in order, at most ``limit``."""
        rows = yield (
            "SELECT line_no, line FROM request_events WHERE request_id = ? AND attempt = ? AND line_no > ? "
            "ORDER BY line_no LIMIT ?",
            (request_id, attempt, after, max(1, int(limit))),
        )
        return [(int(row[0]), str(row[1])) for row in rows]

    # -- maintenance and control ----------------------------------------------------------------------------------

    def _recover_plan(self) -> Plan[Recovery]:
        """Requeue the requests whose lease expired (their worker died, hung or lost the database), cancel those
        whose cancel was asked, and fail those whose lease has now expired :data:`MAX_EXPIRED_LEASES` times, so a
        request that kills every worker running it cannot hold its container URL and cache namespace forever."""
        now = self.clock()
        expired = yield (
            f"SELECT request_id, lease_owner, lease_token, attempts, cancel_requested FROM run_requests "
            f"WHERE {_EXPIRED} ORDER BY request_id",
            (now,),
        )
        outcomes: dict[str, list[str]] = {"queued": [], "cancelled": [], "failed": []}
        for row in expired:
            request_id = row["request_id"]
            earlier = _first((yield (_EARLIER_EXPIRIES, (request_id,))))
            expiries = int(earlier[0]) + 1
            to = "cancelled" if row["cancel_requested"] else "failed" if expiries >= MAX_EXPIRED_LEASES else "queued"
            error = None if to != "failed" else _given_up(request_id, expiries, row["lease_owner"]).to_dict()
            yield (
                "UPDATE run_requests SET status = ?, finished_at = ?, error_json = coalesce(?, error_json), "
                "lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, leased_at = NULL, "
                "started_at = NULL, heartbeat_at = NULL WHERE request_id = ?",
                (to, None if to == "queued" else now, dumps(error) if error else None, request_id),
            )
            yield (
                "UPDATE resource_leases SET status = 'expired', released_at = ? WHERE request_id = ? "
                "AND lease_token = ? AND status = 'active'",
                (now, request_id, row["lease_token"]),
            )
            if to != "queued":
                yield from _forget_resources(request_id)
            outcomes[to].append(request_id)
            yield from self._record(
                request_id,
                "recover",
                "succeeded",
                None,
                previous_owner=row["lease_owner"],
                attempts=row["attempts"],
                expiries=expiries,
                to=to,
            )
        health = yield from queue_health_plan(now)
        return Recovery(
            requeued=tuple(outcomes["queued"]),
            cancelled=tuple(outcomes["cancelled"]),
            invariants=health,
            failed=tuple(outcomes["failed"]),
        )

    def _cancel_plan(self, request_id: str, reason: str) -> Plan[RunRequest | Refused]:
        now = self.clock()
        payload = dumps({"reason": reason, "requested_at": now})
        row = _first((yield ("SELECT * FROM run_requests WHERE request_id = ?", (request_id,))))
        if row is not None and row["status"] == "queued":
            row = _first(
                (
                    yield (
                        "UPDATE run_requests SET status = 'cancelled', cancel_requested = 1, finished_at = ?, "
                        "cancel_json = ? WHERE request_id = ? RETURNING *",
                        (now, payload, request_id),
                    )
                )
            )
            yield from _forget_resources(request_id)
            yield from self._record(request_id, "cancel", "succeeded", None, phase="cancelled", reason=reason)
        elif row is not None and row["status"] in ("leased", "running"):
            row = _first(
                (
                    yield (
                        "UPDATE run_requests SET cancel_requested = 1, cancel_json = coalesce(cancel_json, ?) "
                        "WHERE request_id = ? RETURNING *",
                        (payload, request_id),
                    )
                )
            )
            yield from self._record(request_id, "cancel", "succeeded", None, phase="requested", reason=reason)
        if row is None:
            return Refused(
                RunRequestNotFoundError(f"run request {request_id} does not exist; list requests with GET /runs")
            )
        return RunRequest.from_row(row)

    # -- reads ----------------------------------------------------------------------------------------------------

    def _get_plan(self, request_id: str) -> Plan[RunRequest | Refused]:
        row = _first((yield ("SELECT * FROM run_requests WHERE request_id = ?", (request_id,))))
        return Refused(not_found(request_id)) if row is None else RunRequest.from_row(row)

    def _list_plan(self, status: RequestStatus | str | None, limit: int) -> Plan[list[RunRequest]]:
        """Requests, newest first, optionally of one status (a ConfigError names an unknown one)."""
        where, params = ("", ()) if status is None else ("WHERE status = ?", (RequestStatus.parse(str(status)).value,))
        rows = yield (
            f"SELECT * FROM run_requests {where} ORDER BY submitted_at DESC, rowid DESC LIMIT ?",
            (*params, max(1, min(int(limit), MAX_LIST))),
        )
        return [RunRequest.from_row(row) for row in rows]

    def _status_plan(self) -> Plan[dict[str, Any]]:
        """The queue's status counts, in ``workspace_status``'s keys for a service database: requests, operations
        and resource leases by status, freshness rows by status, and the latest invariant report's status."""
        out: dict[str, Any] = {}
        for table, key in _STATUS_COUNTS.items():
            rows = yield (f"SELECT status, count(*) FROM {table} GROUP BY status", ())
            out[key] = {str(row[0]): int(row[1]) for row in rows}
        rows = yield (
            "SELECT status, count(*) FROM invariant_reports WHERE report_id IN "
            "(SELECT max(report_id) FROM invariant_reports GROUP BY run_id) GROUP BY status",
            (),
        )
        out["invariant_status_counts"] = {str(row[0]): int(row[1]) for row in rows}
        return out
