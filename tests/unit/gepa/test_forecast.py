"""The forecast behind ``gepa plan``: the proposals a budget buys, what stops the run first, and the totals; the
counts checked against the rule the supervisor follows (plan only while the worst case fits)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from synth_opt.gepa.forecast import PlanInputs, forecast

BASE = PlanInputs(
    train_cap=10_000,
    train_cap_key="max_train_rollouts",
    heldout_cap=1_000,
    heldout_rows=500,
    pareto_rows=150,
    minibatch_size=50,
)


def simulated(inputs: PlanInputs, rate_pattern: list[bool]) -> int:
    """Proposals a run plans when the k-th is accepted as ``rate_pattern`` says (cycled): each needs the worst case
    left, then uses its minibatches and, when accepted, the pareto rows."""
    left = inputs.train_cap - inputs.pareto_rows
    worst = (1 + inputs.proposals_per_call) * inputs.minibatch_size + inputs.pareto_rows
    count = 0
    while left >= worst:
        accepted = rate_pattern[count % len(rate_pattern)]
        left -= (1 + inputs.proposals_per_call) * inputs.minibatch_size + (inputs.pareto_rows if accepted else 0)
        count += 1
    return count


@pytest.mark.parametrize("pattern", [[True], [False], [True, False], [True, False, False, False]])
def test_the_proposal_count_follows_the_planning_rule(pattern: list[bool]) -> None:
    rate = sum(pattern) / len(pattern)
    plan = forecast(BASE, acceptance_rate=rate)
    assert abs(plan.expected_proposals - simulated(BASE, pattern)) <= 1
    assert plan.worst_case_proposals == simulated(BASE, [True]) == 39  # the demo config: 39 proposals
    assert plan.stopping_limit == "max_train_rollouts" and plan.seed_rollouts == 150


def test_the_validation_share_and_the_heldout_evaluation() -> None:
    plan = forecast(BASE, acceptance_rate=1.0)
    assert plan.expected_train_rollouts == 150 + 39 * 250 == 9900
    assert plan.validation_share == pytest.approx((150 + 39 * 150) / 9900)
    assert plan.heldout_rollouts == 1000


def test_reuse_of_minibatch_rows_that_are_pareto_rows_buys_proposals() -> None:
    # Banking77's reduced test config: 600 train rows, 60 of them pareto rows, minibatches of 20
    inputs = replace(
        BASE, train_cap=1500, heldout_cap=200, heldout_rows=100, pareto_rows=60, minibatch_size=20,
        reused_minibatch_share=60 / 600,
    )  # fmt: skip
    plan = forecast(inputs, acceptance_rate=1.0)
    assert plan.expected_rollouts_per_proposal == 40 + 60 - 2 - 2  # the parent's 2 and the child's 2 reused
    assert plan.expected_proposals == 14 and plan.expected_train_rollouts == 60 + 14 * 96  # as the run used


def test_the_limit_that_allows_fewest_proposals_stops_the_run() -> None:
    inputs = replace(
        BASE,
        max_cost_usd=5.0,
        rollout_cost_usd=0.001,
        proposer_cost_usd=0.05,
        rollout_tokens=300,
        proposer_tokens=4000,
    )
    plan = forecast(inputs, acceptance_rate=0.5)
    # cost: 1.00 for the heldout reservation, 0.15 for the seed; a proposal 0.175 + 0.05 expected, 0.30 at most
    assert plan.proposals_by_limit["max_cost_usd"] == int((5.0 - 1.0 - 0.15 - 0.30) // 0.225) + 1 == 16
    assert plan.stopping_limit == "max_cost_usd" and plan.expected_proposals == 16
    assert plan.proposals_by_limit["max_train_rollouts"] > 16
    assert plan.expected_tokens == 300 * (plan.expected_train_rollouts + 1000) + 4000 * 16
    assert plan.expected_cost_usd == pytest.approx(0.001 * (plan.expected_train_rollouts + 1000) + 0.05 * 16)


def test_unknown_usage_is_unknown_and_time_needs_both_latencies() -> None:
    plan = forecast(BASE)
    assert plan.expected_tokens is None and plan.expected_cost_usd is None and plan.expected_seconds is None
    timed = PlanInputs(
        train_cap=1000,
        train_cap_key="max_train_rollouts",
        heldout_cap=0,
        heldout_rows=0,
        pareto_rows=10,
        minibatch_size=5,
        pipelined=True,
        rollout_workers=10,
        propose_workers=2,
        rollout_seconds=1.0,
        proposer_seconds=20.0,
        max_time_seconds=300.0,
    )
    plan = forecast(timed, acceptance_rate=1.0)
    # pipelined: the proposer lane is the busier (20 s / 2 workers = 10 s against 20 rollouts / 10 workers = 2 s)
    assert plan.stopping_limit == "max_time_seconds"
    assert plan.proposals_by_limit["max_time_seconds"] == ((300 - 1 - 10) // 10) + 1
    with pytest.raises(ValueError, match="acceptance_rate"):
        forecast(BASE, acceptance_rate=1.5)
