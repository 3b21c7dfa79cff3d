"""The queue's public methods, written once per calling style for every backend.

:class:`SyncQueueSurface` (the :class:`~synth_opt.service.queue.protocol.RunQueue` methods) and
:class:`AsyncQueueSurface` (:class:`~synth_opt.service.queue.protocol.AsyncRunQueue`'s) turn each call into its
plan (:mod:`~synth_opt.service.queue.plans`) and hand a *factory* of it to the driver's ``_write`` or ``_read``: a
driver that loses its connection mid-operation (a PostgreSQL restart) reconnects and runs the operation again from
a new plan. ``wakes``: the write can make a request claimable (a submission, a release, a recovery, a finished run
freeing its container URL), so a backend whose workers wait for a signal (PostgreSQL's ``NOTIFY``) sends one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import anyio

from synth_opt.service.queue.plans import Plan, QueuePlans, Refused, new_request_id
from synth_opt.service.queue.records import Recovery, RequestStatus, RunRequest, Submission

__all__ = ["AsyncQueueSurface", "PlanFactory", "SyncQueueSurface"]

T = TypeVar("T")
PlanFactory = Callable[[], Plan[T]]


class SyncQueueSurface(QueuePlans):
    """Every :class:`RunQueue` method, run by the driver's ``_write`` (one transaction) and ``_read``."""

    def _write(self, make: PlanFactory[T | Refused], *, wakes: bool = False) -> T:
        raise NotImplementedError

    def _read(self, make: PlanFactory[T | Refused]) -> T:
        raise NotImplementedError

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
    ) -> Submission:
        """Queue a request; with a known idempotency key, return that request (``deduplicated``) instead.
        ``fresh``: its first attempt starts the run directory over instead of resuming or returning what it holds."""
        plan = partial(
            self._submit_plan,
            run_id=run_id,
            config_path=config_path,
            run_dir=run_dir,
            container_url=container_url,
            cache_namespace=cache_namespace,
            priority=priority,
            idempotency_key=idempotency_key,
            fresh=fresh,
            container_urls=tuple(container_urls),
            request_id=new_request_id(),
        )
        return self._write(plan, wakes=True)

    def claim(self, worker_id: str, *, lease_seconds: float | None = None) -> RunRequest | None:
        """Lease the next claimable request to ``worker_id`` (highest priority, then oldest), or None."""
        built = self._write(partial(self._claim_plan, worker_id, lease_seconds, uuid.uuid4().hex))
        return None if built is None else built.value()

    def start(self, request_id: str, lease_token: str | None = None) -> RunRequest:
        return self._write(partial(self._start_plan, request_id, lease_token)).value()

    def heartbeat(self, request_id: str, lease_token: str) -> RunRequest:
        """Extend the lease by its length from now; the returned request says whether a cancel was requested."""
        return self._write(partial(self._heartbeat_plan, request_id, lease_token)).value()

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
        plan = partial(self._complete_plan, request_id, result, error, lease_token)
        return self._write(plan, wakes=True).value()

    def release(self, request_id: str, lease_token: str, *, reason: str) -> RunRequest:
        """Give a lease back (a worker shutting down): the request is queued again, or cancelled if that was asked."""
        return self._write(partial(self._release_plan, request_id, lease_token, reason), wakes=True).value()

    def recover(self) -> Recovery:
        """Requeue every leased or running request whose lease has expired (or cancel it, if a cancel was asked),
        and refresh the queue's freshness and invariant rows."""
        return self._write(self._recover_plan, wakes=True)

    def cancel(self, request_id: str, *, reason: str = "cancelled by the caller") -> RunRequest:
        """Cancel a queued request at once; ask a leased or running one to stop (its worker polls
        ``cancel_requested``). A terminal request is returned unchanged."""
        return self._write(partial(self._cancel_plan, request_id, reason))

    def get(self, request_id: str) -> RunRequest:
        return self._read(partial(self._get_plan, request_id))

    def list_requests(self, *, status: RequestStatus | str | None = None, limit: int = 100) -> list[RunRequest]:
        """Requests, newest first, optionally of one status."""
        return self._read(partial(self._list_plan, status, limit))

    def status(self) -> dict[str, Any]:
        """Status counts of the queue's tables (``workspace_status``'s keys for a service database)."""
        return self._read(self._status_plan)

    def append_events(self, request_id: str, lease_token: str, attempt: int, first_line: int, lines: list[str]) -> None:
        """Append an attempt's event feed lines (numbered from ``first_line``), fenced by the lease token."""
        self._write(partial(self._append_events_plan, request_id, lease_token, attempt, first_line, lines))

    def events(self, request_id: str, attempt: int, *, after: int = -1, limit: int = 1000) -> list[tuple[int, str]]:
        """An attempt's event feed lines numbered above ``after``: ``(line_no, line)`` in order."""
        return self._read(partial(self._events_plan, request_id, attempt, after, limit))


