"""The heldout phase: the budget it holds from the start, and the final evaluation of the seed and the best.

The supervisor runs it once the search has stopped and nothing is in flight; the scores are announced in pool
order when the last evaluation arrives, so they never depend on which one finished first. Its progress (the
evaluations dispatched, the rows each takes, the scores that arrived) goes into the checkpoints, so a resume
dispatches again only the evaluations still awaited.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from synth_opt.events import EventBus
from synth_opt.events.types import BudgetWarning
from synth_opt.gepa import Amount, BudgetLedger, GepaState

__all__ = ["HeldoutPhase"]


@dataclass(slots=True)
class HeldoutPhase:
    reserved: Amount = field(default_factory=Amount)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    waiting: int = 0
    dispatched: list[str] = field(default_factory=list)  # candidate ids, in the order they were dispatched
    rows: int = 0  # heldout rows per evaluation (the first ``rows`` of the heldout ids)

    @property
    def started(self) -> bool:
        return bool(self.dispatched)

    @property
    def done(self) -> bool:
        """Every evaluation dispatched has its scores (then nothing is left to resume)."""
        return self.started and self.waiting == 0

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
            self.dispatched.append(record.candidate_id)
            self.rows = len(rows)
            dispatch(record.payload, rows)
        return self.waiting > 0

    def to_checkpoint(self) -> dict[str, Any] | None:
        """The phase's progress for a checkpoint; None before it started."""
        if not self.started:
            return None
        return {"dispatched": list(self.dispatched), "rows": self.rows, "scores": dict(self.scores)}

    def resume(
        self,
        progress: dict[str, Any],
        state: GepaState,
        heldout_ids: tuple[str, ...],
        set_state: Callable[[str], None],
        dispatch: Callable[[dict[str, str], list[str]], None],
    ) -> None:
        """Continue from a checkpoint's progress: dispatch again each evaluation without scores (its reservation
        is in the restored ledger, as it was when the checkpoint was taken)."""
        self.dispatched = [str(cid) for cid in progress["dispatched"]]
        self.rows = int(progress["rows"])
        self.scores = {str(cid): dict(scores) for cid, scores in progress["scores"].items()}
        rows = list(heldout_ids[: self.rows])
        set_state("evaluating_heldout")
        for cid in self.dispatched:
            if cid not in self.scores:
                self.waiting += 1
                dispatch(state.by_id[cid].payload, rows)

    def record(self, candidate_id: str, scores: dict[str, float]) -> bool:
        """Keep one evaluation's scores; True when it was the last one awaited."""
        self.scores[candidate_id] = scores
        self.waiting -= 1
        return self.waiting == 0
