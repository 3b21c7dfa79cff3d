"""The queue protocol: what the service and its workers need from a queue backend.

:class:`~synth_opt.service.queue.SqliteRunQueue` is the implementation today; a PostgreSQL one (claims with
``FOR UPDATE SKIP LOCKED``) would be a second class passing the same contract suite
(``tests/unit/test_queue_contract.py``).

The protocol is synchronous: each method is one short transaction, and a worker's writes (claim, start, heartbeat,
complete, release) are few, so async callers (the service's worker, its write routes) run them in a worker thread
(``anyio.to_thread``) rather than on the event loop. What the HTTP handlers read often (one request, the request
list, polled by the live event stream) goes through :class:`RunQueueReader`, which is async (aiosqlite for SQLite)
and never blocks the loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from synth_opt.service.queue.records import Recovery, RequestStatus, RunRequest, Submission

__all__ = ["RunQueue", "RunQueueReader"]


@runtime_checkable
class RunQueue(Protocol):
    """What the service and its workers need from a queue backend (SQLite today; PostgreSQL could follow with
    ``FOR UPDATE SKIP LOCKED``). Methods return typed records (:class:`RunRequest` and friends);
    ``tests/unit/test_queue_contract.py`` is the suite each backend must pass."""

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

    def reader(self) -> RunQueueReader:
        """An async reader of the same store (opened by the caller: ``async with queue.reader() as reader``)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class RunQueueReader(Protocol):
    """Async, read-only access to the queue, for the HTTP handlers: an async context manager that opens its own
    connection on entry and closes it on exit."""

    async def __aenter__(self) -> RunQueueReader: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def get(self, request_id: str) -> RunRequest: ...

    async def list_requests(
        self, *, status: RequestStatus | str | None = None, limit: int = 100
    ) -> list[RunRequest]: ...
