"""``synth-opt gepa plan --config X``: what the configured budget buys, before anything is spent.

The forecast (:mod:`synth_opt.gepa.forecast`) from the config alone: no container is launched and no proposer is
called. Row counts come from the config (``{count = N}`` or the id lists; the pareto rows default to the train
rows); what one rollout and one proposer call use comes from the ``gepa.*_estimated_*`` keys (the proposer's
tokens and cost from its backend's bound where it knows one), and is reported unknown where neither says.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from synth_opt.cache import CacheStore
from synth_opt.config import CountSelection, GepaConfig
from synth_opt.container.wire import RolloutRequest
from synth_opt.events import EventBus
from synth_opt.gepa.candidates import candidate_id
from synth_opt.gepa.forecast import DEFAULT_ACCEPTANCE_RATE, Forecast, PlanInputs, forecast
from synth_opt.proposers.factory import proposer_call_reservation
from synth_opt.proposers.reflection import ReflectionRequest, ReflectiveRecord
from synth_opt.run.container import open_container
from synth_opt.run.dataset import resolve_dataset
from synth_opt.run.setup import cached_proposer, seed_and_modules
from synth_opt.usage import Usage

__all__ = ["Probe", "plan_inputs", "plan_run", "probe_run", "render_plan", "with_probe"]


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


def render_plan(config: GepaConfig, plan: Forecast, inputs: PlanInputs, probe: Probe | None = None) -> str:
    """The plan as a person reads it."""
    rate = f"{plan.acceptance_rate:.0%} accepted"
    b, k, p = inputs.minibatch_size, inputs.proposals_per_call, inputs.pareto_rows
    spent = (
        "nothing launched, nothing spent"
        if probe is None
        else f"the container launched and {probe.rollouts} rollouts and one proposer call spent to measure"
    )
    lines = [
        f"plan for {config.source_path.name}: {spent}",
        *([probe.describe()] if probe is not None else []),
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
        f"  wall time: {_seconds(plan.expected_seconds)}"
        + ("" if plan.worst_case_seconds is None else f" ({_seconds(plan.worst_case_seconds)} if all are accepted)")
        + f" with {inputs.rollout_workers} rollout and "
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


@dataclass(frozen=True, slots=True)
class Probe:
    """What ``--probe N`` measured: N rollouts of the seed on the first pareto rows (one at a time) and one proposer
    call reflecting on a minibatch of them (the N rows repeated to ``gepa.minibatch_size``, so the prompt has a real
    call's size); per rollout and per call, the mean seconds, tokens and cost (None: unknown cost)."""

    rollouts: int
    rollout_seconds: float
    rollout_tokens: float
    rollout_cost_usd: float | None
    proposer_seconds: float
    proposer_tokens: int
    proposer_cost_usd: float | None

    def describe(self) -> str:
        def cost(value: float | None) -> str:
            return "unknown cost" if value is None else f"${value:.4f}"

        return (
            f"  measured (--probe {self.rollouts}): {self.rollouts} seed rollouts, {self.rollout_seconds:.2f} s, "
            f"{self.rollout_tokens:,.0f} tokens and {cost(self.rollout_cost_usd)} each; one proposer call, "
            f"{self.proposer_seconds:.2f} s, {self.proposer_tokens:,} tokens, {cost(self.proposer_cost_usd)}"
        )


def with_probe(inputs: PlanInputs, probe: Probe) -> PlanInputs:
    """``inputs`` with the measured rates in place of the configured estimates."""
    return replace(
        inputs,
        rollout_seconds=probe.rollout_seconds,
        rollout_tokens=round(probe.rollout_tokens),
        rollout_cost_usd=probe.rollout_cost_usd,
        proposer_seconds=probe.proposer_seconds,
        proposer_tokens=probe.proposer_tokens,
        proposer_cost_usd=probe.proposer_cost_usd,
    )


async def probe_run(config: GepaConfig, rollouts: int) -> Probe:
    """Launch (or reach) the config's container, run the seed on ``rollouts`` pareto rows one at a time, and call
    the proposer once on them; nothing is cached or written outside a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="synth-opt-probe-") as folder:
        run_dir = Path(folder)
        bus = EventBus()
        store = CacheStore(run_dir / "cache.sqlite", mode="off", namespace="probe", bus=bus)
        try:
            async with AsyncExitStack() as stack:
                client = await open_container(stack, config, store, bus, transport=None, run_dir=run_dir)
                program = await client.program()
                task_info = await client.task_info()
                dataset = await resolve_dataset(config, bus, client, await client.taskset(), announce=False)
                seed, modules = seed_and_modules(config, program)
                policy = config.policy.model_dump(exclude_none=True)
                records: list[ReflectiveRecord] = []
                seconds, usage = 0.0, Usage()
                for row in dataset.pareto_ids[:rollouts]:
                    started = time.perf_counter()
                    reply = await client.rollout(_probe_request(seed, row, dataset.rows[row], policy, config))
                    seconds += time.perf_counter() - started
                    usage += reply.usage
                    records.append(ReflectiveRecord(row, dataset.rows[row], reply.trace, reply.reward, reply.feedback))
                proposer = cached_proposer(store, config, None, run_dir)
                stack.push_async_callback(proposer.aclose)
                size = config.gepa.minibatch_size  # the call a proposal makes reflects on a whole minibatch
                shown = tuple(records[i % len(records)] for i in range(size)) if records else ()
                request = ReflectionRequest(
                    candidate_id=candidate_id(seed),
                    candidate=seed,
                    target_module=modules[0],
                    records=shown,
                    task_info=task_info,
                    proposals=config.proposer.proposals_per_call,
                    template=config.proposer.template_text(),
                )
                started = time.perf_counter()
                result = await proposer.propose(request)
                proposer_seconds = time.perf_counter() - started
        finally:
            store.close()
            bus.close()
    count = max(1, len(records))
    return Probe(
        rollouts=len(records),
        rollout_seconds=seconds / count,
        rollout_tokens=usage.total_tokens / count,
        rollout_cost_usd=None if usage.cost_usd is None else usage.cost_usd / count,
        proposer_seconds=proposer_seconds,
        proposer_tokens=result.usage.total_tokens,
        proposer_cost_usd=result.usage.cost_usd,
    )


def _probe_request(
    seed: dict[str, str], row: str, task: dict[str, Any], policy: dict[str, Any], config: GepaConfig
) -> RolloutRequest:
    cid = candidate_id(seed)
    return RolloutRequest(
        rollout_id=f"probe-{cid}-{row}",
        submission_mode=config.gepa.rollout_submission_mode,
        task_id=row,
        candidate_id=cid,
        candidate=seed,
        policy=policy,
        task=task,
        metadata={"stage": "probe"},
    )
