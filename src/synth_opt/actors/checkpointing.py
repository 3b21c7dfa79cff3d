"""The supervisor's checkpoints: the snapshot a resume needs, and reading one back.

Work in flight is recorded by its plan only: a resume runs it again from the start (served from the cache when
there is one), so a snapshot's counters exclude what in-flight work has received so far.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from synth_opt.actors.records import CHECKPOINT_VERSION, READABLE_CHECKPOINT_VERSIONS, Counters, Slot, minus_usage
from synth_opt.gepa import Amount, BudgetLedger, CandidateRecord, GepaState, ProposalPlan
from synth_opt.usage import Usage

__all__ = ["Restored", "committed_counters", "restore_checkpoint", "take_snapshot"]


def committed_counters(counters: Counters, slots: Iterable[Slot]) -> Counters:
    """The counters without what the in-flight proposals have received so far."""
    committed = Counters.from_json(counters.to_json())
    for slot in slots:
        for batch in (slot.parent_batch, *(child.batch for child in slot.children), slot.pareto_batch):
            if batch is None:
                continue
            committed.rollouts_train -= batch.live
            committed.reused_train -= batch.reused
            committed.degraded -= batch.degraded
            for done in batch.results:
                if done.reply is not None and not done.reused:
                    committed.rollout_usage = minus_usage(committed.rollout_usage, done.reply.usage)
        received = _proposer_usage(slot)
        if received is not None:
            committed.proposer_usage = minus_usage(committed.proposer_usage, received)
    return committed


def _proposer_usage(slot: Slot) -> Usage | None:
    """What the slot's proposer calls have used so far: the texts it took (both calls' usage when it was asked
    again), else the reply waiting for the edits in flight, else the first call of one asked again."""
    if slot.proposal is not None:
        return slot.proposal.usage
    if slot.waiting is not None:
        return slot.waiting.usage
    return slot.first_usage


def take_snapshot(
    *,
    sequence_number: int,
    commits: int,
    state: GepaState,
    ledger: BudgetLedger,
    counters: Counters,
    slots: dict[int, Slot],
    added: dict[int, bool],
    stop_reason: str | None,
    heldout_reserved: Amount,
    reuse_evaluations: bool,
    seed_used: Amount | None = None,
    concurrent_edits: dict[int, tuple[str, tuple[dict[str, str], ...]]] | None = None,
    heldout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a resume needs, as JSON: the state, the ledger, the committed counters and the in-flight plans."""
    return {
        "version": CHECKPOINT_VERSION,
        "sequence_number": sequence_number,
        "commits": commits,
        "state": state.snapshot(),
        "ledger": ledger.to_json(),
        "counters": committed_counters(counters, slots.values()).to_json(),
        "added": {str(k): v for k, v in added.items() if k < commits},
        "in_flight": [
            {
                "plan": slot.plan.to_checkpoint(),
                "reserved": slot.reserved.to_json(),
                "summary": slot.frontier_summary,
                "commits_at_plan": slot.commits_at_plan,
            }
            for _, slot in sorted(slots.items())
        ],
        "stop_reason": stop_reason,
        "heldout_reserved": heldout_reserved.to_json(),
        "reuse_evaluations": reuse_evaluations,
        "seed_used": None if seed_used is None else seed_used.to_json(),  # for the live forecast's rates
        # (gepa.pipeline.concurrent_edits) the committed proposals' texts the proposals in flight are compared with
        "concurrent_edits": None
        if concurrent_edits is None
        else {
            str(index): {"parent_id": parent_id, "children": list(children)}
            for index, (parent_id, children) in sorted(concurrent_edits.items())
            if index < commits
        },
        "best_candidate_id": state.best().candidate_id,
        "pool_size": len(state.pool),
        # the heldout phase's progress once it started (HeldoutPhase.to_checkpoint); its evaluations in flight hold
        # their reservations in the ledger
        "heldout": heldout,
    }


@dataclass(frozen=True, slots=True)
class Restored:
    """What a checkpoint gives back to the supervisor besides the GEPA state (restored in place)."""

    ledger: BudgetLedger
    counters: Counters
    added: dict[int, bool]
    commits: int
    stop_reason: str | None
    heldout_reserved: Amount
    slots: dict[int, Slot]
    reuse_evaluations: bool  # False for a run checkpointed before reuse existed: it goes on without
    seed_used: Amount | None = None  # what the seed's scoring used (None in checkpoints older than the forecast)
    # (gepa.pipeline.concurrent_edits) the kept texts by proposal index; None when the run did not compare them (off,
    # or checkpointed before the comparison existed: it goes on without)
    concurrent_edits: dict[int, tuple[str, tuple[dict[str, str], ...]]] | None = None
    heldout: dict[str, Any] | None = None  # the heldout phase's progress; None before it started (and in version 2)


def restore_checkpoint(
    snapshot: dict[str, Any], state: GepaState, records: dict[str, CandidateRecord], ledger: BudgetLedger
) -> Restored:
    """Check the snapshot's version, restore ``state`` from it, and read back the rest."""
    if snapshot.get("version") not in READABLE_CHECKPOINT_VERSIONS:
        raise ValueError(
            f"checkpoint version {snapshot.get('version')} is not one of {sorted(READABLE_CHECKPOINT_VERSIONS)}"
        )
    state.restore(snapshot["state"], records)
    restored_ledger = ledger.restored(snapshot["ledger"])
    counters = Counters.from_json(snapshot["counters"])
    added = {int(k): bool(v) for k, v in snapshot["added"].items()}
    commits = int(snapshot["commits"])
    stop_reason = snapshot["stop_reason"]
    heldout_reserved = Amount.from_json(snapshot["heldout_reserved"])
    slots: dict[int, Slot] = {}
    for item in snapshot["in_flight"]:
        plan = ProposalPlan.from_checkpoint(item["plan"])
        slot = Slot(plan, Amount.from_json(item["reserved"]), dict(item["summary"]))
        slot.commits_at_plan = int(item.get("commits_at_plan", 0))
        slots[plan.index] = slot
    reuse = bool(snapshot.get("reuse_evaluations", False))
    seed_used = Amount.from_json(snapshot["seed_used"]) if snapshot.get("seed_used") else None
    kept = snapshot.get("concurrent_edits")
    edits = (
        None
        if kept is None
        else {
            int(index): (str(item["parent_id"]), tuple(dict(child) for child in item["children"]))
            for index, item in kept.items()
        }
    )
    return Restored(
        restored_ledger,
        counters,
        added,
        commits,
        stop_reason,
        heldout_reserved,
        slots,
        reuse,
        seed_used,
        edits,
        snapshot.get("heldout"),
    )
