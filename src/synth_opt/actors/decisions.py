"""A proposal's acceptance decision: the staleness gap, the chosen child, and accept or reject.

Decisions are made in proposal order, so everything they read is fixed: the parent's and the children's minibatch
scores, and which earlier proposals added a candidate (the staleness gap).
"""

from __future__ import annotations

from synth_opt.actors.records import Slot, SupervisorSettings
from synth_opt.gepa import Decision, GepaState

__all__ = ["decide_proposal", "prune_added"]


def decide_proposal(slot: Slot, state: GepaState, settings: SupervisorSettings, added: dict[int, bool]) -> Decision:
    """Set the slot's staleness, chosen child and decision, and return the decision.

    ``added`` maps a proposal index to whether its commit adds a candidate; this proposal's entry is set to False
    (the supervisor sets it when the chosen child goes on to the pareto rows). Entries are dropped at commit
    (:func:`prune_added`), not here: decisions run ahead of commits, and a resume from a checkpoint decides the
    in-flight proposals again, so it needs every entry those decisions read."""
    plan = slot.plan
    if plan.merge is not None:
        parent_sum = max(sum(state.by_id[p].scores[row] for row in plan.minibatch) for p in plan.parent_ids)
    else:
        assert slot.parent_batch is not None
        parent_sum = sum(slot.parent_batch.scores.values())
    first_unseen = max(0, plan.index - settings.max_in_flight + 1)
    slot.staleness = sum(added.get(j, False) for j in range(first_unseen, plan.index))
    added[plan.index] = False
    if slot.perfect:
        slot.decision = Decision(False, "perfect_minibatch", parent_sum, parent_sum)
        return slot.decision
    if slot.unchanged:
        slot.decision = Decision(False, "unchanged", parent_sum, parent_sum)
        return slot.decision
    slot.chosen = max(slot.children, key=lambda child: child.minibatch_sum)
    if settings.staleness_policy == "guarded" and slot.staleness > settings.delta_max:
        slot.decision = Decision(False, "stale", parent_sum, slot.chosen.minibatch_sum)
        return slot.decision
    if plan.merge is not None:
        accepted = slot.chosen.minibatch_sum >= parent_sum
        reason = "merge_as_good_as_parents" if accepted else "merge_worse_than_parent"
        slot.decision = Decision(accepted, reason, parent_sum, slot.chosen.minibatch_sum)
    else:
        slot.decision = state.decide(parent_sum, slot.chosen.minibatch_sum)
    return slot.decision


def prune_added(added: dict[int, bool], committed: int, max_in_flight: int) -> None:
    """After commit ``committed``: drop the entry that no proposal still to be decided (index > ``committed``)
    reads."""
    added.pop(committed - max_in_flight + 1, None)
