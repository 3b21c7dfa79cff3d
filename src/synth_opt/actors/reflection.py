"""What the proposer is shown about a parent: the reflection request built from the parent's minibatch, and the
frontier summary taken when the proposal is planned."""

from __future__ import annotations

from typing import Any

from synth_opt.actors.messages import BatchDone
from synth_opt.actors.records import Slot, SupervisorSettings
from synth_opt.gepa import GepaState, ProposalPlan
from synth_opt.proposers.reflection import ReflectionRequest, ReflectiveRecord

__all__ = ["frontier_summary", "reflection_request"]


def frontier_summary(state: GepaState, plan: ProposalPlan) -> dict[str, Any]:
    """The pool as the proposal sees it at plan time (kept with the slot, so a resume shows the same)."""
    return {
        "pool_size": len(state.pool),
        "pool_version": plan.pool_version,
        "best_mean_score": state.best().mean,
        "parent_mean_score": state.by_id[plan.parent_id].mean,
    }


def reflection_request(
    state: GepaState, settings: SupervisorSettings, slot: Slot, batch: BatchDone
) -> ReflectionRequest:
    parent = state.by_id[slot.plan.parent_id]
    records = tuple(
        ReflectiveRecord(
            task_id=done.job.task_id,
            task=done.job.task,
            output=None if done.reply is None else done.reply.trace,
            reward=done.reward,
            feedback=done.error if done.reply is None else done.reply.feedback,
        )
        for done in batch.results
    )
    return ReflectionRequest(
        candidate_id=parent.candidate_id,
        candidate=parent.payload,
        target_module=slot.plan.module,
        records=records,
        task_info=settings.task_info,
        frontier_summary=slot.frontier_summary,
        proposals=settings.proposals_per_call,
    )
