"""Acceptance of a child against its parent on the shared minibatch."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACCEPTANCE_RULES", "Decision", "decide"]

ACCEPTANCE_RULES = ("strict_improvement", "improvement_or_equal")


@dataclass(frozen=True, slots=True)
class Decision:
    accepted: bool
    reason: str
    parent_sum: float
    child_sum: float


def decide(rule: str, parent_sum: float, child_sum: float) -> Decision:
    if rule == "strict_improvement":
        accepted = child_sum > parent_sum
        reason = "improved" if accepted else "not_improved"
    elif rule == "improvement_or_equal":
        accepted = child_sum >= parent_sum
        reason = ("improved" if child_sum > parent_sum else "equal") if accepted else "worse"
    else:
        raise ValueError(f"unknown acceptance rule {rule!r}; use one of {', '.join(ACCEPTANCE_RULES)}")
    return Decision(accepted, reason, parent_sum, child_sum)
