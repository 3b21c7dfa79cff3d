"""The supervisor's decision events: how a seed, a proposal, a score, the frontier and the budget are announced.

Each helper emits one event from values the supervisor passes in; the supervisor decides when (at commit time, in
commit order), so these never read or change the search state themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from synth_opt.actors.messages import BatchDone
from synth_opt.actors.records import Counters, Slot
from synth_opt.events import UNSET, EventBus, Stage
from synth_opt.events.types import (
    AcceptanceDecided,
    BudgetUpdated,
    CandidateRegistered,
    CandidateScored,
    CandidateStatus,
    FrontierUpdated,
    HeldoutScored,
    PlanForecast,
    ProposalCreated,
    ProposalFailed,
    ProposalPlanned,
    RunState,
    RunWarning,
    SeedScored,
)
from synth_opt.gepa import BudgetLedger, CandidateRecord, GepaState, ProposalPlan
from synth_opt.gepa.candidates import mean_score
from synth_opt.gepa.forecast import LiveForecast

__all__ = [
    "emit_budget",
    "emit_candidate",
    "emit_decision",
    "emit_forecast",
    "emit_frontier",
    "emit_heldout_scores",
    "emit_planned",
    "emit_proposal_created",
    "emit_scores",
    "emit_seed_scored",
    "emit_state",
    "emit_status",
    "warn_on_a_broken_seed",
]


def emit_state(bus: EventBus, name: str) -> None:
    bus.emit(RunState(name), f"state: {name}", lane="supervisor")


def emit_planned(bus: EventBus, plan: ProposalPlan) -> None:
    if plan.merge is not None:
        message = f"proposal {plan.index}: merge of {' and '.join(plan.parent_ids)}"
    else:
        message = f"proposal {plan.index}: parent {plan.parent_id}, module {plan.module}"
    bus.emit(
        ProposalPlanned(
            plan.index,
            "merge" if plan.merge is not None else "reflection",
            plan.parent_id,
            tuple(plan.parent_ids),
            tuple(plan.minibatch),
            plan.module,
            plan.pool_version,
            UNSET if plan.merge is None else plan.merge.ancestor_id,
        ),
        message,
    )


def emit_seed_scored(bus: EventBus, record: CandidateRecord) -> None:
    bus.emit(
        SeedScored(record.candidate_id, record.scores, record.mean),
        f"seed {record.candidate_id}: mean {record.mean:.4f} on {len(record.scores)} pareto rows",
    )


def emit_candidate(
    bus: EventBus,
    cid: str,
    payload: dict[str, str],
    parents: tuple[str, ...],
    module: str | None,
    proposal: int | None,
) -> None:
    bus.emit(
        CandidateRegistered(cid, tuple(parents), module, proposal, payload),
        f"candidate {cid}" + (f" from {', '.join(parents)}" if parents else " (seed)"),
    )


def emit_status(bus: EventBus, entry: dict[str, Any]) -> None:
    """A candidate registry entry, announced without its payload (``candidate.registered`` carries that)."""
    shown = {key: value for key, value in entry.items() if key != "payload"}
    bus.emit(CandidateStatus.from_fields(shown), f"{entry['candidate_id']}: {entry['status']}")


def emit_scores(bus: EventBus, cid: str, stage: Stage, batch: BatchDone) -> None:
    scores = batch.scores
    bus.emit(
        CandidateScored(cid, stage, scores, batch.objective_scores, mean_score(scores)),
        f"{cid} {stage}: sum {sum(scores.values()):g} over {len(scores)} rows",
    )


def emit_proposal_created(bus: EventBus, slot: Slot, chosen_id: str) -> None:
    plan = slot.plan
    created = ProposalCreated(
        plan.index,
        chosen_id,
        tuple(child.candidate_id for child in slot.children),
        plan.parent_id,
        tuple(plan.parent_ids),
        "merge" if plan.merge is not None else "reflection",
        plan.module,
        plan.pool_version,
        slot.staleness,
    )
    onto = ""
    if slot.rebase is not None:  # the fields appear only on proposals that met a newer candidate (rebase policy)
        created = replace(created, rebase=slot.rebase.outcome, rebased_onto=slot.rebase.target_id)
        onto = f", {slot.rebase.outcome} onto {slot.rebase.target_id}"
    if slot.first_usage is not None:  # asked again: its first reply repeated these proposals' edits
        created = replace(created, repeated=slot.repeated)
        onto += f", asked again (repeated proposal {', '.join(map(str, slot.repeated))})"
    bus.emit(created, f"proposal {plan.index}: {chosen_id} from {plan.parent_id} ({plan.module}){onto}")


def emit_decision(bus: EventBus, slot: Slot, chosen_id: str) -> None:
    plan, decision = slot.plan, slot.decision
    assert decision is not None
    if slot.failure is not None:  # a failed proposal's decision: the parent stays, nothing is adopted
        bus.emit(
            ProposalFailed(
                plan.index, chosen_id, False, decision.reason, decision.parent_sum, decision.child_sum, slot.failure
            ),
            f"proposal {plan.index}: failed ({slot.failure})",
        )
        return
    bus.emit(
        AcceptanceDecided(
            plan.index, chosen_id, decision.accepted, decision.reason, decision.parent_sum, decision.child_sum
        ),
        f"proposal {plan.index}: {'accepted' if decision.accepted else 'rejected'} ({decision.reason}, "
        f"{decision.child_sum:g} vs {decision.parent_sum:g})",
    )


def emit_frontier(bus: EventBus, state: GepaState, changed: list[str]) -> None:
    fronts = state.fronts()
    members = sorted({cid for front in fronts.values() for cid in front})
    best = state.best()
    bus.emit(
        FrontierUpdated(
            state.pool_version,
            len(state.pool),
            tuple(members),
            tuple(changed),
            {row: list(fronts[row]) for row in changed if row in fronts},
            best.candidate_id,
            best.mean,
        ),
        f"frontier: {len(members)} candidate(s); best {best.candidate_id} mean {best.mean:.4f}",
    )


def emit_budget(
    bus: EventBus, ledger: BudgetLedger, counters: Counters, proposal_index: int, *, reuse: bool = False
) -> None:
    """The budget after a commit; ``reuse``: with the count of reused rollouts (``reused``)."""
    used = ledger.used
    bus.emit(
        BudgetUpdated(
            proposal_index,
            used.to_json(),
            ledger.reserved.to_json(),
            ledger.limits.train_rollouts,
            counters.accepted,
            counters.rejected,
            counters.commits_since_improvement,
            counters.reused_train + counters.reused_heldout if reuse else UNSET,
        ),
        f"rollouts used {used.rollouts}; train remaining {ledger.remaining_train()}",
        lane="supervisor",
    )


def emit_forecast(bus: EventBus, proposal_index: int, forecast: LiveForecast) -> None:
    rate = "" if forecast.acceptance_rate is None else f" at {forecast.acceptance_rate:.0%} accepted"
    bus.emit(
        PlanForecast(
            proposal_index,
            forecast.acceptance_rate,
            forecast.expected_proposals,
            forecast.stopping_limit,
            dict(forecast.proposals_by_limit),
            {key: round(value, 9) for key, value in forecast.expected_totals.items()},
        ),
        f"forecast: about {forecast.expected_proposals} proposals{rate}, then {forecast.stopping_limit} stops the run",
        lane="supervisor",
    )


def emit_heldout_scores(bus: EventBus, order: Iterable[str], heldout: dict[str, dict[str, float]]) -> None:
    """One ``heldout.scored`` per evaluated candidate, in pool order (not arrival order)."""
    for cid in [cid for cid in order if cid in heldout]:
        scores = heldout[cid]
        bus.emit(
            HeldoutScored(cid, scores, mean_score(scores)),
            f"{cid}: heldout mean {mean_score(scores):.4f} on {len(scores)} rows",
        )


def warn_on_a_broken_seed(bus: EventBus, batch: BatchDone) -> None:
    """A seed that scores 0 on every row with one and the same feedback or error is most likely a broken container
    (a missing tool, an unreachable model), not a hard task: say so loudly (a ``run.warning`` event, shown and
    logged) instead of letting the run report 0 -> 0."""
    if not batch.results or any(done.reward != 0 for done in batch.results):
        return
    said = {
        (done.error or (done.reply.feedback if done.reply is not None else None) or "").strip()
        for done in batch.results
    }
    if len(said) != 1 or not (text := said.pop()):
        return
    bus.emit(
        RunWarning(text[:2000], len(batch.results)),
        f"the seed scored 0 on all {len(batch.results)} pareto rows, every one with the same feedback: {text[:300]!r}; "
        "the container is probably broken (check its log and its dependencies), not the prompt",
        lane="supervisor",
    )
