"""Tests for the budget ledger (synth_opt.gepa.budget): reservations before dispatch, settlement after."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synth_opt.gepa.budget import Amount, BudgetLedger, Estimates, Limits

FAST = settings(max_examples=200, deadline=None)

# Costs are multiples of 1/8 so float sums are exact and "never exceeds" can be checked without a tolerance.
EIGHTHS = st.integers(0, 16).map(lambda k: k / 8)


def within_limits(ledger: BudgetLedger) -> list[str]:
    """The config keys whose limit ``used + reserved`` currently exceeds (should always be empty)."""
    lim, total = ledger.limits, ledger.used + ledger.reserved
    broken = []
    if total.train_rollouts > lim.train_rollouts:
        broken.append("train")
    if total.heldout_rollouts > lim.heldout_rollouts:
        broken.append("heldout")
    if lim.total_rollouts is not None and total.rollouts > lim.total_rollouts:
        broken.append("total")
    if lim.total_tokens is not None and total.tokens > lim.total_tokens:
        broken.append("tokens")
    if lim.cost_usd is not None and total.cost_usd > lim.cost_usd:
        broken.append("cost")
    return broken


def expected_refusal(ledger: BudgetLedger, amount: Amount) -> str | None:
    """An independent statement of which limit refuses ``amount`` (first in the documented order)."""
    lim, after = ledger.limits, ledger.used + ledger.reserved + amount
    if after.train_rollouts > lim.train_rollouts:
        return lim.train_cap_key
    if after.heldout_rollouts > lim.heldout_rollouts:
        return "max_heldout_rollouts"
    if lim.total_rollouts is not None and after.rollouts > lim.total_rollouts:
        return "max_total_rollouts"
    if lim.total_tokens is not None and after.tokens > lim.total_tokens:
        return "max_total_tokens"
    if lim.cost_usd is not None and after.cost_usd > lim.cost_usd:
        return "max_cost_usd"
    return None


@st.composite
def ledgers(draw: st.DrawFn) -> BudgetLedger:
    limits = Limits(
        train_rollouts=draw(st.integers(0, 30)),
        heldout_rollouts=draw(st.integers(0, 10)),
        total_rollouts=draw(st.none() | st.integers(0, 35)),
        cost_usd=draw(st.none() | EIGHTHS),
        total_tokens=draw(st.none() | st.integers(0, 400)),
        train_cap_key=draw(st.sampled_from(["max_total_rollouts", "max_train_rollouts"])),
    )
    estimates = Estimates(
        proposer_cost_usd=draw(EIGHTHS),
        proposer_tokens=draw(st.integers(0, 50)),
        rollout_cost_usd=draw(EIGHTHS),
        rollout_tokens=draw(st.integers(0, 30)),
    )
    return BudgetLedger(limits, estimates)


@FAST
@given(ledgers(), st.data())
def test_reserve_and_settle_never_exceed_a_limit(ledger: BudgetLedger, data: st.DataObject) -> None:
    outstanding: list[Amount] = []
    actual_total = Amount()
    for _ in range(data.draw(st.integers(1, 40), label="steps")):
        if outstanding and data.draw(st.booleans(), label="settle?"):
            reserved = outstanding.pop(data.draw(st.integers(0, len(outstanding) - 1), label="which"))
            # the actual amounts are at most what was reserved
            actual = Amount(
                train_rollouts=data.draw(st.integers(0, reserved.train_rollouts)),
                heldout_rollouts=data.draw(st.integers(0, reserved.heldout_rollouts)),
                proposer_calls=data.draw(st.integers(0, reserved.proposer_calls)),
                tokens=data.draw(st.integers(0, reserved.tokens)),
                cost_usd=reserved.cost_usd * data.draw(st.integers(0, 4)) / 4,
            )
            before = ledger.reserved
            ledger.settle(reserved, actual)
            assert ledger.reserved == before - reserved
            actual_total = actual_total + actual
        else:
            amount = ledger.estimate(
                train=data.draw(st.integers(0, 6)),
                heldout=data.draw(st.integers(0, 3)),
                proposer_calls=data.draw(st.integers(0, 1)),
            )
            used, reserved_before = ledger.used, ledger.reserved
            expected = expected_refusal(ledger, amount)
            refused = ledger.reserve(amount)
            assert refused == expected
            if refused is None:
                outstanding.append(amount)
                assert ledger.reserved == reserved_before + amount
            else:
                assert ledger.reserved == reserved_before
            assert ledger.used == used
        assert within_limits(ledger) == []
        assert ledger.remaining_train() >= 0

    # settle everything at its reservation: nothing stays reserved and the used amounts add up
    for reserved in outstanding:
        ledger.settle(reserved, reserved)
        actual_total = actual_total + reserved
    assert ledger.reserved == Amount()
    assert ledger.used == actual_total
    assert within_limits(ledger) == []


def test_estimate_prices_rollouts_and_proposer_calls() -> None:
    ledger = BudgetLedger(
        Limits(train_rollouts=10, heldout_rollouts=10),
        Estimates(proposer_cost_usd=0.5, proposer_tokens=1000, rollout_cost_usd=0.125, rollout_tokens=40),
    )
    amount = ledger.estimate(train=3, heldout=2, proposer_calls=1)
    assert amount == Amount(train_rollouts=3, heldout_rollouts=2, proposer_calls=1, tokens=1200, cost_usd=1.125)
    assert amount.rollouts == 5
    assert ledger.estimate() == Amount()


@pytest.mark.parametrize("key", ["max_total_rollouts", "max_train_rollouts"])
def test_train_cap_refusal_names_the_configured_key(key: str) -> None:
    ledger = BudgetLedger(Limits(train_rollouts=4, heldout_rollouts=2, train_cap_key=key))
    assert ledger.reserve(Amount(train_rollouts=4)) is None  # exactly at the cap fits
    assert ledger.reserve(Amount(train_rollouts=1)) == key
    assert ledger.reserved == Amount(train_rollouts=4)
    # heldout rollouts are not charged against the train cap
    assert ledger.reserve(Amount(heldout_rollouts=2)) is None


def test_heldout_cap_refusal() -> None:
    ledger = BudgetLedger(Limits(train_rollouts=10, heldout_rollouts=3))
    assert ledger.reserve(Amount(heldout_rollouts=2)) is None
    assert ledger.reserve(Amount(heldout_rollouts=2)) == "max_heldout_rollouts"
    assert ledger.reserve(Amount(heldout_rollouts=1)) is None
    assert ledger.reserve(Amount(train_rollouts=10)) is None


def test_total_rollouts_caps_train_plus_heldout() -> None:
    ledger = BudgetLedger(Limits(train_rollouts=10, heldout_rollouts=10, total_rollouts=12))
    assert ledger.reserve(Amount(train_rollouts=8)) is None
    assert ledger.reserve(Amount(heldout_rollouts=5)) == "max_total_rollouts"
    assert ledger.reserve(Amount(heldout_rollouts=4)) is None
    assert ledger.reserve(Amount(train_rollouts=1)) == "max_total_rollouts"


def test_train_cap_is_reported_before_the_total_cap() -> None:
    ledger = BudgetLedger(
        Limits(train_rollouts=3, heldout_rollouts=3, total_rollouts=3, train_cap_key="max_train_rollouts")
    )
    assert ledger.reserve(Amount(train_rollouts=4)) == "max_train_rollouts"


def test_token_limit_refusal() -> None:
    ledger = BudgetLedger(
        Limits(train_rollouts=100, heldout_rollouts=100, total_tokens=250),
        Estimates(rollout_tokens=100, proposer_tokens=60),
    )
    assert ledger.reserve(ledger.estimate(train=3)) == "max_total_tokens"
    assert ledger.reserve(ledger.estimate(train=2)) is None
    assert ledger.reserve(ledger.estimate(proposer_calls=1)) == "max_total_tokens"
    assert ledger.reserve(Amount(proposer_calls=1, tokens=50)) is None  # 250: exactly at the limit


def test_cost_limit_refusal() -> None:
    ledger = BudgetLedger(
        Limits(train_rollouts=100, heldout_rollouts=100, cost_usd=1.0),
        Estimates(rollout_cost_usd=0.25, proposer_cost_usd=0.5),
    )
    assert ledger.reserve(ledger.estimate(proposer_calls=1)) is None
    assert ledger.reserve(ledger.estimate(train=3)) == "max_cost_usd"
    assert ledger.reserve(ledger.estimate(train=2)) is None
    assert ledger.reserve(ledger.estimate(heldout=1)) == "max_cost_usd"
    assert ledger.reserved.cost_usd == 1.0


def test_time_limit_refusal_uses_the_callers_elapsed_seconds() -> None:
    ledger = BudgetLedger(
        Limits(train_rollouts=100, heldout_rollouts=100, time_seconds=100.0),
        Estimates(rollout_seconds=10.0, proposer_seconds=30.0),
    )
    assert ledger.reserve(ledger.estimate(train=1), elapsed_seconds=90.0) is None  # 100: exactly at the limit
    assert ledger.reserve(ledger.estimate(train=1), elapsed_seconds=95.0) == "max_time_seconds"
    assert ledger.reserve(ledger.estimate(proposer_calls=1), elapsed_seconds=75.0) == "max_time_seconds"
    assert ledger.reserve(ledger.estimate(proposer_calls=1), elapsed_seconds=70.0) is None
    # past the limit nothing more starts
    assert ledger.refusal(Amount(), elapsed_seconds=100.5) == "max_time_seconds"


def test_unset_optional_limits_do_not_refuse() -> None:
    ledger = BudgetLedger(
        Limits(train_rollouts=10**6, heldout_rollouts=10**6),
        Estimates(rollout_tokens=10**6, rollout_cost_usd=10**3, rollout_seconds=10**4),
    )
    assert ledger.reserve(ledger.estimate(train=1000, heldout=1000), elapsed_seconds=10**9) is None


def test_refusal_does_not_reserve_and_refusal_is_a_pure_query() -> None:
    ledger = BudgetLedger(Limits(train_rollouts=2, heldout_rollouts=0))
    assert ledger.refusal(Amount(train_rollouts=2)) is None
    assert ledger.reserved == Amount()
    assert ledger.reserve(Amount(train_rollouts=3)) == "max_total_rollouts"
    assert ledger.reserved == Amount()
    assert ledger.used == Amount()


def test_settle_releases_the_reservation_so_later_work_fits() -> None:
    ledger = BudgetLedger(Limits(train_rollouts=4, heldout_rollouts=0, total_tokens=100))
    big = Amount(train_rollouts=3, tokens=90)
    assert ledger.reserve(big) is None
    assert ledger.reserve(Amount(train_rollouts=2, tokens=10)) == "max_total_rollouts"
    assert ledger.remaining_train() == 1
    ledger.settle(big, Amount(train_rollouts=1, tokens=30))
    assert ledger.reserved == Amount()
    assert ledger.used == Amount(train_rollouts=1, tokens=30)
    assert ledger.remaining_train() == 3
    assert ledger.reserve(Amount(train_rollouts=2, tokens=10)) is None
    assert ledger.reserve(Amount(train_rollouts=1, tokens=61)) == "max_total_tokens"


def test_ledger_json_round_trip() -> None:
    ledger = BudgetLedger(Limits(train_rollouts=10, heldout_rollouts=4, cost_usd=5.0), Estimates(rollout_cost_usd=0.5))
    first = ledger.estimate(train=3)
    assert ledger.reserve(first) is None
    ledger.settle(first, Amount(train_rollouts=2, cost_usd=0.75))
    assert ledger.reserve(ledger.estimate(heldout=2, proposer_calls=1)) is None
    data = json.loads(json.dumps(ledger.to_json()))
    restored = BudgetLedger(ledger.limits, ledger.estimates).restored(data)
    assert restored.used == ledger.used
    assert restored.reserved == ledger.reserved
    assert restored.limits == ledger.limits
    assert Amount.from_json(ledger.used.to_json()) == ledger.used


def test_settling_every_reservation_leaves_exactly_nothing_reserved_with_decimal_costs() -> None:
    ledger = BudgetLedger(Limits(train_rollouts=10, heldout_rollouts=0, cost_usd=1.0))
    first, second = Amount(proposer_calls=1, cost_usd=0.1), Amount(proposer_calls=1, cost_usd=0.2)
    assert ledger.reserve(first) is None
    assert ledger.reserve(second) is None
    ledger.settle(first, first)
    ledger.settle(second, second)
    assert ledger.reserved == Amount()


def test_cost_limit_holds_exactly_with_decimal_costs() -> None:
    ledger = BudgetLedger(Limits(train_rollouts=10, heldout_rollouts=0, cost_usd=0.6))
    a, b, c = (Amount(proposer_calls=1, cost_usd=v) for v in (0.2, 0.3, 0.1))
    assert ledger.reserve(a) is None
    assert ledger.reserve(b) is None
    ledger.settle(a, a)
    assert ledger.reserve(c) is None
    assert (ledger.used + ledger.reserved).cost_usd <= 0.6
