"""The small typed records that travel between the supervisor and the lanes.

Per-item failures travel inside these records as values; only bugs escape a task group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synth_opt.container.wire import RolloutReply
from synth_opt.errors import SynthOptimizerError
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest

__all__ = ["BatchDone", "ProposeDone", "ProposeJob", "RolloutDone", "RolloutJob", "SupervisorMessage"]


@dataclass(frozen=True, slots=True)
class RolloutJob:
    """One candidate on one row. ``batch_id``/``batch_size``/``position`` let the evaluator regroup a batch."""

    batch_id: int
    batch_size: int
    position: int
    rollout_id: str
    stage: str
    candidate_id: str
    candidate: dict[str, str]
    task_id: str
    task: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RolloutDone:
    """A finished rollout; ``reused``: not made, an evaluation committed earlier in the run stands for it."""

    job: RolloutJob
    reply: RolloutReply | None
    error: str | None
    duration_seconds: float
    reused: bool = False

    @property
    def reward(self) -> float:
        return self.reply.reward if self.reply is not None else 0.0


@dataclass(frozen=True, slots=True)
class BatchDone:
    """Every rollout of one batch, in the batch's row order."""

    batch_id: int
    results: tuple[RolloutDone, ...]

    @property
    def scores(self) -> dict[str, float]:
        return {done.job.task_id: done.reward for done in self.results}

    @property
    def objective_scores(self) -> dict[str, dict[str, float]]:
        return {
            done.job.task_id: dict(done.reply.objectives)
            for done in self.results
            if done.reply is not None and done.reply.objectives
        }

    @property
    def degraded(self) -> int:
        return sum(1 for done in self.results if done.reply is None)

    @property
    def live(self) -> int:
        """The rollouts the container served for this batch (the rest were reused)."""
        return sum(1 for done in self.results if not done.reused)

    @property
    def reused(self) -> int:
        return sum(1 for done in self.results if done.reused)


@dataclass(frozen=True, slots=True)
class ProposeJob:
    proposal_index: int
    request: ReflectionRequest
    attempt: int = 1  # 2: the proposal asked again, its first texts having repeated edits in flight


@dataclass(frozen=True, slots=True)
class ProposeDone:
    proposal_index: int
    result: ProposerResult | None
    error: SynthOptimizerError | None
    time_limit: bool = False  # the run's time limit passed while the proposer served nothing: no proposal made


SupervisorMessage = BatchDone | ProposeDone
