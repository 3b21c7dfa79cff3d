"""What the supervisor's work may cost and what it did cost: plan-time reservations, commit-time settlements, and
the counters of rollouts, usage and failures.
"""

from __future__ import annotations

from synth_opt.actors.messages import BatchDone
from synth_opt.actors.records import Counters
from synth_opt.errors import ContainerContractError
from synth_opt.gepa import Amount, BudgetLedger, GepaState, ProposalPlan
from synth_opt.gepa.merge import SUBSAMPLE_PER_STRATUM
from synth_opt.proposers.base import ProposerResult
from synth_opt.usage import Usage

__all__ = [
    "MERGE_SUBSAMPLE_ROWS",
    "MIN_ROLLOUTS_FOR_FAILURE_RATE",
    "actual_amount",
    "count_batch",
    "proposal_estimate",
    "worst_case_estimate",
]

MERGE_SUBSAMPLE_ROWS = 3 * SUBSAMPLE_PER_STRATUM  # the most rows a merge's stratified subsample takes

MIN_ROLLOUTS_FOR_FAILURE_RATE = 20


def proposal_estimate(
    ledger: BudgetLedger, state: GepaState, proposals_per_call: int, plan: ProposalPlan, *, proposer_calls: int = 1
) -> Amount:
    """The most a proposal can use: its batches, the pareto rows if accepted, and its proposer calls (two when it
    may be asked again: ``gepa.pipeline.concurrent_edits`` with proposals in flight)."""
    pareto = len(state.pareto_ids)
    if plan.merge is not None:
        return ledger.estimate(train=len(plan.minibatch) + pareto)
    minibatches = (1 + proposals_per_call) * len(plan.minibatch)
    return ledger.estimate(train=minibatches + pareto, proposer_calls=proposer_calls)


def worst_case_estimate(
    ledger: BudgetLedger, state: GepaState, proposals_per_call: int, *, proposer_calls: int = 1
) -> Amount:
    """An upper bound of :func:`proposal_estimate` for whatever is planned next (checked before planning, so a
    proposal that has to wait leaves the planner's random stream untouched)."""
    pareto = len(state.pareto_ids)
    rows = (1 + proposals_per_call) * state.sampler.batch_size
    if state.settings.use_merge:
        rows = max(rows, min(MERGE_SUBSAMPLE_ROWS, pareto))
    return ledger.estimate(train=rows + pareto, proposer_calls=proposer_calls)


def actual_amount(
    ledger: BudgetLedger,
    *batches: BatchDone | None,
    proposer: ProposerResult | None = None,
    proposer_calls: int = 1,
    heldout: bool = False,
) -> Amount:
    """What the work really used (a reused evaluation uses nothing). ``proposer``: the usage of ``proposer_calls``
    calls. A proposer call of unknown cost is charged at its estimate, so a cost limit still binds when the
    proposer reports no prices."""
    usage = Usage()
    rollouts = 0
    for batch in batches:
        if batch is None:
            continue
        for done in batch.results:
            if done.reused:  # not made: no rollout, no tokens, no cost
                continue
            rollouts += 1
            if done.reply is not None:
                usage += done.reply.usage
    cost = usage.known_cost_usd
    if proposer is not None:
        usage += proposer.usage
        unknown = proposer_calls * ledger.estimates.proposer_cost_usd
        cost += unknown if proposer.usage.cost_usd is None else proposer.usage.cost_usd
    return Amount(
        train_rollouts=0 if heldout else rollouts,
        heldout_rollouts=rollouts if heldout else 0,
        proposer_calls=0 if proposer is None else proposer_calls,
        tokens=usage.total_tokens,
        cost_usd=cost,
    )


def count_batch(counters: Counters, batch: BatchDone, *, heldout: bool, failure_tolerance: float) -> None:
    """Add a finished batch to the counters; too many failed rollouts end the run (ContainerContractError)."""
    c = counters
    live, reused = batch.live, batch.reused
    if heldout:
        c.rollouts_heldout += live
        c.reused_heldout += reused
    else:
        c.rollouts_train += live
        c.reused_train += reused
    for done in batch.results:
        if done.reused:
            continue
        if done.reply is not None:
            c.rollout_usage += done.reply.usage
        else:
            c.degraded += 1
            c.last_error = done.error
    # the share of the evaluations the search used: reused ones count (a row that always fails is retried live
    # each time while the rows around it are reused, so a share of live rollouts alone would overstate it)
    total = c.rollouts_train + c.rollouts_heldout + c.reused_train + c.reused_heldout
    allowed = failure_tolerance * max(total, MIN_ROLLOUTS_FOR_FAILURE_RATE)
    if c.degraded > allowed:
        raise ContainerContractError(
            f"{c.degraded} of {total} evaluations failed after retries, more than "
            f"rollout_failure_rate_tolerance = {failure_tolerance} allows; "
            f"last error: {c.last_error}"
        )
