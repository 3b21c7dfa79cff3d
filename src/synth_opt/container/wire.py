"""Wire records of the container contract (SPEC §4), already validated.

The client turns raw JSON into these; everything past the container boundary sees only these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from synth_opt.usage import Usage

__all__ = [
    "ProgramInfo",
    "ProgramModule",
    "RolloutReply",
    "RolloutRequest",
    "TasksetInfo",
]

GEPA_CONTRACT_VERSION = "synth_optimizers.gepa.v2"


@dataclass(frozen=True, slots=True)
class ProgramModule:
    module_id: str
    role: str
    content: str
    mutable: bool
    candidate_field: str


@dataclass(frozen=True, slots=True)
class ProgramInfo:
    program_id: str
    modules: tuple[ProgramModule, ...]
    target_modules: tuple[str, ...]
    seed_candidate: dict[str, str]


@dataclass(frozen=True, slots=True)
class TasksetInfo:
    """``GET /taskset``: ``task_ids`` per split where the container lists them, else ``counts``."""

    task_ids: dict[str, tuple[str, ...]]
    counts: dict[str, int]
    labels: tuple[str, ...]
    metadata: dict[str, Any]

    def first_ids(self, split: str, count: int) -> list[str]:
        if split in self.task_ids:
            return list(self.task_ids[split][:count])
        return [str(i) for i in range(min(count, self.counts.get(split, count)))]


@dataclass(frozen=True, slots=True)
class RolloutRequest:
    rollout_id: str
    submission_mode: str
    task_id: str
    candidate_id: str
    candidate: dict[str, str]
    policy: dict[str, Any]
    task: dict[str, Any]
    metadata: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id,
            "submission_mode": self.submission_mode,
            "task_id": self.task_id,
            "candidate_id": self.candidate_id,
            "candidate": self.candidate,
            "policy": self.policy,
            "task": self.task,
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True)
class RolloutReply:
    """A validated, terminal rollout reply.

    ``reward`` comes from ``reward_info.outcome_reward``, else ``reward_info.score``, else a top-level ``reward``.
    ``objectives`` holds per-objective scores when the container reports them. ``trace`` is what the policy saw
    and did; ``feedback`` is any text the container wrote for the proposer; ``cut`` names what the optimizer kept
    only the start of (see :mod:`synth_opt.container.kept`).
    """

    rollout_id: str
    status: str
    reward: float
    objectives: dict[str, float] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    trace: Any = None
    feedback: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # the fields the run kept only the start of (``feedback``, ``output`` for the trace; synth_opt.container.kept):
    # their whole length in characters and sha256 (the trace as sorted JSON); what was kept is ``feedback`` and
    # ``trace`` (then a text), and ``whole_trace_digest`` the whole trace's digest
    cut: dict[str, dict[str, Any]] = field(default_factory=dict)
    whole_trace_digest: str | None = None
