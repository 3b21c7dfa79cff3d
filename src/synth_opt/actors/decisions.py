"""A proposal's acceptance decision: the staleness gap, the chosen child, and accept or reject.

Decisions are made in proposal order, so everything they read is fixed: the parent's and the children's minibatch
scores, and which earlier proposals added a candidate (the staleness gap).
"""

from __future__ import annotations

from synth_opt.actors.records import Counters, Slot, SupervisorSettings
from synth_opt.errors import ProposerError, ProposerReplyError
from synth_opt.gepa import Decision, GepaState

__all__ = ["check_proposer_failures", "count_proposer_call", "decide_proposal", "failure_summary", "prune_added"]

REPLY_QUOTE_CHARS = 200


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
    if slot.time_limit:  # the run's time ran out while the proposer served nothing: no proposal was made
        slot.decision = Decision(False, "time_limit", parent_sum, parent_sum)
        return slot.decision
    if slot.failure is not None:  # the proposer's reply was unusable: nothing to adopt, the parent stays
        slot.decision = Decision(False, "proposal_failed", parent_sum, parent_sum)
        return slot.decision
    if slot.perfect:
        slot.decision = Decision(False, "perfect_minibatch", parent_sum, parent_sum)
        return slot.decision
    if slot.unchanged:
        reason = "duplicate" if slot.duplicates else "unchanged"  # nothing new to roll out, or nothing at all
        slot.decision = Decision(False, reason, parent_sum, parent_sum)
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


def failure_summary(error: ProposerReplyError) -> str:
    """Why a proposal failed, with the start of what the proposer said."""
    reply = " ".join(error.raw_reply.split())
    quoted = reply[:REPLY_QUOTE_CHARS] + ("..." if len(reply) > REPLY_QUOTE_CHARS else "")
    return f"{error.message}; the reply starts: {quoted!r}" if reply else f"{error.message}; the reply was empty"


def count_proposer_call(counters: Counters, *, failed: bool) -> None:
    """Count a committed proposer call (in commit order, so the failure rules never depend on timing)."""
    counters.proposer_calls += 1
    if failed:
        counters.proposer_failures += 1
        counters.consecutive_proposer_failures += 1
    else:
        counters.consecutive_proposer_failures = 0


def check_proposer_failures(settings: SupervisorSettings, counters: Counters, last_failure: str) -> None:
    """Fail the run once failed proposals go strictly past ``proposer.max_consecutive_failures`` in a row, or past
    ``proposer.failure_tolerance`` of the calls (counted from the tenth call on)."""
    consecutive, calls, failures = (
        counters.consecutive_proposer_failures,
        counters.proposer_calls,
        counters.proposer_failures,
    )
    if consecutive > settings.proposer_max_consecutive_failures:
        rule = f"{consecutive} failed proposals in a row (proposer.max_consecutive_failures = "
        rule += f"{settings.proposer_max_consecutive_failures})"
    elif calls >= 10 and failures / calls > settings.proposer_failure_tolerance:
        rule = f"{failures} of {calls} proposals failed (proposer.failure_tolerance = "
        rule += f"{settings.proposer_failure_tolerance:g})"
    else:
        return
    raise ProposerError(
        f"the proposer keeps failing: {rule}; last: {last_failure}. Check the proposer's model, prompt budget "
        "(proposer.max_prompt_tokens) and settings, or raise the tolerance",
        proposer_calls=calls,
        proposer_failures=failures,
    )
