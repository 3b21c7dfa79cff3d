"""Candidates: content-addressed payloads and the record the pool keeps for each."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CandidateRecord", "candidate_id", "mean_score"]


def candidate_id(payload: dict[str, str]) -> str:
    """A content address: equal payloads get equal ids, so duplicate proposals collapse."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "cand-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def mean_score(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores) if scores else 0.0


@dataclass(slots=True)
class CandidateRecord:
    """A candidate in the pool: its payload, lineage and its scores on the pareto rows.

    ``objective_scores`` maps row id to per-objective scores when the container reports them.
    """

    candidate_id: str
    payload: dict[str, str]
    parent_ids: tuple[str, ...]
    pool_index: int
    module_changed: str | None
    proposal_index: int | None
    scores: dict[str, float] = field(default_factory=dict)
    objective_scores: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return mean_score(self.scores)

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate_id": self.candidate_id,
            "payload": self.payload,
            "parent_ids": list(self.parent_ids),
            "pool_index": self.pool_index,
            "module_changed": self.module_changed,
            "proposal_index": self.proposal_index,
            "scores": self.scores,
            "objective_scores": self.objective_scores,
            "mean_score": self.mean,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CandidateRecord:
        return cls(
            candidate_id=data["candidate_id"],
            payload=dict(data["payload"]),
            parent_ids=tuple(data["parent_ids"]),
            pool_index=int(data["pool_index"]),
            module_changed=data.get("module_changed"),
            proposal_index=data.get("proposal_index"),
            scores={k: float(v) for k, v in data["scores"].items()},
            objective_scores={k: dict(v) for k, v in data.get("objective_scores", {}).items()},
        )
