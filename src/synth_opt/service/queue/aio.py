"""The SQLite queue for async callers, through aiosqlite: the service's HTTP handlers submit, cancel, recover, show
and list requests (and poll one for the live event stream), and its workers claim, start, heartbeat, complete and
release, without blocking the event loop or hopping threads by hand.

It drives the same plans as the synchronous queue (:mod:`~synth_opt.service.queue.plans`): every write in one
``BEGIN IMMEDIATE`` transaction, on a connection with the queue's settings (WAL, ``synchronous=FULL``,
``busy_timeout``, ``foreign_keys``). One connection serves every handler and the worker, so an ``anyio.Lock`` keeps
one plan at a time on it (a transaction spans several awaits). The file must exist already: the synchronous queue,
opened first, creates and migrates it (:func:`~synth_opt.service.queue.open_queue`) and hands out this one
(``SqliteRunQueue.open_async()``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiosqlite
import anyio

from synth_opt.errors import ConfigError
from synth_opt.service.queue.plans import Plan, Refused
from synth_opt.service.queue.surface import AsyncQueueSurface, PlanFactory
from synth_opt.workspace.db import BUSY_TIMEOUT_MS

__all__ = ["AsyncSqliteRunQueue"]

T = TypeVar("T")


class AsyncSqliteRunQueue(AsyncQueueSurface):
    """``async with AsyncSqliteRunQueue(path) as queue: await queue.get(request_id)``: one aiosqlite connection for
    its life."""

    def __init__(self, db_path: str | Path, *, clock: Callable[[], float] = time.time, lease_seconds: float) -> None:
        self.db_path = Path(db_path)
        self.clock = clock
        self.lease_seconds = float(lease_seconds)
        self._conn: aiosqlite.Connection | None = None
        self._lock = anyio.Lock()

    async def __aenter__(self) -> AsyncSqliteRunQueue:
        if not await anyio.Path(self.db_path).is_file():
            raise ConfigError(f"service database {self.db_path} does not exist; open it with open_queue first")
        conn = await aiosqlite.connect(self.db_path, isolation_level=None)
        try:
            conn.row_factory = aiosqlite.Row
            for pragma in (f"busy_timeout = {BUSY_TIMEOUT_MS}", "foreign_keys = ON", "synchronous = FULL"):
                await conn.execute(f"PRAGMA {pragma}")
            mode = await conn.execute_fetchall("PRAGMA journal_mode = WAL")
            if str(next(iter(mode))[0]).lower() != "wal":  # pragma: no cover - a file system without WAL support
                raise ConfigError(f"service database {self.db_path} cannot use WAL mode")
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("the async queue is not open; use it as 'async with queue.open_async() as queue'")
        return self._conn

    async def _drive(self, plan: Plan[T]) -> T:
        try:
            step = next(plan)
            while True:
                step = plan.send(list(await self.conn.execute_fetchall(*step)))
        except StopIteration as done:
            value: T = done.value
            return value

    async def _write(self, make: PlanFactory[T | Refused], *, wakes: bool = False) -> T:
        """Run a plan in one ``BEGIN IMMEDIATE`` transaction; a refusal is raised after its audit row commits."""
        async with self._lock:
            # BEGIN runs in aiosqlite's thread whether or not the caller is cancelled while it waits for the write
            # lock: shielded, so a cancel cannot leave the one connection inside a transaction nobody ends
            with anyio.CancelScope(shield=True):
                await self.conn.execute("BEGIN IMMEDIATE")
            try:
                outcome = await self._drive(make())
                with anyio.CancelScope(shield=True):  # a cancelled caller must not leave the transaction open
                    await self.conn.execute("COMMIT")
            except BaseException:
                with anyio.CancelScope(shield=True):
                    if self.conn.in_transaction:
                        await self.conn.execute("ROLLBACK")
                raise
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome

    async def _read(self, make: PlanFactory[T | Refused]) -> T:
        async with self._lock:
            outcome = await self._drive(make())
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome
