"""The supervisor's records: settings, the per-proposal slot and its children, counters, the search outcome.

Plain data; the supervisor (:mod:`synth_opt.actors.supervisor`) and the helpers it calls are the only code that
changes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from synth_opt.actors.messages import BatchDone
from synth_opt.gepa import Amount, CandidateRecord, Decision, ProposalPlan
from synth_opt.proposers.base import ProposerResult
from synth_opt.usage import Usage

__all__ = [
    "CHECKPOINT_VERSION",
    "READABLE_CHECKPOINT_VERSIONS",
    "Batch",
    "CheckpointSink",
    "Child",
    "Counters",
    "Rebase",
    "SearchOutcome",
    "Slot",
    "SupervisorSettings",
    "minus_usage",
    "rollout_id_for",
]


def rollout_id_for(run_id: str, candidate: str, stage: str, task_id: str) -> str:
    """Deterministic: a hash of run, candidate, stage and row."""
    digest = hashlib.sha256(f"{run_id}\x1f{candidate}\x1f{stage}\x1f{task_id}".encode()).hexdigest()
    return "ro-" + digest[:24]


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    run_id: str
    max_in_flight: int
    heldout_ids: tuple[str, ...]
    rows: dict[str, dict[str, Any]]
    task_info: str | None = None
    proposals_per_call: int = 1
    failure_tolerance: float = 0.25
    proposer_max_consecutive_failures: int = 3
    proposer_failure_tolerance: float = 0.5
    max_feedback_chars: int = 4000
    max_prompt_tokens: int | None = None
    prompt_template: str | None = None  # proposer.prompt_template's text; None: the built-in prompt
    proposal_memory: bool = False  # gepa.proposal_memory: rejected edits shown to the proposer, duplicates skipped
    proposal_memory_size: int = 5
    concurrent_edits: bool = False  # gepa.pipeline.concurrent_edits: a repeat of an edit in flight is asked again
    no_improvement_iterations: int | None = None
    score_threshold: float | None = None
    staleness_policy: str = "full"
    delta_max: int = 2
    skip_perfect_score: bool = False
    perfect_score: float = 1.0
    reuse_evaluations: bool = False
    max_commits_without_rollouts: int = 10


@dataclass(slots=True)
class Batch:
    kind: str
    candidate_id: str
    proposal_index: int | None = None
    child_index: int = 0


@dataclass(slots=True)
class Child:
    payload: dict[str, str]
    candidate_id: str
    batch: BatchDone | None = None

    @property
    def minibatch_sum(self) -> float:
        assert self.batch is not None
        return sum(self.batch.scores.values())


@dataclass(frozen=True, slots=True)
class Rebase:
    """An accepted child carried onto its rebase target before its pareto scoring (``staleness_policy =
    "rebase"``). ``outcome``: ``rebased`` (``payload`` is the child's edit merged onto the target: that is what
    joins the pool, as the target's child), ``contained`` (the merge is already in the pool: nothing to score) or
    ``conflict`` (the edits collide: the child is scored as proposed)."""

    target_id: str
    outcome: str
    payload: dict[str, str]
    candidate_id: str

    @property
    def applied(self) -> bool:
        return self.outcome == "rebased"


@dataclass(slots=True)
class Slot:
    plan: ProposalPlan
    reserved: Amount
    frontier_summary: dict[str, Any]
    parent_batch: BatchDone | None = None
    proposal: ProposerResult | None = None
    children: list[Child] = field(default_factory=list)
    chosen: Child | None = None
    staleness: int = 0
    decision: Decision | None = None
    needs_pareto: bool = False
    pareto_batch: BatchDone | None = None
    perfect: bool = False  # the parent scored perfectly on the minibatch and the proposer was not called
    held: bool = False  # (rebase) the accepted child's pareto scoring waits until it is next to commit
    rebase: Rebase | None = None
    failure: str | None = None  # the proposer served an unusable reply: a failed proposal (why, and its start)
    time_limit: bool = False  # the run's time limit passed while the proposer served nothing: no proposal made
    commits_at_plan: int = 0  # proposals committed when this one was planned: the evaluations it may reuse
    duplicates: int = 0  # texts not rolled out: already in the pool, rejected for this parent, or made in flight
    waiting: ProposerResult | None = None  # (concurrent_edits) the reply, until the edits in flight before it are known
    repeated: tuple[int, ...] = ()  # (concurrent_edits) the proposals in flight whose edits the first reply repeated
    first_usage: Usage | None = None  # (concurrent_edits) the first call's usage, when the proposer was asked again

    @property
    def pool_parent_ids(self) -> tuple[str, ...]:
        """The parents of what this proposal adds to the pool: the plan's, or the rebase target once rebased."""
        if self.rebase is not None and self.rebase.applied:
            return (self.rebase.target_id,)
        return self.plan.parent_ids

    @property
    def ready_to_decide(self) -> bool:
        proposed = self.proposal is not None or self.plan.merge is not None or self.perfect or self.time_limit
        return proposed and all(child.batch is not None for child in self.children)

    @property
    def unchanged(self) -> bool:
        """Every proposed text equals the parent's."""
        return self.proposal is not None and not self.children

    @property
    def ready_to_commit(self) -> bool:
        scored = not self.needs_pareto or self.pareto_batch is not None
        return self.decision is not None and not self.held and scored


@dataclass(slots=True)
class SearchOutcome:
    seed: CandidateRecord
    best: CandidateRecord
    stop_reason: str
    heldout_scores: dict[str, dict[str, float]]
    rollouts_train: int
    rollouts_heldout: int
    rollout_usage: Usage
    proposer_usage: Usage
    registry: dict[str, dict[str, Any]]
    proposals: int
    accepted: int
    proposals_failed: int = 0
    reused_train: int = 0
    reused_heldout: int = 0


@dataclass(slots=True)
class Counters:
    rollouts_train: int = 0  # served live (the budgets count these)
    rollouts_heldout: int = 0
    reused_train: int = 0  # taken from the run's earlier evaluations (gepa.reuse_evaluations)
    reused_heldout: int = 0
    degraded: int = 0
    last_error: str | None = None
    accepted: int = 0
    rejected: int = 0
    commits_since_improvement: int = 0
    commits_without_rollouts: int = 0  # in a row: proposals that rolled nothing out (all reused)
    proposer_calls: int = 0  # committed proposals that called the proposer
    proposer_failures: int = 0  # of those, the failed ones
    consecutive_proposer_failures: int = 0
    rollout_usage: Usage = field(default_factory=Usage)
    proposer_usage: Usage = field(default_factory=Usage)

    def to_json(self) -> dict[str, Any]:
        return {
            "rollouts_train": self.rollouts_train,
            "rollouts_heldout": self.rollouts_heldout,
            "reused_train": self.reused_train,
            "reused_heldout": self.reused_heldout,
            "degraded": self.degraded,
            "last_error": self.last_error,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "commits_since_improvement": self.commits_since_improvement,
            "commits_without_rollouts": self.commits_without_rollouts,
            "proposer_calls": self.proposer_calls,
            "proposer_failures": self.proposer_failures,
            "consecutive_proposer_failures": self.consecutive_proposer_failures,
            "rollout_usage": self.rollout_usage.to_dict(),
            "proposer_usage": self.proposer_usage.to_dict(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counters:
        return cls(
            **{k: v for k, v in data.items() if k not in ("rollout_usage", "proposer_usage")},
            rollout_usage=Usage.from_dict(data["rollout_usage"]),
            proposer_usage=Usage.from_dict(data["proposer_usage"]),
        )


class CheckpointSink(Protocol):
    """The supervisor offers a way to take a snapshot (None when the moment is not resumable); the sink decides
    whether and when to take it, so a snapshot that would be superseded before it is persisted costs nothing.
    ``now``: take it at once (a heldout evaluation's scores, the most a resume could redo)."""

    def __call__(self, take: Callable[[], dict[str, Any] | None], *, now: bool = False) -> None: ...


# 2: the staleness bookkeeping of proposals decided ahead of their commit is kept; 3: the heldout phase's progress
CHECKPOINT_VERSION = 3
READABLE_CHECKPOINT_VERSIONS = frozenset({2, 3})  # a version-2 checkpoint is always one of the search


def minus_usage(total: Usage, part: Usage) -> Usage:
    cost = None if total.cost_usd is None else round(total.cost_usd - (part.cost_usd or 0.0), 9)
    return Usage(
        calls=total.calls - part.calls,
        prompt_tokens=total.prompt_tokens - part.prompt_tokens,
        completion_tokens=total.completion_tokens - part.completion_tokens,
        total_tokens=total.total_tokens - part.total_tokens,
        cost_usd=cost,
    )
