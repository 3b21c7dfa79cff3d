"""The durable run queue in SQLite: the implementation of the :class:`RunQueue` protocol.

The patterns are those of procrastinate, saq and Oban:

- a claim is ONE statement (``UPDATE ... WHERE request_id = (SELECT ... LIMIT 1) RETURNING *``), so two workers
  can never take the same request; it takes a lease with an owner, an expiry and a random fencing token;
- every later write by the worker (start, heartbeat, complete, release) is ``... WHERE request_id = ? AND
  lease_token = ?`` and raises :class:`~synth_opt.errors.LeaseLostError` when nothing changed, so a worker whose
  lease expired and was reclaimed cannot overwrite the new owner's work (the refusal is audited in ``operations``);
- a queued request is not claimed while another live, unexpired request holds its container URL or cache namespace;
- an idempotency key (a unique index) makes a retried submission return the first request; a second live request
  for one run id is a conflict (a partial unique index backs the check);
- cancel: a queued request is cancelled at once; a leased or running one gets ``cancel_requested`` and its worker
  stops cooperatively;
- time comes from an injected clock, so lease expiry is tested without sleeping.

``attempts`` counts claims: the worker holding a lease runs attempt number ``attempts``. ``recover()`` puts expired
requests back in the queue (their next claim is attempt ``attempts + 1``). Every write runs in ``BEGIN IMMEDIATE``.

Every method returns a typed record (:mod:`~synth_opt.service.queue.records`) built from the row the statement
returned. The queue is synchronous (sqlite3, a lock around one connection); async callers run its short
transactions in a worker thread, and read through :meth:`SqliteRunQueue.reader` (aiosqlite) instead. Open one with
:func:`~synth_opt.service.queue.open_queue`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from synth_opt.errors import ConfigError, LeaseLostError, SynthOptimizerError
from synth_opt.service.errors import QueueConflictError, RunRequestNotFoundError
from synth_opt.service.queue.health import refresh_queue_health
from synth_opt.service.queue.protocol import RunQueue
from synth_opt.service.queue.reader import SqliteQueueReader, list_filter, list_limit, not_found
from synth_opt.service.queue.records import Recovery, RequestStatus, RunRequest, Submission
from synth_opt.service.queue.rows import dumps, summary_columns
from synth_opt.service.queue.schema import LIVE_STATUSES, open_service_db
from synth_opt.workspace.db import write_transaction

__all__ = ["DEFAULT_LEASE_SECONDS", "RunQueue", "SqliteRunQueue"]

DEFAULT_LEASE_SECONDS = 60.0

_CLAIM = """
UPDATE run_requests
SET status = 'leased', lease_owner = :owner, lease_token = :token, lease_seconds = :lease,
    lease_expires_at = :now + :lease, leased_at = :now, heartbeat_at = :now, attempts = attempts + 1
WHERE request_id = (
    SELECT q.request_id FROM run_requests AS q
    WHERE q.status = 'queued' AND q.cancel_requested = 0
      AND NOT EXISTS (
        SELECT 1 FROM run_requests AS held
        WHERE held.status IN ('leased', 'running') AND held.lease_expires_at > :now
          AND ((q.container_url IS NOT NULL AND held.container_url = q.container_url)
            OR (q.cache_namespace IS NOT NULL AND held.cache_namespace = q.cache_namespace)))
    ORDER BY q.priority DESC, q.submitted_at, q.rowid
    LIMIT 1)
