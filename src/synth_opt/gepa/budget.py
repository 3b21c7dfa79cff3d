"""The budget ledger: reservations before dispatch, settlement after.

Work is reserved at its worst case before it is dispatched and settled with its actual amounts later, so a hard
limit is never exceeded: work whose reservation does not fit is not started, and the ledger names the limit that
refused it. The ledger holds no clock: callers pass elapsed seconds for the time limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Amount", "BudgetLedger", "Estimates", "Limits"]

COST_DECIMALS = 9  # costs are kept to the nano-dollar, so reserving and settling never drift


def _cost(value: float) -> float:
    return round(value, COST_DECIMALS)


@dataclass(frozen=True, slots=True)
class Amount:
    train_rollouts: int = 0
    heldout_rollouts: int = 0
    proposer_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Amount) -> Amount:
        return Amount(
            self.train_rollouts + other.train_rollouts,
            self.heldout_rollouts + other.heldout_rollouts,
            self.proposer_calls + other.proposer_calls,
            self.tokens + other.tokens,
            _cost(self.cost_usd + other.cost_usd),
        )

    def __sub__(self, other: Amount) -> Amount:
        return Amount(
            self.train_rollouts - other.train_rollouts,
            self.heldout_rollouts - other.heldout_rollouts,
            self.proposer_calls - other.proposer_calls,
            self.tokens - other.tokens,
            _cost(self.cost_usd - other.cost_usd),
        )

    @property
    def rollouts(self) -> int:
        return self.train_rollouts + self.heldout_rollouts

    def to_json(self) -> dict[str, Any]:
        return {
            "train_rollouts": self.train_rollouts,
            "heldout_rollouts": self.heldout_rollouts,
            "proposer_calls": self.proposer_calls,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Amount:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits; ``train_cap_key`` is the config key reported when the train cap stops the search."""

    train_rollouts: int
    heldout_rollouts: int
    total_rollouts: int | None = None
    cost_usd: float | None = None
    total_tokens: int | None = None
    time_seconds: float | None = None
    train_cap_key: str = "max_total_rollouts"


@dataclass(frozen=True, slots=True)
class Estimates:
    proposer_cost_usd: float = 0.0
    proposer_tokens: int = 0
    proposer_seconds: float = 0.0
    rollout_cost_usd: float = 0.0
    rollout_tokens: int = 0
    rollout_seconds: float = 0.0


@dataclass(slots=True)
class BudgetLedger:
    limits: Limits
    estimates: Estimates = field(default_factory=Estimates)
    used: Amount = field(default_factory=Amount)
    reserved: Amount = field(default_factory=Amount)

    def estimate(self, *, train: int = 0, heldout: int = 0, proposer_calls: int = 0) -> Amount:
        est = self.estimates
        rollouts = train + heldout
        return Amount(
            train_rollouts=train,
            heldout_rollouts=heldout,
            proposer_calls=proposer_calls,
            tokens=rollouts * est.rollout_tokens + proposer_calls * est.proposer_tokens,
            cost_usd=_cost(rollouts * est.rollout_cost_usd + proposer_calls * est.proposer_cost_usd),
        )

    def refusal(self, amount: Amount, *, elapsed_seconds: float = 0.0) -> str | None:
        """The config key of the first limit that ``amount`` would break, or None when it fits."""
        lim, after = self.limits, self.used + self.reserved + amount
        if amount.train_rollouts and after.train_rollouts > lim.train_rollouts:
            return lim.train_cap_key
        if amount.heldout_rollouts and after.heldout_rollouts > lim.heldout_rollouts:
            return "max_heldout_rollouts"
        if lim.total_rollouts is not None and amount.rollouts and after.rollouts > lim.total_rollouts:
            return "max_total_rollouts"
        if lim.total_tokens is not None and amount.tokens and after.tokens > lim.total_tokens:
            return "max_total_tokens"
        if lim.cost_usd is not None and amount.cost_usd and after.cost_usd > lim.cost_usd:
            return "max_cost_usd"
        if lim.time_seconds is not None:
            est = self.estimates
            seconds = amount.rollouts * est.rollout_seconds + amount.proposer_calls * est.proposer_seconds
            if elapsed_seconds + seconds > lim.time_seconds:
                return "max_time_seconds"
        return None

    def reserve(self, amount: Amount, *, elapsed_seconds: float = 0.0) -> str | None:
        """Reserve ``amount``; returns None on success, else the key of the limit that refused it."""
        refused = self.refusal(amount, elapsed_seconds=elapsed_seconds)
        if refused is None:
            self.reserved = self.reserved + amount
        return refused

    def settle(self, reserved: Amount, actual: Amount) -> None:
        """Release a reservation and record what the work actually used."""
        self.reserved = self.reserved - reserved
        self.used = self.used + actual

    def remaining_train(self) -> int:
        return self.limits.train_rollouts - self.used.train_rollouts - self.reserved.train_rollouts

    def to_json(self) -> dict[str, Any]:
        return {"used": self.used.to_json(), "reserved": self.reserved.to_json()}

    def restored(self, data: dict[str, Any]) -> BudgetLedger:
        return replace(self, used=Amount.from_json(data["used"]), reserved=Amount.from_json(data["reserved"]))
