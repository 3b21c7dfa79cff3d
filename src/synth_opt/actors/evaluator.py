"""The evaluate actor: regroups finished rollouts into whole batches for the supervisor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from synth_opt.actors.messages import BatchDone, RolloutDone

__all__ = ["batch_collector"]


def batch_collector() -> Callable[[RolloutDone], Awaitable[BatchDone | None]]:
    """A handler that holds results until their batch is complete, then releases the batch in row order."""
    pending: dict[int, dict[int, RolloutDone]] = {}

    async def handle(done: RolloutDone) -> BatchDone | None:
        job = done.job
        results = pending.setdefault(job.batch_id, {})
        results[job.position] = done
        if len(results) < job.batch_size:
            return None
        del pending[job.batch_id]
        return BatchDone(job.batch_id, tuple(results[i] for i in range(job.batch_size)))

    return handle
