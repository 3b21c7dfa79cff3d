"""When the search stops: each rule a small class behind the :class:`StoppingRule` protocol, pure (a function of a
small immutable :class:`StopView`), registered by name in :data:`STOPPING_RULES`.

After every commit the supervisor asks the registered rules in registration order (the built-in ones first:
``score_threshold``, ``no_improvement_iterations``, then ``reuse_evaluations``) and stops on the first
:class:`Stop`. A rule whose ``[gepa]`` key is unset never stops. Adding a rule is one class and
:func:`register_stopping_rule`; a rule's own parameters are fields of its instance.

The budget's stop is not one of them: it is decided when the next proposal is planned, not after a commit, and a
proposal that does not fit while others are in flight waits instead of stopping (:func:`budget_stop`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from synth_opt.registry import Registry

__all__ = [
    "STOPPING_RULES",
    "NoImprovement",
    "NothingToRollOut",
    "ScoreThreshold",
    "Stop",
    "StopView",
    "StoppingRule",
    "budget_stop",
    "first_stop",
    "get_stopping_rule",
    "register_stopping_rule",
]


class Stop(NamedTuple):
    """Why the search stops: the ``stop_reason`` of the result and the ``search.stopped`` event, and its message."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class StopView:
    """What a stopping rule may read after a commit: the search's progress and the ``[gepa]`` stop keys."""

    commits: int
    """Proposals committed so far, this one included."""
    best_mean: float
    """The best candidate's mean pareto score."""
    commits_since_improvement: int
    """Commits since the best mean last rose (0 right after it rose)."""
    score_threshold: float | None = None
    no_improvement_iterations: int | None = None
    commits_without_rollouts: int = 0
    """Commits in a row whose proposal made no live rollout (evaluation reuse served all it needed)."""
    max_commits_without_rollouts: int | None = None
    """With evaluation reuse: how many such commits end the search (None: never)."""


class StoppingRule(Protocol):
    """Whether the search stops after a commit. ``name`` is its stop reason too."""

    @property
    def name(self) -> str: ...

    def check(self, view: StopView) -> Stop | None: ...


@dataclass(frozen=True, slots=True)
class ScoreThreshold:
    """Stop once the best mean reaches ``gepa.score_threshold``."""

    name: str = "score_threshold"

    def check(self, view: StopView) -> Stop | None:
        threshold = view.score_threshold
        if threshold is None or view.best_mean < threshold:
            return None
        return Stop(self.name, f"best mean {view.best_mean:.4f} reached score_threshold {threshold}")


@dataclass(frozen=True, slots=True)
class NoImprovement:
    """Stop after ``gepa.no_improvement_iterations`` commits in a row that did not raise the best mean."""

    name: str = "no_improvement_iterations"

    def check(self, view: StopView) -> Stop | None:
        limit = view.no_improvement_iterations
        if limit is None or view.commits_since_improvement < limit:
            return None
        return Stop(self.name, f"no improvement in {limit} proposals")


@dataclass(frozen=True, slots=True)
class NothingToRollOut:
    """With ``gepa.reuse_evaluations``: stop after ``max_commits_without_rollouts`` commits in a row whose proposals
    rolled nothing out (each reused every evaluation it needed: a proposer that keeps proposing known candidates
    from a parent already evaluated on every row). Such a proposal uses no rollout budget, so without this rule
    the search would go round in circles for ever."""

    name: str = "reuse_evaluations"

    def check(self, view: StopView) -> Stop | None:
        limit = view.max_commits_without_rollouts
        if limit is None or view.commits_without_rollouts < limit:
            return None
        return Stop(
            self.name,
            f"{view.commits_without_rollouts} proposals in a row rolled nothing out: every evaluation they needed "
            "was known already (the proposer keeps proposing known candidates)",
        )


STOPPING_RULES: Registry[StoppingRule] = Registry("stopping rule")
"""The registered stopping rules by name, in the order they are asked."""


def register_stopping_rule(rule: StoppingRule) -> StoppingRule:
    """Register ``rule`` (asked after the ones registered before it); a name already taken by another rule is a
    ``ValueError``."""
    return STOPPING_RULES.register(rule)


def get_stopping_rule(name: str) -> StoppingRule:
    """The rule registered as ``name``; an unknown name is a ``ValueError`` listing the known ones."""
    return STOPPING_RULES.named(name)


register_stopping_rule(ScoreThreshold())
register_stopping_rule(NoImprovement())
register_stopping_rule(NothingToRollOut())


def first_stop(view: StopView, rules: Iterable[StoppingRule] | None = None) -> Stop | None:
    """The first of ``rules`` (by default every registered one, in order) that stops the search, or None."""
    for rule in STOPPING_RULES.values() if rules is None else rules:
        stop = rule.check(view)
        if stop is not None:
            return stop
    return None


def budget_stop(refused: str, *, in_flight: int) -> Stop | None:
    """The planner's stop when the budget refuses the next proposal's worst case (``refused`` names the limit):
    the search stops when nothing is in flight, or at once on the time limit (time is not given back); otherwise
    None, and the proposal waits for the next commit, which releases what the in-flight proposals did not use."""
    if in_flight and refused != "max_time_seconds":
        return None
    return Stop(refused, f"the next proposal does not fit in the budget ({refused})")
