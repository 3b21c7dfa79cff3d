"""Stopping rules: each built-in rule on its own, the order they are asked in, the budget's stop, and a rule defined
here, registered by name and asked after the built-in ones."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from synth_opt.gepa import (
    STOPPING_RULES,
    Stop,
    StopView,
    budget_stop,
    first_stop,
    get_stopping_rule,
    register_stopping_rule,
)
from synth_opt.gepa.stopping import NoImprovement, NothingToRollOut, ScoreThreshold


def view(**fields: float | int | None) -> StopView:
    base: dict[str, float | int | None] = {"commits": 1, "best_mean": 0.5, "commits_since_improvement": 0}
    return StopView(**{**base, **fields})  # type: ignore[arg-type]


def test_the_score_threshold_stops_once_the_best_mean_reaches_it() -> None:
    rule = ScoreThreshold()
    assert rule.check(view(best_mean=0.99)) is None  # unset: never
    assert rule.check(view(best_mean=0.49, score_threshold=0.5)) is None
    assert rule.check(view(best_mean=0.5, score_threshold=0.5)) == Stop(
        "score_threshold", "best mean 0.5000 reached score_threshold 0.5"
    )
    assert rule.check(view(best_mean=0.75, score_threshold=0.5)) == (
        "score_threshold",
        "best mean 0.7500 reached score_threshold 0.5",
    )


def test_no_improvement_stops_after_that_many_commits_without_a_better_best() -> None:
    rule = NoImprovement()
    assert rule.check(view(commits_since_improvement=50)) is None  # unset: never
    assert rule.check(view(commits_since_improvement=2, no_improvement_iterations=3)) is None
    assert rule.check(view(commits_since_improvement=3, no_improvement_iterations=3)) == Stop(
        "no_improvement_iterations", "no improvement in 3 proposals"
    )


def test_nothing_to_roll_out_stops_a_search_that_only_reuses() -> None:
    rule = NothingToRollOut()
    assert rule.check(view(commits_without_rollouts=500)) is None  # reuse off: never
    assert rule.check(view(commits_without_rollouts=9, max_commits_without_rollouts=10)) is None
    stop = rule.check(view(commits_without_rollouts=10, max_commits_without_rollouts=10))
    assert stop is not None and stop.reason == "reuse_evaluations"
    assert stop.message.startswith("10 proposals in a row rolled nothing out")


def test_the_rules_are_asked_in_order_and_the_first_stop_wins() -> None:
    assert list(STOPPING_RULES) == ["score_threshold", "no_improvement_iterations", "reuse_evaluations"]
    both = view(best_mean=0.9, score_threshold=0.8, commits_since_improvement=4, no_improvement_iterations=2)
    assert first_stop(both) == Stop("score_threshold", "best mean 0.9000 reached score_threshold 0.8")
    assert first_stop(both, [NoImprovement(), ScoreThreshold()]) == Stop(
        "no_improvement_iterations", "no improvement in 2 proposals"
    )
    assert first_stop(view(score_threshold=0.8, no_improvement_iterations=2)) is None


def test_a_rule_is_pure_and_its_view_immutable() -> None:
    seen = view(best_mean=0.9, score_threshold=0.8)
    assert first_stop(seen) == first_stop(seen)
    with pytest.raises(AttributeError):
        seen.best_mean = 0.1  # type: ignore[misc]


def test_the_budget_stops_when_nothing_is_in_flight_or_at_the_time_limit() -> None:
    assert budget_stop("max_total_rollouts", in_flight=0) == Stop(
        "max_total_rollouts", "the next proposal does not fit in the budget (max_total_rollouts)"
    )
    assert budget_stop("max_total_rollouts", in_flight=2) is None  # waits for the next commit
    assert budget_stop("max_time_seconds", in_flight=2) == Stop(
        "max_time_seconds", "the next proposal does not fit in the budget (max_time_seconds)"
    )


@dataclass(frozen=True)
class MaxCommits:
    """Stop after ``limit`` commits, whatever the scores."""

    limit: int
    name: str = "max_commits"

    def check(self, view: StopView) -> Stop | None:
        return Stop(self.name, f"{view.commits} commits") if view.commits >= self.limit else None


@pytest.fixture
def max_commits() -> Iterator[MaxCommits]:
    rule = MaxCommits(limit=2)
    register_stopping_rule(rule)
    try:
        yield rule
    finally:
        del STOPPING_RULES[rule.name]


def test_a_registered_rule_is_asked_after_the_built_in_ones(max_commits: MaxCommits) -> None:
    assert get_stopping_rule("max_commits") is max_commits
    assert list(STOPPING_RULES)[-1] == "max_commits"
    assert first_stop(view(commits=1)) is None
    assert first_stop(view(commits=2)) == Stop("max_commits", "2 commits")
    assert first_stop(view(commits=2, best_mean=1.0, score_threshold=1.0)).reason == "score_threshold"  # type: ignore[union-attr]


def test_a_taken_name_and_an_unknown_name_are_refused(max_commits: MaxCommits) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_stopping_rule(MaxCommits(limit=5))
    assert register_stopping_rule(max_commits) is max_commits  # the same rule again: a no-op
    with pytest.raises(ValueError, match="score_threshold, no_improvement_iterations, reuse_evaluations, max_commits"):
        get_stopping_rule("max_seconds")