class AsyncQueueSurface(QueuePlans):
    """Every :class:`AsyncRunQueue` method, run by the driver's ``_write`` and ``_read`` coroutines."""

    async def _write(self, make: PlanFactory[T | Refused], *, wakes: bool = False) -> T:
        raise NotImplementedError

    async def _read(self, make: PlanFactory[T | Refused]) -> T:
        raise NotImplementedError

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
    ) -> Submission:
        plan = partial(
            self._submit_plan,
            run_id=run_id,
            config_path=config_path,
            run_dir=run_dir,
            container_url=container_url,
            cache_namespace=cache_namespace,
            priority=priority,
            idempotency_key=idempotency_key,
            fresh=fresh,
            container_urls=tuple(container_urls),
            request_id=new_request_id(),
        )
        return await self._write(plan, wakes=True)

    async def claim(self, worker_id: str, *, lease_seconds: float | None = None) -> RunRequest | None:
        built = await self._write(partial(self._claim_plan, worker_id, lease_seconds, uuid.uuid4().hex))
        return None if built is None else built.value()

    async def start(self, request_id: str, lease_token: str | None = None) -> RunRequest:
        return (await self._write(partial(self._start_plan, request_id, lease_token))).value()

    async def heartbeat(self, request_id: str, lease_token: str) -> RunRequest:
        return (await self._write(partial(self._heartbeat_plan, request_id, lease_token))).value()

    async def complete(
        self,
        request_id: str,
        *,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        lease_token: str | None = None,
    ) -> RunRequest:
        plan = partial(self._complete_plan, request_id, result, error, lease_token)
        return (await self._write(plan, wakes=True)).value()

    async def release(self, request_id: str, lease_token: str, *, reason: str) -> RunRequest:
        return (await self._write(partial(self._release_plan, request_id, lease_token, reason), wakes=True)).value()

    async def recover(self) -> Recovery:
        return await self._write(self._recover_plan, wakes=True)

    async def cancel(self, request_id: str, *, reason: str = "cancelled by the caller") -> RunRequest:
        return await self._write(partial(self._cancel_plan, request_id, reason))

    async def get(self, request_id: str) -> RunRequest:
        return await self._read(partial(self._get_plan, request_id))

    async def list_requests(self, *, status: RequestStatus | str | None = None, limit: int = 100) -> list[RunRequest]:
        return await self._read(partial(self._list_plan, status, limit))

    async def status(self) -> dict[str, Any]:
        return await self._read(self._status_plan)

    async def append_events(
        self, request_id: str, lease_token: str, attempt: int, first_line: int, lines: list[str]
    ) -> None:
        await self._write(partial(self._append_events_plan, request_id, lease_token, attempt, first_line, lines))

    async def events(
        self, request_id: str, attempt: int, *, after: int = -1, limit: int = 1000
    ) -> list[tuple[int, str]]:
        return await self._read(partial(self._events_plan, request_id, attempt, after, limit))

    async def wait_for_work(self, seconds: float) -> None:
        """Return when a request may have become claimable, or after ``seconds`` (polling, the fallback; a backend
        with notifications returns sooner)."""
        await anyio.sleep(seconds)
