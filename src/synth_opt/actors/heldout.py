"""The heldout phase: the budget it holds from the start, and the final evaluation of the seed and the best.

The supervisor runs it once the search has stopped and nothing is in flight; the scores are announced in pool
order when the last evaluation arrives, so they never depend on which one finished first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from synth_opt.events import EventBus
from synth_opt.events.types import BudgetWarning
from synth_opt.gepa import Amount, BudgetLedger, GepaState

__all__ = ["HeldoutPhase"]


@dataclass(slots=True)
class HeldoutPhase:
    reserved: Amount = field(default_factory=Amount)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    waiting: int = 0

    def reserve(self, ledger: BudgetLedger, bus: EventBus, heldout_ids: tuple[str, ...]) -> None:
        """Hold the final heldout evaluation's cost and tokens from the start, so the search cannot spend them."""
        rows = min(2 * len(heldout_ids), ledger.limits.heldout_rollouts)
        if not rows:
            return
        amount = ledger.estimate(heldout=rows)
        refused = ledger.reserve(amount)
        if refused is None:
            self.reserved = amount
        else:
            bus.emit(
                BudgetWarning(refused),
                f"{refused} leaves no room for the heldout evaluation of {rows} rollouts; it gets what is left",
                lane="supervisor",
            )

    def release(self, ledger: BudgetLedger) -> None:
        """Give back what :meth:`reserve` held."""
        ledger.settle(self.reserved, Amount())
        self.reserved = Amount()

    def start(
        self,
        state: GepaState,
        ledger: BudgetLedger,
        heldout_ids: tuple[str, ...],
        set_state: Callable[[str], None],
        dispatch: Callable[[dict[str, str], list[str]], None],
    ) -> bool:
        """Swap the held reservation for one per evaluation and dispatch them (the seed, and the best when it is
        another candidate) as far as the budget allows; False when nothing was dispatched."""
        seed, best = state.pool[0], state.best()
        targets = [seed] if best.candidate_id == seed.candidate_id else [seed, best]
        ids = list(heldout_ids)
        per_candidate = min(len(ids), ledger.limits.heldout_rollouts // len(targets))
        self.release(ledger)
        if per_candidate <= 0:
            return False
        rows = ids[:per_candidate]
        set_state("evaluating_heldout")
        for record in targets:
            refused = ledger.reserve(ledger.estimate(heldout=len(rows)))
            if refused is not None:
                break
            self.waiting += 1
            dispatch(record.payload, rows)
        return self.waiting > 0

    def record(self, candidate_id: str, scores: dict[str, float]) -> bool:
        """Keep one evaluation's scores; True when it was the last one awaited."""
        self.scores[candidate_id] = scores
        self.waiting -= 1
        return self.waiting == 0
