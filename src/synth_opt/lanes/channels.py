"""Bounded channels and worker pools: the clone-and-close discipline, written once.

Every channel is a bounded anyio memory object stream. A worker pool clones the inbox and outbox once per worker
and closes the originals, so the outbox closes by itself when the last worker finishes and the stage downstream
drains without sentinel messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["Channel", "LaneStats", "open_channel", "start_worker_pool"]

T = TypeVar("T")
In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(slots=True)
class Channel(Generic[T]):
    send: MemoryObjectSendStream[T]
    receive: MemoryObjectReceiveStream[T]
    capacity: int


def open_channel(capacity: int) -> Channel[T]:
    if capacity < 1:
        raise ValueError("channels are bounded: capacity must be at least 1")
    send, receive = anyio.create_memory_object_stream[T](capacity)
    return Channel(send, receive, capacity)


@dataclass(slots=True)
class LaneStats:
    """Live counters of one lane, read by the progress display."""

    name: str
    workers: int
    busy: int = 0
    done: int = 0
    inbox: MemoryObjectReceiveStream[Any] | None = None

    @property
    def queued(self) -> int:
        """Items waiting in the lane's inbox (its bounded stream's buffer)."""
        return 0 if self.inbox is None else self.inbox.statistics().current_buffer_used


async def start_worker_pool(
    tg: TaskGroup,
    *,
    stats: LaneStats,
    inbox: MemoryObjectReceiveStream[In],
    outbox: MemoryObjectSendStream[Out],
    handle: Callable[[In], Awaitable[Out | None]],
) -> None:
    """Start ``stats.workers`` workers that turn each inbox item into at most one outbox item (None sends
    nothing); returns once all are running."""
    for index in range(stats.workers):
        await tg.start(_worker, stats, index, inbox.clone(), outbox.clone(), handle)
    stats.inbox = inbox  # closed below; its statistics still describe the shared buffer
    inbox.close()
    outbox.close()


async def _worker(
    stats: LaneStats,
    index: int,
    inbox: MemoryObjectReceiveStream[In],
    outbox: MemoryObjectSendStream[Out],
    handle: Callable[[In], Awaitable[Out | None]],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    async with inbox, outbox:
        task_status.started()
        async for item in inbox:
            stats.busy += 1
            try:
                result = await handle(item)
            finally:
                stats.busy -= 1
            stats.done += 1
            if result is not None:
                await outbox.send(result)
