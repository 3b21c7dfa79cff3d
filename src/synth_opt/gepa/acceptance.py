"""Acceptance of a child against its parent on the shared minibatch: each rule a small class behind the
:class:`AcceptanceRule` protocol, registered by name in :data:`ACCEPTANCE_RULES` (the values ``gepa.acceptance``
accepts); :func:`register_acceptance_rule` adds one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from synth_opt.registry import Registry

__all__ = [
    "ACCEPTANCE_RULES",
    "AcceptanceRule",
    "Decision",
    "ImprovementOrEqual",
    "StrictImprovement",
    "decide",
    "get_acceptance_rule",
    "register_acceptance_rule",
]


@dataclass(frozen=True, slots=True)
class Decision:
    accepted: bool
    reason: str
    parent_sum: float
    child_sum: float


class AcceptanceRule(Protocol):
    """Whether a child that scored ``child_sum`` on the minibatch on which its parent scored ``parent_sum`` goes on
    to the pareto scoring (and so into the pool)."""

    @property
    def name(self) -> str: ...

    def judge(self, parent_sum: float, child_sum: float) -> Decision: ...


@dataclass(frozen=True, slots=True)
class StrictImprovement:
    """GEPA's rule: the child must score strictly more than its parent on the minibatch."""

    name: str = "strict_improvement"

    def judge(self, parent_sum: float, child_sum: float) -> Decision:
        accepted = child_sum > parent_sum
        return Decision(accepted, "improved" if accepted else "not_improved", parent_sum, child_sum)


@dataclass(frozen=True, slots=True)
class ImprovementOrEqual:
    """A child that scores as much as its parent is accepted too."""

    name: str = "improvement_or_equal"

    def judge(self, parent_sum: float, child_sum: float) -> Decision:
        accepted = child_sum >= parent_sum
        reason = ("improved" if child_sum > parent_sum else "equal") if accepted else "worse"
        return Decision(accepted, reason, parent_sum, child_sum)


ACCEPTANCE_RULES: Registry[AcceptanceRule] = Registry("acceptance rule")
"""The registered acceptance rules by name (the values ``gepa.acceptance`` accepts)."""


def register_acceptance_rule(rule: AcceptanceRule) -> AcceptanceRule:
    """Register ``rule`` under its name; a name already taken by another rule is a ``ValueError``."""
    return ACCEPTANCE_RULES.register(rule)


def get_acceptance_rule(name: str) -> AcceptanceRule:
    """The rule registered as ``name``; an unknown name is a ``ValueError`` listing the known ones."""
    return ACCEPTANCE_RULES.named(name)


register_acceptance_rule(StrictImprovement())
register_acceptance_rule(ImprovementOrEqual())


def decide(rule: str, parent_sum: float, child_sum: float) -> Decision:
    return get_acceptance_rule(rule).judge(parent_sum, child_sum)
