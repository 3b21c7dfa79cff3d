"""The queue protocols: what the service and its workers need from a queue backend.

Two backends implement them, passing one contract suite (``tests/unit/test_queue_contract.py``):
:class:`~synth_opt.service.queue.sqlite.SqliteRunQueue` (one host's file) and
:class:`~synth_opt.service.queue.postgres.PostgresRunQueue` (workers on many hosts; claims with
``FOR UPDATE SKIP LOCKED``, wake-ups by ``LISTEN``/``NOTIFY``).

:class:`RunQueue` is synchronous, each method one short transaction: the ``workspace_*`` functions and scripts use
it, and it opens (creates, migrates) the store. :class:`AsyncRunQueue` (``RunQueue.open_async()``) is the same queue
for async code, the service's HTTP handlers and its workers (``gepa run-next`` too): for SQLite it runs on
aiosqlite, for PostgreSQL on psycopg's async connection, so nothing blocks the event loop or hops threads by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from synth_opt.service.queue.records import Recovery, RequestStatus, RunRequest, Submission

__all__ = ["AsyncRunQueue", "RunQueue"]


@runtime_checkable
class RunQueue(Protocol):
    """What the service and its workers need from a queue backend (SQLite or PostgreSQL). Methods return typed
    records (:class:`RunRequest` and friends);
    ``tests/unit/test_queue_contract.py`` is the suite each backend must pass (its async twin included)."""

    lease_seconds: float

    def __enter__(self) -> RunQueue: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None: ...

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
        container_urls: Sequence[str] = (),
    ) -> Submission: ...

    def claim(self, worker_id: str, *, lease_seconds: float | None = None) -> RunRequest | None: ...

    def start(self, request_id: str, lease_token: str | None = None) -> RunRequest: ...

    def heartbeat(self, request_id: str, lease_token: str) -> RunRequest: ...

    def complete(
        self,
        request_id: str,
        *,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        lease_token: str | None = None,
    ) -> RunRequest: ...

    def release(self, request_id: str, lease_token: str, *, reason: str) -> RunRequest: ...

    def recover(self) -> Recovery: ...

    def cancel(self, request_id: str, *, reason: str = "cancelled by the caller") -> RunRequest: ...

    def get(self, request_id: str) -> RunRequest: ...

    def list_requests(self, *, status: RequestStatus | str | None = None, limit: int = 100) -> list[RunRequest]: ...

    def status(self) -> dict[str, Any]: ...

    def append_events(
        self, request_id: str, lease_token: str, attempt: int, first_line: int, lines: list[str]
    ) -> None: ...

    def events(self, request_id: str, attempt: int, *, after: int = -1, limit: int = 1000) -> list[tuple[int, str]]: ...

    def open_async(self) -> AsyncRunQueue:
        """The same store for async callers, opened by them: ``async with queue.open_async() as aq``."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncRunQueue(Protocol):
    """:class:`RunQueue`'s operations as coroutines, for the HTTP handlers: an async context manager that opens its
    own connection on entry and closes it on exit."""

    lease_seconds: float

    async def __aenter__(self) -> AsyncRunQueue: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def submit(
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
        container_urls: Sequence[str] = (),
    ) -> Submission: ...

    async def claim(self, worker_id: str, *, lease_seconds: float | None = None) -> RunRequest | None: ...

    async def start(self, request_id: str, lease_token: str | None = None) -> RunRequest: ...

    async def heartbeat(self, request_id: str, lease_token: str) -> RunRequest: ...

    async def complete(
        self,
        request_id: str,
        *,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        lease_token: str | None = None,
    ) -> RunRequest: ...

    async def release(self, request_id: str, lease_token: str, *, reason: str) -> RunRequest: ...

    async def recover(self) -> Recovery: ...

    async def cancel(self, request_id: str, *, reason: str = "cancelled by the caller") -> RunRequest: ...

    async def get(self, request_id: str) -> RunRequest: ...

    async def list_requests(
        self, *, status: RequestStatus | str | None = None, limit: int = 100
    ) -> list[RunRequest]: ...

    async def status(self) -> dict[str, Any]: ...

    async def append_events(
        self, request_id: str, lease_token: str, attempt: int, first_line: int, lines: list[str]
    ) -> None: ...

    async def events(
        self, request_id: str, attempt: int, *, after: int = -1, limit: int = 1000
    ) -> list[tuple[int, str]]: ...

    async def wait_for_work(self, seconds: float) -> None:
        """Return when a request may have become claimable (PostgreSQL: a ``NOTIFY``), or after ``seconds``."""
        ...
