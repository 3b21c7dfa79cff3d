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
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from synth_opt.errors import ConfigError
from synth_opt.service.queue.aio import AsyncSqliteRunQueue
from synth_opt.service.queue.plans import Plan, Refused
from synth_opt.service.queue.protocol import RunQueue
from synth_opt.service.queue.schema import open_service_db
from synth_opt.service.queue.surface import PlanFactory, SyncQueueSurface
from synth_opt.workspace.db import write_transaction

__all__ = ["DEFAULT_LEASE_SECONDS", "RunQueue", "SqliteRunQueue"]

DEFAULT_LEASE_SECONDS = 60.0
T = TypeVar("T")


class SqliteRunQueue(SyncQueueSurface):
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

    def _write(self, make: PlanFactory[T | Refused], *, wakes: bool = False) -> T:
        """Run a plan in one ``BEGIN IMMEDIATE`` transaction; a refusal is raised after its audit row commits. A
        plan that returns a :class:`Built` row leaves its record to the caller, built after the commit. (Workers
        on SQLite poll: ``wakes`` signals nothing.)"""
        with self._lock, write_transaction(self._conn):
            outcome = self._drive(make())
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome

    def _read(self, make: PlanFactory[T | Refused]) -> T:
        with self._lock:
            outcome = self._drive(make())
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome
