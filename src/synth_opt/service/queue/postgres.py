"""The run queue in PostgreSQL, for workers on many hosts: :class:`PostgresRunQueue` (synchronous) and
:class:`AsyncPostgresRunQueue` (the service's handlers and workers), both on psycopg 3.

psycopg 3 rather than asyncpg: one driver with a synchronous and an asynchronous connection of the same API (the
queue has both callers, as SQLite has sqlite3 and aiosqlite), server-side parameters, ``LISTEN``/``NOTIFY`` as an
async iterator, and binary wheels that need no libpq on the machine.

The operations are the shared plans (:mod:`~synth_opt.service.queue.plans`), their SQL translated once
(:func:`~synth_opt.service.queue.pg_schema.pg_sql`), with the same semantics as SQLite's:

- every write is one transaction that first takes a transaction-scoped advisory lock, so writes run one at a time
  as SQLite's ``BEGIN IMMEDIATE`` makes them (the container URL and cache namespace rule, the idempotency key and
  the one-live-request-per-run rule are checked and written with no other writer in between);
- a claim is still ONE statement, its row taken ``FOR UPDATE OF q SKIP LOCKED`` (with writes serialised it never
  meets a locked row today; it keeps the claim correct if writes other than claims ever run beside it);
- a write that can make a request claimable sends ``NOTIFY synth_opt_queue`` (delivered on commit): idle workers
  ``LISTEN`` and wake at once instead of waiting out their poll interval (:meth:`AsyncPostgresRunQueue.wait_for_work`;
  polling stays the fallback when the listening connection is down);
- a lost connection (a server restart, a network cut) is reconnected with backoff for up to ``reconnect_seconds``
  and the operation run again from a new plan. A write whose commit was sent but not acknowledged so runs twice,
  and the second run finds the first one's result: a submission and a claim carry ids chosen before the first try
  (the request id, the lease token) and return what they find under them; a fenced start or complete run again
  (``rerun``) returns the request in the state it left (a heartbeat is idempotent anyway). A release run again is
  refused (it clears the token it would be recognised by);
- every connection sets ``lock_timeout`` (a write does not wait on a stalled client's lock for ever: it fails with
  :class:`~synth_opt.service.errors.QueueUnavailableError`), ``idle_in_transaction_session_timeout`` (a client that
  stalls inside a transaction loses its session and so the lock) and TCP keepalives.

Times come from the queue's injected clock, as with SQLite, not the server's ``now()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import aclosing
from types import TracebackType
from typing import Any, TypeVar

import anyio

from synth_opt.errors import ConfigError
from synth_opt.redact import redact_text, redact_url
from synth_opt.service.errors import QueueUnavailableError
from synth_opt.service.queue.pg_schema import WRITE_LOCK, migrate_pg, pg_sql
from synth_opt.service.queue.plans import Plan, Refused
from synth_opt.service.queue.surface import AsyncQueueSurface, PlanFactory, SyncQueueSurface

__all__ = ["CHANNEL", "AsyncPostgresRunQueue", "PostgresRunQueue", "is_postgres_url"]

T = TypeVar("T")
CHANNEL = "synth_opt_queue"
CONNECT_TIMEOUT_SECONDS = 5
RECONNECT_SECONDS = 30.0
LOCK_TIMEOUT_MS = 15_000
"""How long a write waits for the queue's write lock (another client's write) before it is refused."""
IDLE_IN_TRANSACTION_MS = 30_000
"""A client that stalls inside a transaction (paused, cut off) loses its session, and so the write lock, after this."""
_SESSION = {
    "options": f"-c lock_timeout={LOCK_TIMEOUT_MS} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}",
    # a peer that vanished is noticed in seconds, not at the kernel's default two hours
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
CLAIM_LOCK = " FOR UPDATE OF q SKIP LOCKED"
SCHEMES = ("postgresql", "postgres")


def is_postgres_url(location: str) -> bool:
    return location.partition("://")[0] in SCHEMES and "://" in location


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the extra is part of the dev install
        raise ConfigError(
            "a postgresql:// queue needs psycopg 3: pip install 'synth-optimizers[postgres]'", field="db"
        ) from None
    return psycopg


class PgRow(dict[str, Any]):
    """A row readable by column name and by position, as ``sqlite3.Row`` is (the plans use both)."""

    __slots__ = ("_cells",)

    def __init__(self, names: Sequence[str], cells: Sequence[Any]) -> None:
        super().__init__(zip(names, cells, strict=True))
        self._cells = tuple(cells)

    def __getitem__(self, key: Any) -> Any:
        return self._cells[key] if isinstance(key, int) else super().__getitem__(key)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    names = [column.name for column in cursor.description or ()]
    return lambda cells: PgRow(names, cells)


def _unavailable(url: str, error: BaseException) -> QueueUnavailableError:
    shown = redact_url(url)
    reason = redact_text(str(error).strip()) or type(error).__name__
    if "lock timeout" in reason:
        return QueueUnavailableError(
            f"the queue database {shown} is busy: a write waited {LOCK_TIMEOUT_MS / 1000:g} s for the queue's write "
            "lock (another client's transaction stalled); try again",
            url=shown,
        )
    return QueueUnavailableError(
        f"the queue database {shown} is unreachable ({reason}); check that PostgreSQL is running and the URL is right",
        url=shown,
    )


def _bad_url(url: str, error: BaseException) -> ConfigError:
    shown = redact_url(url)
    return ConfigError(
        f"queue URL {shown!r} is not a usable PostgreSQL URL ({redact_text(str(error).strip())}); write it as "
        "postgresql://user@host:port/database",
        field="db",
        url=shown,
    )


class PostgresRunQueue(SyncQueueSurface):
    """The queue in one PostgreSQL database. One instance holds one connection (a lock serialises its use across
    threads); any number of instances in any number of processes and hosts may open the same database."""

    claim_lock = CLAIM_LOCK

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        lease_seconds: float,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ) -> None:
        if not lease_seconds > 0:
            raise ConfigError(f"lease_seconds must be positive (got {lease_seconds})", lease_seconds=lease_seconds)
        self.url = url
        self.clock = clock
        self.lease_seconds = float(lease_seconds)
        self.reconnect_seconds = reconnect_seconds
        self._psycopg = _psycopg()
        self._lock = threading.Lock()
        self._conn = self._connect()
        try:
            migrate_pg(self._conn)
        except BaseException:
            self._conn.close()
            raise

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(
                self.url, autocommit=True, row_factory=_row_factory, connect_timeout=CONNECT_TIMEOUT_SECONDS, **_SESSION
            )
        except self._psycopg.OperationalError as error:
            raise _unavailable(self.url, error) from None
        except self._psycopg.ProgrammingError as error:  # a malformed URL: psycopg's message quotes it whole
            raise _bad_url(self.url, error) from None

    def __enter__(self) -> PostgresRunQueue:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def open_async(self) -> AsyncPostgresRunQueue:
        return AsyncPostgresRunQueue(
            self.url, clock=self.clock, lease_seconds=self.lease_seconds, reconnect_seconds=self.reconnect_seconds
        )

    def _drive(self, plan: Plan[T]) -> T:
        try:
            sql, params = next(plan)
            while True:
                cursor = self._conn.execute(pg_sql(sql), params)
                sql, params = plan.send(cursor.fetchall() if cursor.description else [])
        except StopIteration as done:
            value: T = done.value
            return value

    def _reconnect(self) -> None:
        deadline, pause = time.monotonic() + self.reconnect_seconds, 0.1
        self._conn.close()
        while True:
            try:
                self._conn = self._connect()
                return
            except QueueUnavailableError:
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _run(self, operation: Callable[[], T]) -> T:
        """``operation`` on the connection; once more on a new connection when the old one was lost."""
        with self._lock:
            try:
                return operation()
            except self._psycopg.OperationalError as error:
                if not self._conn.closed and not self._conn.broken:
                    raise _unavailable(self.url, error) from None  # a lock or statement timeout
                try:
                    self._reconnect()
                except QueueUnavailableError:
                    raise _unavailable(self.url, error) from None
            self.rerun = True
            try:
                return operation()
            except self._psycopg.OperationalError as error:
                raise _unavailable(self.url, error) from None
            finally:
                self.rerun = False

    def _write(self, make: PlanFactory[T | Refused], *, wakes: bool = False) -> T:
        def transaction() -> T | Refused:
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                outcome = self._drive(make())
                if wakes:
                    self._conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            return outcome

        outcome = self._run(transaction)
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome

    def _read(self, make: PlanFactory[T | Refused]) -> T:
        outcome = self._run(lambda: self._drive(make()))
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome


class AsyncPostgresRunQueue(AsyncQueueSurface):
    """``async with AsyncPostgresRunQueue(url, lease_seconds=...) as queue``: one connection for the operations and
    one that listens for :data:`CHANNEL` (opened on the first :meth:`wait_for_work`). The database must be
    migrated already (:class:`PostgresRunQueue` does it when opened)."""

    claim_lock = CLAIM_LOCK

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        lease_seconds: float,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ) -> None:
        self.url = url
        self.clock = clock
        self.lease_seconds = float(lease_seconds)
        self.reconnect_seconds = reconnect_seconds
        self._psycopg = _psycopg()
        self._conn: Any = None
        self._listener: Any = None
        self._lock = anyio.Lock()

    async def _connect(self) -> Any:
        try:
            return await self._psycopg.AsyncConnection.connect(
                self.url, autocommit=True, row_factory=_row_factory, connect_timeout=CONNECT_TIMEOUT_SECONDS, **_SESSION
            )
        except self._psycopg.OperationalError as error:
            raise _unavailable(self.url, error) from None
        except self._psycopg.ProgrammingError as error:
            raise _bad_url(self.url, error) from None

    async def __aenter__(self) -> AsyncPostgresRunQueue:
        self._conn = await self._connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            for conn in (self._conn, self._listener):
                if conn is not None:
                    await conn.close()
        self._conn = self._listener = None

    @property
    def conn(self) -> Any:
        if self._conn is None:
            raise RuntimeError("the async queue is not open; use it as 'async with queue.open_async() as queue'")
        return self._conn

    async def _drive(self, plan: Plan[T]) -> T:
        try:
            sql, params = next(plan)
            while True:
                cursor = await self.conn.execute(pg_sql(sql), params)
                sql, params = plan.send(await cursor.fetchall() if cursor.description else [])
        except StopIteration as done:
            value: T = done.value
            return value

    async def _reconnect(self) -> None:
        deadline, pause = time.monotonic() + self.reconnect_seconds, 0.1
        await self.conn.close()
        while True:
            try:
                self._conn = await self._connect()
                return
            except QueueUnavailableError:
                if time.monotonic() + pause > deadline:
                    raise
                await anyio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def _run(self, operation: Callable[[], Any]) -> Any:
        """Await ``operation()`` on the connection (shielded: a cancelled caller must not leave a transaction half
        done on the shared connection); once more on a new connection when the old one was lost."""
        async with self._lock:
            with anyio.CancelScope(shield=True):
                try:
                    return await operation()
                except self._psycopg.OperationalError as error:
                    if not self.conn.closed and not self.conn.broken:
                        raise _unavailable(self.url, error) from None  # a lock or statement timeout
                    try:
                        await self._reconnect()
                    except QueueUnavailableError:
                        raise _unavailable(self.url, error) from None
                self.rerun = True
                try:
                    return await operation()
                except self._psycopg.OperationalError as error:
                    raise _unavailable(self.url, error) from None
                finally:
                    self.rerun = False

    async def _write(self, make: PlanFactory[T | Refused], *, wakes: bool = False) -> T:
        async def transaction() -> T | Refused:
            async with self.conn.transaction():
                await self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                outcome = await self._drive(make())
                if wakes:
                    await self.conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            return outcome

        outcome = await self._run(transaction)
        if isinstance(outcome, Refused):
            raise outcome.error
        result: T = outcome
        return result

    async def _read(self, make: PlanFactory[T | Refused]) -> T:
        async def read() -> T | Refused:
            return await self._drive(make())

        outcome = await self._run(read)
        if isinstance(outcome, Refused):
            raise outcome.error
        result: T = outcome
        return result

    async def wait_for_work(self, seconds: float) -> None:
        """Return on the next ``NOTIFY`` (a submission, a release, a recovery, a finished run) or after ``seconds``.
        Without a listening connection (the server is down) this is the poll interval's sleep."""
        try:
            if self._listener is None or self._listener.closed or self._listener.broken:
                with anyio.CancelScope(shield=True):  # a listener is kept only once it listens
                    if self._listener is not None:
                        await self._listener.close()
                    self._listener = None
                    listener = await self._connect()
                    try:
                        await listener.execute(f"LISTEN {CHANNEL}")
                    except BaseException:
                        await listener.close()
                        raise
                    self._listener = listener
            # closed even when the caller is cancelled: the generator holds the connection's lock until it ends
            async with aclosing(self._listener.notifies(timeout=seconds, stop_after=1)) as notifies:
                async for _ in notifies:
                    pass
        except (QueueUnavailableError, self._psycopg.OperationalError):
            await anyio.sleep(seconds)