RETURNING *
"""
_EXPIRED = "status IN ('leased', 'running') AND lease_expires_at <= ?"


class SqliteRunQueue:
    """The queue in one SQLite file. One instance holds one connection; it is safe to share between threads (a lock
    serialises its use) and any number of instances in any number of processes may open the same file."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        if not lease_seconds > 0:
            raise ConfigError(f"lease_seconds must be positive (got {lease_seconds})", lease_seconds=lease_seconds)
        self.db_path = Path(db_path)
        self.clock = clock
        self.lease_seconds = float(lease_seconds)
        self._lock = threading.Lock()
        self._conn = open_service_db(self.db_path)
        self._conn.row_factory = sqlite3.Row

    def __enter__(self) -> SqliteRunQueue:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, write_transaction(self._conn) as conn:
            yield conn

    def _record(
        self,
        conn: sqlite3.Connection,
        request_id: str | None,
        kind: str,
        status: str,
        worker: str | None,
        **detail: Any,
    ) -> None:
        conn.execute(
            "INSERT INTO operations (request_id, kind, status, worker_id, at, detail_json) VALUES (?, ?, ?, ?, ?, ?)",
            (request_id, kind, status, worker, self.clock(), dumps(detail) or "{}"),
        )

    # -- submission -----------------------------------------------------------------------------------------------

    def submit(
        self,
        *,
        run_id: str,
        config_path: str,
        run_dir: str | None = None,
        container_url: str | None = None,
        cache_namespace: str | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        fresh: bool = False,
    ) -> Submission:
        """Queue a request; with a known idempotency key, return that request (``deduplicated``) instead.
        ``fresh``: its first attempt starts the run directory over instead of resuming or returning what it holds."""
        now = self.clock()
        refused: SynthOptimizerError | None = None
        with self._write() as conn:
            if idempotency_key is not None:
                found = conn.execute("SELECT * FROM run_requests WHERE idempotency_key = ?", (idempotency_key,))
                existing = found.fetchone()
                if existing is not None:
                    if existing["run_id"] == run_id and existing["config_path"] == config_path:
                        self._record(conn, existing["request_id"], "submit", "deduplicated", None, key=idempotency_key)
                        return Submission(RunRequest.from_row(existing), deduplicated=True)
                    refused = QueueConflictError(
                        f"idempotency key {idempotency_key!r} already names request {existing['request_id']} for "
                        f"run {existing['run_id']} ({existing['config_path']}); use a new key for another config",
                        request_id=existing["request_id"],
                        run_id=existing["run_id"],
                    )
            live = conn.execute(
                "SELECT request_id, status FROM run_requests WHERE run_id = ? AND status IN (?, ?, ?)",
                (run_id, *LIVE_STATUSES),
            ).fetchone()
            if refused is None and live is not None:
                refused = QueueConflictError(
                    f"run {run_id} already has a {live['status']} request {live['request_id']}; wait for it, cancel "
                    "it, or resubmit with the idempotency key it was submitted with",
                    request_id=live["request_id"],
                    run_id=run_id,
                    status=live["status"],
                )
            if refused is None:
                request_id = f"req-{uuid.uuid4().hex[:20]}"
                row = conn.execute(
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
                ).fetchone()
                self._record(conn, request_id, "submit", "succeeded", None, run_id=run_id, priority=priority)
                return Submission(RunRequest.from_row(row), deduplicated=False)
        raise refused

    # -- the worker's lease ---------------------------------------------------------------------------------------

    def claim(self, worker_id: str, *, lease_seconds: float | None = None) -> RunRequest | None:
        """Lease the next claimable request to ``worker_id`` (highest priority, then oldest), or None."""
        lease = float(lease_seconds or self.lease_seconds)
        token = uuid.uuid4().hex
        with self._write() as conn:
            params = {"owner": worker_id, "token": token, "lease": lease, "now": self.clock()}
            row = conn.execute(_CLAIM, params).fetchone()
            if row is None:
                return None
            for kind in ("container_url", "cache_namespace"):
                if row[kind] is not None:
                    conn.execute(
                        "INSERT INTO resource_leases (request_id, resource_kind, resource_key, owner, lease_token, "
                        "status, acquired_at, expires_at) VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
                        (row["request_id"], kind, row[kind], worker_id, token, params["now"], row["lease_expires_at"]),
                    )
            self._record(conn, row["request_id"], "claim", "succeeded", worker_id, attempt=row["attempts"])
            return RunRequest.from_row(row)

    def start(self, request_id: str, lease_token: str | None = None) -> RunRequest:
        return self._fenced(
            "start",
            request_id,
            lease_token,
            "UPDATE run_requests SET status = 'running', started_at = :now, heartbeat_at = :now, "
            "lease_expires_at = :now + lease_seconds WHERE request_id = :id AND status = 'leased' {fence} RETURNING *",
        )

    def heartbeat(self, request_id: str, lease_token: str) -> RunRequest:
        """Extend the lease by its length from now; the returned request says whether a cancel was requested."""
        return self._fenced(
            "heartbeat",
            request_id,
            lease_token,
            "UPDATE run_requests SET heartbeat_at = :now, lease_expires_at = :now + lease_seconds "
            "WHERE request_id = :id AND status IN ('leased', 'running') {fence} RETURNING *",
        )

    def complete(
        self,
        request_id: str,
        *,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        lease_token: str | None = None,
    ) -> RunRequest:
        """End a leased or running request: ``completed`` without an error, ``cancelled`` for a ``run_cancelled``
        error, else ``failed``. ``result`` (with or without an error) fills the run summary columns."""
        status = "completed" if error is None else "cancelled" if error.get("code") == "run_cancelled" else "failed"
        summary = summary_columns(result)
        assignments = ", ".join(f"{column} = :{column}" for column in summary)
        kind = {"completed": "complete", "failed": "fail", "cancelled": "cancel"}[status]
        cancel = dumps({"reason": error.get("message"), "by": "worker"}) if error and status == "cancelled" else None
        return self._fenced(
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

    def release(self, request_id: str, lease_token: str, *, reason: str) -> RunRequest:
        """Give a lease back (a worker shutting down): the request is queued again, or cancelled if that was asked."""
        return self._fenced(
            "release",
            request_id,
            lease_token,
            "UPDATE run_requests SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, "
            "finished_at = CASE WHEN cancel_requested THEN :now END, lease_owner = NULL, lease_token = NULL, "
            "lease_expires_at = NULL, leased_at = NULL, started_at = NULL, heartbeat_at = NULL "
            "WHERE request_id = :id AND status IN ('leased', 'running') {fence} RETURNING *",
            reason=reason,
        )

    def _fenced(self, kind: str, request_id: str, lease_token: str | None, sql: str, **values: Any) -> RunRequest:
        """Run one worker write; fenced by the lease token when one is given. Nothing changed means the lease is
        lost (token given and no longer the request's), the request is unknown, or it is in the wrong state."""
        params = {"id": request_id, "token": lease_token, "now": self.clock(), **values}
        statement = sql.replace("{fence}", "" if lease_token is None else "AND lease_token = :token")
        with self._write() as conn:
            row = conn.execute(statement, params).fetchone()
            if row is not None:
                self._after_write(conn, kind, row, lease_token or row["lease_token"], params["now"])
                self._record(conn, request_id, kind, "succeeded", row["lease_owner"], attempt=row["attempts"])
                return RunRequest.from_row(row)
            refused = self._refusal(conn, kind, request_id, lease_token)
            if not isinstance(refused, RunRequestNotFoundError):
                self._record(conn, request_id, kind, "rejected", None, error=refused.error_code)
        raise refused

    def _after_write(self, conn: sqlite3.Connection, kind: str, row: sqlite3.Row, token: str, now: float) -> None:
        """Keep ``resource_leases`` in step with the request's lease."""
        if kind in ("start", "heartbeat"):
            conn.execute(
                "UPDATE resource_leases SET expires_at = ? WHERE request_id = ? AND lease_token = ? "
                "AND status = 'active'",
                (row["lease_expires_at"], row["request_id"], token),
            )
        else:
            conn.execute(
                "UPDATE resource_leases SET status = 'released', released_at = ? WHERE request_id = ? "
                "AND lease_token = ? AND status = 'active'",
                (now, row["request_id"], token),
            )

    def _refusal(
        self, conn: sqlite3.Connection, kind: str, request_id: str, lease_token: str | None
    ) -> SynthOptimizerError:
        row = conn.execute(
            "SELECT status, lease_owner, lease_token FROM run_requests WHERE request_id = ?", (request_id,)
        ).fetchone()
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

    # -- maintenance and control ----------------------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Requeue every leased or running request whose lease has expired (or cancel it, if a cancel was asked),
        and refresh the queue's freshness and invariant rows."""
        now = self.clock()
        with self._write() as conn:
            expired = conn.execute(
                f"SELECT request_id, lease_owner, lease_token, attempts, cancel_requested FROM run_requests "
                f"WHERE {_EXPIRED} ORDER BY request_id",
                (now,),
            ).fetchall()
            conn.execute(
                "UPDATE run_requests SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, "
                "finished_at = CASE WHEN cancel_requested THEN ? END, lease_owner = NULL, lease_token = NULL, "
                f"lease_expires_at = NULL, leased_at = NULL, started_at = NULL, heartbeat_at = NULL WHERE {_EXPIRED}",
                (now, now),
            )
            for row in expired:
                conn.execute(
                    "UPDATE resource_leases SET status = 'expired', released_at = ? WHERE request_id = ? "
                    "AND lease_token = ? AND status = 'active'",
                    (now, row["request_id"], row["lease_token"]),
                )
                to = "cancelled" if row["cancel_requested"] else "queued"
                self._record(
                    conn,
                    row["request_id"],
                    "recover",
                    "succeeded",
                    None,
                    previous_owner=row["lease_owner"],
                    attempts=row["attempts"],
                    to=to,
                )
            health = refresh_queue_health(conn, now)
        requeued = tuple(r["request_id"] for r in expired if not r["cancel_requested"])
        cancelled = tuple(r["request_id"] for r in expired if r["cancel_requested"])
        return Recovery(requeued=requeued, cancelled=cancelled, invariants=health)

    def cancel(self, request_id: str, *, reason: str = "cancelled by the caller") -> RunRequest:
        """Cancel a queued request at once; ask a leased or running one to stop (its worker polls
        ``cancel_requested``). A terminal request is returned unchanged."""
        now = self.clock()
        payload = dumps({"reason": reason, "requested_at": now})
        with self._write() as conn:
            row = conn.execute("SELECT * FROM run_requests WHERE request_id = ?", (request_id,)).fetchone()
            if row is not None and row["status"] == "queued":
                row = conn.execute(
                    "UPDATE run_requests SET status = 'cancelled', cancel_requested = 1, finished_at = ?, "
                    "cancel_json = ? WHERE request_id = ? RETURNING *",
                    (now, payload, request_id),
                ).fetchone()
                self._record(conn, request_id, "cancel", "succeeded", None, phase="cancelled", reason=reason)
            elif row is not None and row["status"] in ("leased", "running"):
                row = conn.execute(
                    "UPDATE run_requests SET cancel_requested = 1, cancel_json = coalesce(cancel_json, ?) "
                    "WHERE request_id = ? RETURNING *",
                    (payload, request_id),
                ).fetchone()
                self._record(conn, request_id, "cancel", "succeeded", None, phase="requested", reason=reason)
            if row is not None:
                return RunRequest.from_row(row)
        raise RunRequestNotFoundError(f"run request {request_id} does not exist; list requests with GET /runs")

    def get(self, request_id: str) -> RunRequest:
        with self._lock:
            row = self._conn.execute("SELECT * FROM run_requests WHERE request_id = ?", (request_id,)).fetchone()
        if row is None:
            raise not_found(request_id)
        return RunRequest.from_row(row)

    def list_requests(self, *, status: RequestStatus | str | None = None, limit: int = 100) -> list[RunRequest]:
        """Requests, newest first, optionally of one status."""
        where, params = list_filter(status)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT * FROM run_requests {where} ORDER BY submitted_at DESC, rowid DESC LIMIT ?",
                (*params, list_limit(limit)),
            ).fetchall()
        return [RunRequest.from_row(row) for row in rows]

    def reader(self) -> SqliteQueueReader:
        """An async (aiosqlite) reader of this queue's file, for the service's HTTP handlers."""
        return SqliteQueueReader(self.db_path)
