"""Assembles the actor graph: bounded lanes, worker pools and the supervisor in one task group.

::

    supervisor --RolloutJob--> [rollout lane] --RolloutDone--> [evaluate lane] --BatchDone--+
        ^                                                                                 |
        +------------------------------ ProposeDone <-- [propose lane] <--ProposeJob--    |
        +---------------------------------------------------------------------------------+

``sync_serial`` and ``async_pipelined`` are presets of this one graph (:mod:`synth_opt.lanes.presets`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from synth_opt.actors import (
    BatchDone,
    ProposeDone,
    ProposeJob,
    RolloutDone,
    RolloutJob,
    SearchOutcome,
    Supervisor,
    batch_collector,
)
from synth_opt.errors import collapse_exception_group
from synth_opt.lanes import Channel, LanePlan, LaneStats, open_channel, start_worker_pool

__all__ = ["PipelineStats", "run_pipeline"]


@dataclass(slots=True)
class PipelineStats:
    """Live lane counters for observers (the progress display)."""

    lanes: dict[str, LaneStats] = field(default_factory=dict)


async def run_pipeline(
    *,
    plan: LanePlan,
    supervisor: Supervisor,
    rollout: Callable[[RolloutJob], Awaitable[RolloutDone]],
    propose: Callable[[ProposeJob], Awaitable[ProposeDone]],
    stats: PipelineStats | None = None,
) -> SearchOutcome:
    stats = stats if stats is not None else PipelineStats()
    stats.lanes.update(
        rollout=LaneStats("rollout", plan.rollout_workers),
        evaluate=LaneStats("evaluate", plan.evaluate_workers),
        propose=LaneStats("propose", plan.propose_workers),
    )
    jobs: Channel[RolloutJob] = open_channel(plan.job_capacity)
    finished: Channel[RolloutDone] = open_channel(plan.job_capacity)
    proposals: Channel[ProposeJob] = open_channel(plan.max_in_flight + 1)
    results: Channel[BatchDone | ProposeDone] = open_channel(plan.result_capacity)
    reused = finished.send.clone()  # reused rows skip the rollout lane and join their batches in the evaluate lane
    outcome: SearchOutcome | None = None
    try:
        async with anyio.create_task_group() as tg:
            await start_worker_pool(
                tg, stats=stats.lanes["rollout"], inbox=jobs.receive, outbox=finished.send, handle=rollout
            )
            await start_worker_pool(
                tg,
                stats=stats.lanes["evaluate"],
                inbox=finished.receive,
                outbox=results.send.clone(),
                handle=batch_collector(),
            )
            await start_worker_pool(
                tg,
                stats=stats.lanes["propose"],
                inbox=proposals.receive,
                outbox=results.send.clone(),
                handle=propose,
            )
            results.send.close()
            outcome = await supervisor.run(results.receive, jobs.send, proposals.send, reused)
    except BaseExceptionGroup as group:
        raise collapse_exception_group(group) from None
    assert outcome is not None
    return outcome
