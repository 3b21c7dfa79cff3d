"""The candidate registry: one entry per candidate the search has seen, with its status and why.

Each entry is announced as ``candidate.status`` when it is recorded, so the registry can be rebuilt from the feed.
"""

from __future__ import annotations

from typing import Any

from synth_opt.actors.records import Slot
from synth_opt.actors.supervisor_events import emit_status
from synth_opt.events import EventBus
from synth_opt.gepa import CandidateRecord

__all__ = ["record_entry", "register_proposal"]


def record_entry(registry: dict[str, dict[str, Any]], bus: EventBus, entry: dict[str, Any]) -> None:
    """The candidate registry entry, announced without its payload (``candidate.registered`` carries that),
    so the registry can be rebuilt from the feed."""
    registry[entry["candidate_id"]] = entry
    emit_status(bus, entry)


def register_proposal(
    registry: dict[str, dict[str, Any]], bus: EventBus, slot: Slot, record: CandidateRecord | None
) -> None:
    """Record a committed proposal's candidates: the accepted one (``record``), then every child not yet known.

    A chosen child that was carried onto a newer candidate (``staleness_policy = "rebase"``) is ``rebased``, with
    ``rebased_to`` naming what the pool got instead (the new candidate, or the one already there)."""
    assert slot.decision is not None
    if record is not None:
        record_entry(registry, bus, {**record.to_json(), "status": "accepted", "reason": slot.decision.reason})
    carried = slot.rebase is not None and slot.rebase.outcome in ("rebased", "contained")
    for child in slot.children:
        if child.candidate_id in registry:
            continue
        extra: dict[str, Any] = {}
        if child is slot.chosen and carried:
            assert slot.rebase is not None
            status, reason, extra = "rebased", slot.decision.reason, {"rebased_to": slot.rebase.candidate_id}
        elif child is slot.chosen:
            status = "accepted_duplicate" if slot.decision.accepted else "rejected"
            reason = slot.decision.reason
        else:
            status, reason = "rejected", "outscored_by_sibling"
        record_entry(
            registry,
            bus,
            {
                "candidate_id": child.candidate_id,
                "payload": child.payload,
                "parent_ids": list(slot.plan.parent_ids),
                "module_changed": slot.plan.module,
                "proposal_index": slot.plan.index,
                "status": status,
                "minibatch_scores": None if child.batch is None else child.batch.scores,
                "reason": reason,
                **extra,
            },
        )
