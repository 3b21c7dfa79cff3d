"""What the proposer is shown about a parent: the reflection request built from the parent's minibatch, and the
frontier summary taken when the proposal is planned."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from synth_opt.actors.messages import BatchDone
from synth_opt.actors.records import Slot, SupervisorSettings
from synth_opt.gepa import GepaState, ProposalPlan
from synth_opt.proposers.reflection import (
    DEFAULT_MAX_FEEDBACK_CHARS,
    ConcurrentEdit,
    ReflectionRequest,
    ReflectiveRecord,
    RejectedEdit,
    bound_records,
    fit_request,
)

__all__ = ["frontier_summary", "reflection_request", "without_container_address"]

_ADDRESS = re.compile(r"\bcontainer at \S+")


def frontier_summary(state: GepaState, plan: ProposalPlan) -> dict[str, Any]:
    """The pool as the proposal sees it at plan time (kept with the slot, so a resume shows the same)."""
    return {
        "pool_size": len(state.pool),
        "pool_version": plan.pool_version,
        "best_mean_score": state.best().mean,
        "parent_mean_score": state.by_id[plan.parent_id].mean,
    }


def reflection_request(
    state: GepaState,
    settings: SupervisorSettings,
    slot: Slot,
    batch: BatchDone,
    *,
    rejected: tuple[RejectedEdit, ...] = (),
    concurrent: tuple[ConcurrentEdit, ...] = (),
) -> ReflectionRequest:
    """The request for the slot's proposer call, bounded (``proposer.max_feedback_chars`` per row, the prompt to
    ``proposer.max_prompt_tokens``), so what the events, the cache key and the proposer see is the same bounded
    text and never depends on timing."""
    parent = state.by_id[slot.plan.parent_id]
    records = tuple(
        ReflectiveRecord(
            task_id=done.job.task_id,
            task=done.job.task,
            output=None if done.reply is None else done.reply.trace,
            reward=done.reward,
            feedback=without_container_address(done.error) if done.reply is None else done.reply.feedback,
            cut={} if done.reply is None else dict(done.reply.cut),
        )
        for done in batch.results
    )
    request = ReflectionRequest(
        candidate_id=parent.candidate_id,
        candidate=parent.payload,
        target_module=slot.plan.module,
        records=records,
        task_info=settings.task_info,
        frontier_summary=slot.frontier_summary,
        proposals=settings.proposals_per_call,
        template=settings.prompt_template,
        rejected_edits=rejected,
        concurrent_edits=concurrent,
    )
    max_feedback_chars = int(getattr(settings, "max_feedback_chars", DEFAULT_MAX_FEEDBACK_CHARS))
    max_prompt_tokens = getattr(settings, "max_prompt_tokens", None)
    if max_prompt_tokens is None:  # the proposer backend fits the prompt to its configured max_prompt_tokens
        return replace(request, records=bound_records(request.records, max_feedback_chars))
    return fit_request(request, max_feedback_chars=max_feedback_chars, max_prompt_tokens=int(max_prompt_tokens))


def without_container_address(error: str | None) -> str | None:
    """A failed rollout's error as the proposer is shown it: without the container's address ("container at
    http://127.0.0.1:41234 (POST /rollout) sent ..." reads "container (POST /rollout) sent ..."). A launched
    container listens on another port each start, and the proposer's request (its texts, its cache key) must
    not change with it."""
    return None if error is None else _ADDRESS.sub("container", error)
