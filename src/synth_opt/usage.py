"""Token and cost usage: one small value type shared by rollouts, proposer calls and the budget ledger."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["COST_DECIMALS", "MAX_REPLY_COST_USD", "MAX_REPLY_TOKENS", "Usage", "usage_problem"]

COST_DECIMALS = 9  # the budget ledger's precision too (gepa.budget keeps its own copy: gepa imports only itself)

# What one reply may report: no model call comes near, and a run's sums of such counts stay far inside the integers
# SQLite stores (a reply reporting more is not counted, it is refused by the caller: a failed rollout or proposal)
MAX_REPLY_TOKENS: Final = 10**9
MAX_REPLY_COST_USD: Final = 1e6


def usage_problem(
    block: Mapping[str, Any], counts: Iterable[str], costs: Iterable[str] = (), *, prefix: str = "usage."
) -> str | None:
    """Why a reply's usage block cannot be counted (``"usage.total_tokens is -1000: usage cannot be negative"``),
    or None. Values that are not numbers are not checked here (they are read as absent)."""
    for keys, bound, unit in ((counts, MAX_REPLY_TOKENS, "tokens"), (costs, MAX_REPLY_COST_USD, "USD")):
        for key in keys:
            value = block.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                return f"{prefix}{key} is {value}, not a number"
            if value < 0:
                return f"{prefix}{key} is {_shown(value)}: usage cannot be negative"
            if value > bound:
                return f"{prefix}{key} is {_shown(value)}, more than the {bound:,g} {unit} one reply may report"
    return None


def _shown(value: int | float) -> str:
    if isinstance(value, int) and abs(value) >= 10**15:
        return f"an integer of {len(str(abs(value)))} digits"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True, slots=True)
class Usage:
    """Usage of one or more external calls.

    ``cost_usd`` is None when the cost is unknown (a proposer with no configured prices); a sum with any unknown
    part is unknown (``known_cost_usd`` gives the known part, for a ledger that charges estimates instead).
    """

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = 0.0

    def __add__(self, other: Usage) -> Usage:
        if self.cost_usd is None or other.cost_usd is None:
            cost: float | None = None
        else:
            # kept to the nano-dollar (as the budget ledger is), so a total does not depend on the order of its
            # parts: a resumed run, whose counters come back from a checkpoint, sums to the uninterrupted run's total
            cost = round(self.cost_usd + other.cost_usd, COST_DECIMALS)
        return Usage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cost_usd=cost,
        )

    @property
    def known_cost_usd(self) -> float:
        return self.cost_usd or 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        cost = data.get("cost_usd")
        return cls(
            calls=int(data.get("calls", 0)),
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            completion_tokens=int(data.get("completion_tokens", 0)),
            total_tokens=int(data.get("total_tokens", 0)),
            cost_usd=None if cost is None else float(cost),
        )

    @classmethod
    def from_reply(cls, data: Any, *, calls: int = 1) -> Usage:
        """Read the usage block of a container or LLM reply, tolerating the common spellings."""
        if not isinstance(data, dict):
            return cls(calls=calls)
        prompt = _int(data, "prompt_tokens", "input_tokens")
        completion = _int(data, "completion_tokens", "output_tokens")
        total = _int(data, "total_tokens") or prompt + completion
        cost = data.get("cost_usd", data.get("cost"))
        return cls(
            calls=calls,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            cost_usd=float(cost) if isinstance(cost, int | float) else 0.0,
        )


def _int(data: dict[str, Any], *keys: str) -> int:
    for key in keys:
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return int(value)
    return 0  # (callers that count a reply check it with usage_problem first)
