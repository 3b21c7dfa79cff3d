"""The supervisor's decision events: how a seed, a proposal, a score, the frontier and the budget are announced.

Each helper emits one event from values the supervisor passes in; the supervisor decides when (at commit time, in
commit order), so these never read or change the search state themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from synth_opt.actors.messages import BatchDone
from synth_opt.actors.records import Counters, Slot
from synth_opt.events import EventBus
from synth_opt.gepa import BudgetLedger, CandidateRecord, GepaState, ProposalPlan
from synth_opt.gepa.candidates import mean_score

__all__ = [
    "emit_budget",
    "emit_candidate",
    "emit_decision",
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
    bus.emit("run.state", f"state: {name}", lane="supervisor", state=name)


def emit_planned(bus: EventBus, plan: ProposalPlan) -> None:
    if plan.merge is not None:
        message = f"proposal {plan.index}: merge of {' and '.join(plan.parent_ids)}"
    else:
        message = f"proposal {plan.index}: parent {plan.parent_id}, module {plan.module}"
    bus.emit("proposal.planned", message, **plan.to_json())


def emit_seed_scored(bus: EventBus, record: CandidateRecord) -> None:
    bus.emit(
        "seed.scored",
        f"seed {record.candidate_id}: mean {record.mean:.4f} on {len(record.scores)} pareto rows",
        candidate_id=record.candidate_id,
        scores=record.scores,
        mean_score=record.mean,
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
        "candidate.registered",
        f"candidate {cid}" + (f" from {', '.join(parents)}" if parents else " (seed)"),
        candidate_id=cid,
        parent_ids=list(parents),
        module=module,
        proposal_index=proposal,
        payload=payload,
    )


def emit_status(bus: EventBus, entry: dict[str, Any]) -> None:
    """A candidate registry entry, announced without its payload (``candidate.registered`` carries that)."""
    bus.emit(
        "candidate.status",
        f"{entry['candidate_id']}: {entry['status']}",
        **{key: value for key, value in entry.items() if key != "payload"},
    )


def emit_scores(bus: EventBus, cid: str, stage: str, batch: BatchDone) -> None:
    scores = batch.scores
    bus.emit(
        "candidate.scored",
        f"{cid} {stage}: sum {sum(scores.values()):g} over {len(scores)} rows",
        candidate_id=cid,
        stage=stage,
        scores=scores,
        objective_scores=batch.objective_scores,
        mean_score=mean_score(scores),
    )


def emit_proposal_created(bus: EventBus, slot: Slot, chosen_id: str) -> None:
    plan = slot.plan
    rebase: dict[str, Any] = {}
    onto = ""
    if slot.rebase is not None:  # the fields appear only on proposals that met a newer candidate (rebase policy)
        rebase = {"rebase": slot.rebase.outcome, "rebased_onto": slot.rebase.target_id}
        onto = f", {slot.rebase.outcome} onto {slot.rebase.target_id}"
    bus.emit(
        "proposal.created",
        f"proposal {plan.index}: {chosen_id} from {plan.parent_id} ({plan.module}){onto}",
        proposal_index=plan.index,
        candidate_id=chosen_id,
        candidate_ids=[child.candidate_id for child in slot.children],
        parent_id=plan.parent_id,
        parent_ids=list(plan.parent_ids),
        kind="merge" if plan.merge is not None else "reflection",
        module=plan.module,
        pool_version=plan.pool_version,
        staleness=slot.staleness,
        **rebase,
    )


def emit_decision(bus: EventBus, slot: Slot, chosen_id: str) -> None:
    plan, decision = slot.plan, slot.decision
    assert decision is not None
    if slot.failure is not None:  # a failed proposal's decision: the parent stays, nothing is adopted
        bus.emit(
            "proposal.failed",
            f"proposal {plan.index}: failed ({slot.failure})",
            proposal_index=plan.index,
            candidate_id=chosen_id,
            accepted=False,
            reason=decision.reason,
            parent_sum=decision.parent_sum,
            child_sum=decision.child_sum,
            error=slot.failure,
        )
        return
    bus.emit(
        "acceptance.decided",
        f"proposal {plan.index}: {'accepted' if decision.accepted else 'rejected'} ({decision.reason}, "
        f"{decision.child_sum:g} vs {decision.parent_sum:g})",
        proposal_index=plan.index,
        candidate_id=chosen_id,
        accepted=decision.accepted,
        reason=decision.reason,
        parent_sum=decision.parent_sum,
        child_sum=decision.child_sum,
    )


def emit_frontier(bus: EventBus, state: GepaState, changed: list[str]) -> None:
    fronts = state.fronts()
    members = sorted({cid for front in fronts.values() for cid in front})
    best = state.best()
    bus.emit(
        "frontier.updated",
        f"frontier: {len(members)} candidate(s); best {best.candidate_id} mean {best.mean:.4f}",
        pool_version=state.pool_version,
        pool_size=len(state.pool),
        members=members,
        rows_changed=changed,
        fronts={row: list(fronts[row]) for row in changed if row in fronts},
        best_candidate_id=best.candidate_id,
        best_mean_score=best.mean,
    )


def emit_budget(bus: EventBus, ledger: BudgetLedger, counters: Counters, proposal_index: int) -> None:
    used = ledger.used
    bus.emit(
        "budget.updated",
        f"rollouts used {used.rollouts}; train remaining {ledger.remaining_train()}",
        lane="supervisor",
        proposal_index=proposal_index,
        used=used.to_json(),
        reserved=ledger.reserved.to_json(),
        train_cap=ledger.limits.train_rollouts,
        accepted=counters.accepted,
        rejected=counters.rejected,
        since_improvement=counters.commits_since_improvement,
    )


def emit_heldout_scores(bus: EventBus, order: Iterable[str], heldout: dict[str, dict[str, float]]) -> None:
    """One ``heldout.scored`` per evaluated candidate, in pool order (not arrival order)."""
    for cid in [cid for cid in order if cid in heldout]:
        scores = heldout[cid]
        bus.emit(
            "heldout.scored",
            f"{cid}: heldout mean {mean_score(scores):.4f} on {len(scores)} rows",
            candidate_id=cid,
            scores=scores,
            mean_score=mean_score(scores),
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
        "run.warning",
        f"the seed scored 0 on all {len(batch.results)} pareto rows, every one with the same feedback: {text[:300]!r}; "
        "the container is probably broken (check its log and its dependencies), not the prompt",
        lane="supervisor",
        feedback=text[:2000],
        rows=len(batch.results),
    )
