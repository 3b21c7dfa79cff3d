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
returned. The operations themselves are the plans of :mod:`~synth_opt.service.queue.plans`; this class drives them
synchronously (sqlite3, a lock around one connection) for the ``workspace_*`` functions and scripts, and creates
and migrates the file. Async code (the service's handlers and workers) uses :meth:`SqliteRunQueue.open_async`, the
same plans on aiosqlite. Open one with :func:`~synth_opt.service.queue.open_queue`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from synth_opt.errors import ConfigError
from synth_opt.service.queue.aio import AsyncSqliteRunQueue
from synth_opt.service.queue.plans import Plan, QueuePlans, Refused
from synth_opt.service.queue.protocol import RunQueue
from synth_opt.service.queue.records import Recovery, RequestStatus, RunRequest, Submission
from synth_opt.service.queue.schema import open_service_db
from synth_opt.workspace.db import write_transaction

__all__ = ["DEFAULT_LEASE_SECONDS", "RunQueue", "SqliteRunQueue"]

DEFAULT_LEASE_SECONDS = 60.0
T = TypeVar("T")


class SqliteRunQueue(QueuePlans):
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

    def open_async(self) -> AsyncSqliteRunQueue:
        """The same queue file through aiosqlite, for async callers (``async with queue.open_async() as aq``)."""
        return AsyncSqliteRunQueue(self.db_path, clock=self.clock, lease_seconds=self.lease_seconds)

    def _drive(self, plan: Plan[T]) -> T:
        try:
            step = next(plan)
            while True:
                step = plan.send(self._conn.execute(*step).fetchall())
        except StopIteration as done:
            value: T = done.value
            return value

    def _write(self, plan: Plan[T | Refused]) -> T:
        """Run a plan in one ``BEGIN IMMEDIATE`` transaction; a refusal is raised after its audit row commits. A
        plan that returns a :class:`Built` row leaves its record to the caller, built after the commit."""
        with self._lock, write_transaction(self._conn):
            outcome = self._drive(plan)
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome

    def _read(self, plan: Plan[T | Refused]) -> T:
        with self._lock:
            outcome = self._drive(plan)
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome

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
        return self._write(
            self._submit_plan(
                run_id=run_id,
                config_path=config_path,
                run_dir=run_dir,
                container_url=container_url,
                cache_namespace=cache_namespace,
                priority=priority,
                idempotency_key=idempotency_key,
                fresh=fresh,
            )
        )

    # -- the worker's lease ---------------------------------------------------------------------------------------

    def claim(self, worker_id: str, *, lease_seconds: float | None = None) -> RunRequest | None:
        """Lease the next claimable request to ``worker_id`` (highest priority, then oldest), or None."""
        built = self._write(self._claim_plan(worker_id, lease_seconds))
        return None if built is None else built.value()

    def start(self, request_id: str, lease_token: str | None = None) -> RunRequest:
        return self._write(self._start_plan(request_id, lease_token)).value()

    def heartbeat(self, request_id: str, lease_token: str) -> RunRequest:
        """Extend the lease by its length from now; the returned request says whether a cancel was requested."""
        return self._write(self._heartbeat_plan(request_id, lease_token)).value()

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
        return self._write(self._complete_plan(request_id, result, error, lease_token)).value()

    def release(self, request_id: str, lease_token: str, *, reason: str) -> RunRequest:
        """Give a lease back (a worker shutting down): the request is queued again, or cancelled if that was asked."""
        return self._write(self._release_plan(request_id, lease_token, reason)).value()

    # -- maintenance and control ----------------------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Requeue every leased or running request whose lease has expired (or cancel it, if a cancel was asked),
        and refresh the queue's freshness and invariant rows."""
        return self._write(self._recover_plan())

    def cancel(self, request_id: str, *, reason: str = "cancelled by the caller") -> RunRequest:
        """Cancel a queued request at once; ask a leased or running one to stop (its worker polls
        ``cancel_requested``). A terminal request is returned unchanged."""
        return self._write(self._cancel_plan(request_id, reason))

    def get(self, request_id: str) -> RunRequest:
        return self._read(self._get_plan(request_id))

    def list_requests(self, *, status: RequestStatus | str | None = None, limit: int = 100) -> list[RunRequest]:
        """Requests, newest first, optionally of one status."""
        return self._read(self._list_plan(status, limit))
