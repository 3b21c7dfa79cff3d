"""``synth-opt gepa plan --config X``: what the configured budget buys, before anything is spent.

The forecast (:mod:`synth_opt.gepa.forecast`) from the config alone: no container is launched and no proposer is
called. Row counts come from the config (``{count = N}`` or the id lists; the pareto rows default to the train
rows); what one rollout and one proposer call use comes from the ``gepa.*_estimated_*`` keys (the proposer's
tokens and cost from its backend's bound where it knows one), and is reported unknown where neither says.
"""

from __future__ import annotations

from typing import Any

from synth_opt.config import CountSelection, GepaConfig
from synth_opt.gepa.forecast import DEFAULT_ACCEPTANCE_RATE, Forecast, PlanInputs, forecast
from synth_opt.proposers.factory import proposer_call_reservation

__all__ = ["plan_inputs", "plan_run", "render_plan"]


def _rows(selection: Any) -> int:
    return selection.count if isinstance(selection, CountSelection) else len(selection)


def plan_inputs(config: GepaConfig) -> PlanInputs:
    g, dataset = config.gepa, config.dataset
    heldout_rows = _rows(dataset.heldout_ids)
    pareto = dataset.pareto_ids if dataset.pareto_ids is not None else dataset.train_ids
    tokens, cost = proposer_call_reservation(
        config.proposer, estimated_tokens=g.proposer_estimated_tokens, estimated_cost_usd=g.proposer_estimated_cost_usd
    )
    known_tokens = g.proposer_estimated_tokens is not None or tokens > 0
    known_cost = g.proposer_estimated_cost_usd is not None or cost > 0 or _free_proposer(config)
    workers = config.effective_workers()
    return PlanInputs(
        train_cap=config.train_cap(heldout_rows),
        train_cap_key=config.train_cap_key(),
        heldout_cap=config.heldout_cap(heldout_rows),
        heldout_rows=heldout_rows,
        pareto_rows=_rows(pareto),
        minibatch_size=g.minibatch_size,
        proposals_per_call=config.proposer.proposals_per_call,
        pipelined=config.gepa.pipeline.mode == "async_pipelined",
        rollout_workers=workers["rollout"],
        propose_workers=workers["propose"],
        max_cost_usd=g.max_cost_usd if g.max_cost_usd > 0 else None,
        max_total_tokens=g.max_total_tokens,
        max_time_seconds=g.max_time_seconds,
        rollout_tokens=g.rollout_estimated_tokens,
        rollout_cost_usd=g.rollout_estimated_cost_usd,
        rollout_seconds=g.rollout_estimated_seconds,
        proposer_tokens=tokens if known_tokens else None,
        proposer_cost_usd=cost if known_cost else None,
        proposer_seconds=g.proposer_estimated_seconds,
        reused_minibatch_share=_minibatch_in_pareto(config) if g.reuse_evaluations else 0.0,
    )


def _minibatch_in_pareto(config: GepaConfig) -> float:
    """The share of the minibatch rows that are pareto rows, where the config alone says: both lists, or both
    ``{count = N}`` (the first N of the same listing, so the shorter is inside the longer); else 0 (the container
    would have to be asked), which only makes the forecast cautious."""
    dataset = config.dataset
    pareto = dataset.pareto_ids if dataset.pareto_ids is not None else dataset.train_ids
    minibatch = dataset.minibatch_ids if dataset.minibatch_ids is not None else dataset.train_ids
    if isinstance(pareto, CountSelection) and isinstance(minibatch, CountSelection):
        return min(pareto.count, minibatch.count) / minibatch.count if minibatch.count else 0.0
    if isinstance(pareto, list) and isinstance(minibatch, list):
        return len(set(pareto) & set(minibatch)) / len(minibatch) if minibatch else 0.0
    return 0.0


def _free_proposer(config: GepaConfig) -> bool:
    """A proposer whose calls are known to cost nothing: the offline rule, or prices set to 0."""
    p = config.proposer
    return p.backend == "offline" or (p.cost_per_million_input_tokens == 0 and p.cost_per_million_output_tokens == 0)


def plan_run(config: GepaConfig, *, acceptance_rate: float = DEFAULT_ACCEPTANCE_RATE) -> Forecast:
    return forecast(plan_inputs(config), acceptance_rate=acceptance_rate)


def render_plan(config: GepaConfig, plan: Forecast, inputs: PlanInputs) -> str:
    """The plan as a person reads it."""
    rate = f"{plan.acceptance_rate:.0%} accepted"
    b, k, p = inputs.minibatch_size, inputs.proposals_per_call, inputs.pareto_rows
    lines = [
        f"plan for {config.source_path.name}: nothing launched, nothing spent",
        f"  budget: {inputs.train_cap} train rollouts ({inputs.train_cap_key}), {plan.heldout_rollouts} heldout "
        f"(the seed and the best on {inputs.heldout_rows} rows)",
        f"  seed scoring: {plan.seed_rollouts} rollouts on the pareto rows",
        f"  one proposal: at most {plan.worst_case_rollouts_per_proposal} rollouts (minibatch {b} x {1 + k}"
        f" + {p} pareto rows when accepted), {plan.expected_rollouts_per_proposal:.1f} expected at {rate}",
        f"  proposals: {plan.worst_case_proposals} in the worst case (every one accepted), "
        f"{plan.expected_proposals} expected at {rate} (--acceptance-rate)",
        f"  train rollouts: {plan.expected_train_rollouts} expected"
        + (f" (and {plan.expected_reused} evaluations reused)" if plan.expected_reused else "")
        + f"; {plan.validation_share:.0%} of the evaluations score candidates on the pareto rows",
        f"  tokens: {_amount(plan.expected_tokens, plan.worst_case_tokens, '{:,.0f}')}"
        + ("" if plan.expected_tokens is not None else " (set gepa.rollout_estimated_tokens and the proposer's)"),
        f"  cost: {_amount(plan.expected_cost_usd, plan.worst_case_cost_usd, '${:,.4f}')}"
        + ("" if plan.expected_cost_usd is not None else " (set gepa.rollout_estimated_cost_usd and the proposer's)"),
        f"  wall time: {_seconds(plan.expected_seconds)} with {inputs.rollout_workers} rollout and "
        f"{inputs.propose_workers} proposer worker(s)"
        + ("" if plan.expected_seconds is not None else " (set gepa.rollout_estimated_seconds and the proposer's)"),
    ]
    others = ", ".join(
        f"{key} {count}" for key, count in sorted(plan.proposals_by_limit.items()) if key != plan.stopping_limit
    )
    lines.append(
        f"  stops first: {plan.stopping_limit} after {plan.expected_proposals} proposals"
        + (f" (the other limits would allow: {others})" if others else "")
    )
    lines.append(
        "  not counted (each only buys more proposals): other reuse, unchanged proposals, skip_perfect_score, "
        "the stop rules"
    )
    return "\n".join(lines)


def _amount(expected: float | None, worst: float | None, pattern: str) -> str:
    if expected is None or worst is None:
        return "unknown"
    return f"{pattern.format(expected)} expected ({pattern.format(worst)} if every proposal is accepted)"


def _seconds(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"about {value:,.0f} s" if value >= 10 else f"about {value:.1f} s"
