"""What a budget buys, before anything is spent: the arithmetic behind ``synth-opt gepa plan``.

The search plans a proposal only while what is left of the train budget covers the proposal's worst case (its
parent minibatch, a child minibatch per proposal text, and the pareto rows should it be accepted); a rejected
proposal gives back the pareto rows it did not use. So with ``T`` train rollouts, ``P`` pareto rows, a worst case
``W = (1 + K) B + P`` (``B`` the minibatch size, ``K`` proposals per call) and an expected cost ``c = (1 + K) B + a
P`` at an acceptance rate ``a``, the seed's scoring takes ``P`` and

    proposals = floor((T - P - W) / c) + 1        (0 when T - P < W)

for the train budget. With evaluation reuse, the rows of a minibatch that are also pareto rows are not rolled out
again: the parent's (the parent is a pool member, scored on every pareto row) and, for an accepted child, its own
in its pareto scoring; with a share ``f`` of the minibatch rows among the pareto rows a proposal then uses
``c = (1 + K) B + a P - f B (1 + a)`` live rollouts, while the check before planning still asks for ``W``. Every
other limit (cost, tokens, time) allows its own count the same way, from what one
proposal and one rollout use, and the smallest count is the limit that stops the run. The worst case is ``a = 1``.
What the forecast cannot see makes a run cheaper, never dearer: other reuse (a proposal that repeats a known
candidate), a proposer that returns the text unchanged (no child minibatch), ``skip_perfect_score``, and the stop
rules (``no_improvement_iterations``, ``score_threshold``); a rebased child (``staleness_policy = "rebase"``) is a
new candidate whose minibatch rows are not reused.

Pure: numbers in, numbers out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Final

__all__ = ["DEFAULT_ACCEPTANCE_RATE", "Forecast", "LiveForecast", "PlanInputs", "Spend", "forecast", "live_forecast"]

DEFAULT_ACCEPTANCE_RATE: Final = 0.5


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """The configured caps and sizes, and what one rollout and one proposer call use (None: not known)."""

    train_cap: int
    train_cap_key: str
    heldout_cap: int
    heldout_rows: int
    pareto_rows: int
    minibatch_size: int
    proposals_per_call: int = 1
    pipelined: bool = False
    rollout_workers: int = 1
    propose_workers: int = 1
    max_cost_usd: float | None = None
    max_total_tokens: int | None = None
    max_time_seconds: float | None = None
    rollout_tokens: int | None = None
    rollout_cost_usd: float | None = None
    rollout_seconds: float | None = None
    proposer_tokens: int | None = None
    proposer_cost_usd: float | None = None
    proposer_seconds: float | None = None
    reused_minibatch_share: float = 0.0  # with reuse on: the share of minibatch rows that are pareto rows


@dataclass(frozen=True, slots=True)
class Forecast:
    acceptance_rate: float
    seed_rollouts: int
    worst_case_rollouts_per_proposal: int
    expected_rollouts_per_proposal: float
    worst_case_proposals: int
    expected_proposals: int
    expected_accepted: int
    expected_train_rollouts: int  # live: what the budget counts
    expected_reused: int
    heldout_rollouts: int
    validation_share: float  # of the expected train rollouts, those spent scoring candidates on the pareto rows
    expected_tokens: int | None
    worst_case_tokens: int | None
    expected_cost_usd: float | None
    worst_case_cost_usd: float | None
    expected_seconds: float | None
    worst_case_seconds: float | None
    stopping_limit: str
    proposals_by_limit: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _count(budget: float, seed_cost: float, worst: float, expected: float) -> int:
    """Proposals planned: each needs ``worst`` left when it is planned and uses ``expected`` on average."""
    left = budget - seed_cost
    if left < worst or worst <= 0:
        return 0 if left < worst else 10**9
    return math.floor((left - worst) / expected) + 1 if expected > 0 else 10**9


def forecast(inputs: PlanInputs, *, acceptance_rate: float = DEFAULT_ACCEPTANCE_RATE) -> Forecast:
    """The forecast for ``inputs`` at ``acceptance_rate`` (the share of proposals accepted; 1 is the worst case)."""
    if not 0.0 <= acceptance_rate <= 1.0:
        raise ValueError(f"acceptance_rate must be in [0, 1] (got {acceptance_rate})")
    p, b, k = inputs.pareto_rows, inputs.minibatch_size, inputs.proposals_per_call
    heldout = min(inputs.heldout_cap, 2 * inputs.heldout_rows)  # the seed and the best, reserved at the start
    minibatches = (1 + k) * b
    worst = minibatches + p  # what must be left to plan a proposal
    reused = inputs.reused_minibatch_share * b * (1 + acceptance_rate)
    worst_reused = inputs.reused_minibatch_share * b * 2
    expected = minibatches + acceptance_rate * p - reused
    worst_live = worst - worst_reused

    by_limit = {inputs.train_cap_key: _count(inputs.train_cap, p, worst, expected)}
    worst_by_limit = {inputs.train_cap_key: _count(inputs.train_cap, p, worst, worst_live)}

    def per_proposal(per_rollout: float | None, per_call: float | None, rollouts: float) -> float | None:
        if per_rollout is None and per_call is None:
            return None
        return (per_rollout or 0.0) * rollouts + (per_call or 0.0)

    limits: list[tuple[str, float | None, float | None, float | None]] = [
        ("max_cost_usd", inputs.max_cost_usd, inputs.rollout_cost_usd, inputs.proposer_cost_usd),
        ("max_total_tokens", inputs.max_total_tokens, inputs.rollout_tokens, inputs.proposer_tokens),
    ]
    for key, cap, per_rollout, per_call in limits:
        if cap is None:
            continue
        seed_use = (per_rollout or 0.0) * p
        heldout_use = (per_rollout or 0.0) * heldout
        expected_use = per_proposal(per_rollout, per_call, expected)
        worst_use = per_proposal(per_rollout, per_call, worst)
        if expected_use is None or worst_use is None:
            continue
        by_limit[key] = _count(cap - heldout_use, seed_use, worst_use, expected_use)
        worst_live_use = per_proposal(per_rollout, per_call, worst_live)
        assert worst_live_use is not None
        worst_by_limit[key] = _count(cap - heldout_use, seed_use, worst_use, worst_live_use)
    seconds_expected = _seconds_per_proposal(inputs, expected)
    seconds_worst = _seconds_per_proposal(inputs, worst)
    seconds_worst_live = _seconds_per_proposal(inputs, worst_live)
    if inputs.max_time_seconds is not None and seconds_expected is not None and seconds_worst is not None:
        assert seconds_worst_live is not None
        seed_seconds = _rollout_seconds(inputs, p)
        time_cap = inputs.max_time_seconds
        by_limit["max_time_seconds"] = _count(time_cap, seed_seconds, seconds_worst, seconds_expected)
        worst_by_limit["max_time_seconds"] = _count(time_cap, seed_seconds, seconds_worst, seconds_worst_live)

    stopping = min(by_limit, key=lambda key: (by_limit[key], key != inputs.train_cap_key))
    proposals = by_limit[stopping]
    worst_proposals = min(worst_by_limit.values())
    accepted = round(acceptance_rate * proposals)
    train = p + round(proposals * expected)
    reused_total = round(proposals * reused)
    worst_rollouts = p + round(worst_proposals * worst_live) + heldout
    tokens = _total(inputs.rollout_tokens, inputs.proposer_tokens, train + heldout, proposals)
    worst_tokens = _total(inputs.rollout_tokens, inputs.proposer_tokens, worst_rollouts, worst_proposals)
    cost = _total(inputs.rollout_cost_usd, inputs.proposer_cost_usd, train + heldout, proposals)
    worst_cost = _total(inputs.rollout_cost_usd, inputs.proposer_cost_usd, worst_rollouts, worst_proposals)
    seconds = worst_seconds = None
    if seconds_expected is not None and seconds_worst_live is not None:
        fixed = _rollout_seconds(inputs, p) + _rollout_seconds(inputs, heldout)
        seconds = fixed + proposals * seconds_expected
        worst_seconds = fixed + worst_proposals * seconds_worst_live
    return Forecast(
        acceptance_rate=acceptance_rate,
        seed_rollouts=p,
        worst_case_rollouts_per_proposal=worst,
        expected_rollouts_per_proposal=expected,
        worst_case_proposals=worst_proposals,
        expected_proposals=proposals,
        expected_accepted=accepted,
        expected_train_rollouts=train,
        expected_reused=reused_total,
        heldout_rollouts=heldout,
        validation_share=(p + accepted * p) / (train + reused_total) if train else 0.0,
        expected_tokens=None if tokens is None else round(tokens),
        worst_case_tokens=None if worst_tokens is None else round(worst_tokens),
        expected_cost_usd=cost,
        worst_case_cost_usd=worst_cost,
        expected_seconds=seconds,
        worst_case_seconds=worst_seconds,
        stopping_limit=stopping,
        proposals_by_limit=by_limit,
    )


def _total(per_rollout: float | None, per_call: float | None, rollouts: float, calls: int) -> float | None:
    if per_rollout is None or per_call is None:
        return None
    return per_rollout * rollouts + per_call * calls


def _rollout_seconds(inputs: PlanInputs, rollouts: float) -> float:
    if inputs.rollout_seconds is None:
        return 0.0
    return inputs.rollout_seconds * math.ceil(rollouts / max(1, inputs.rollout_workers))


def _seconds_per_proposal(inputs: PlanInputs, rollouts: float) -> float | None:
    """Wall time one proposal adds: serially its proposer call and its batches one after the other; pipelined,
    whichever of the rollout lane and the proposer lane is the busier."""
    if inputs.rollout_seconds is None or inputs.proposer_seconds is None:
        return None
    rollout_part = inputs.rollout_seconds * rollouts / max(1, inputs.rollout_workers)
    if not inputs.pipelined:  # the proposer call between the parent's batch and the children's
        return inputs.proposer_seconds + rollout_part
    return max(rollout_part, inputs.proposer_seconds / max(1, inputs.propose_workers))


@dataclass(frozen=True, slots=True)
class Spend:
    """One limit as the run stands: what is ``left`` of it, what planning a proposal needs left (``worst``), and
    what a proposal has used on average so far (``per_proposal``)."""

    left: float
    worst: float
    per_proposal: float


@dataclass(frozen=True, slots=True)
class LiveForecast:
    committed: int
    acceptance_rate: float | None  # None before the first commit
    expected_proposals: int
    stopping_limit: str
    proposals_by_limit: dict[str, int]
    expected_totals: dict[str, float]  # per measure (train_rollouts, tokens, cost_usd): the run's total at its end


def live_forecast(
    committed: int,
    accepted: int,
    in_flight: int,
    spends: dict[str, Spend],
    usage: dict[str, tuple[float, float]] | None = None,
) -> LiveForecast:
    """The proposals the run will have made when a limit stops it, from its real rates: each in-flight proposal is
    taken to use what the committed ones used on average, then the rule of :func:`forecast` applies to what is
    left. ``usage``: per measure, (used so far, used per proposal), projected to the run's end."""
    by_limit = {}
    for key, spend in spends.items():
        left = spend.left - in_flight * spend.per_proposal
        by_limit[key] = committed + in_flight + max(0, _count(left, 0.0, spend.worst, spend.per_proposal))
    stopping = min(by_limit, key=lambda key: (by_limit[key], key))
    remaining = by_limit[stopping] - committed
    return LiveForecast(
        committed=committed,
        acceptance_rate=accepted / committed if committed else None,
        expected_proposals=by_limit[stopping],
        stopping_limit=stopping,
        proposals_by_limit=by_limit,
        expected_totals={key: used + remaining * per for key, (used, per) in (usage or {}).items()},
    )
