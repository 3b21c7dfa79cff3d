"""Turning a proposer call's reported token counts into a :class:`~synth_opt.usage.Usage` with a cost.

Proposer backends report tokens, never money. The run config gives per-million-token prices; with both
prices at zero the cost is *unknown* (``cost_usd=None``), not free, so a cost limit can tell the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from synth_opt.usage import Usage

__all__ = ["TokenPrices"]


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """USD per million input (prompt) and output (completion) tokens."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0

    @property
    def known(self) -> bool:
        return self.input_per_million > 0 or self.output_per_million > 0

    def usage(self, *, prompt_tokens: int, completion_tokens: int, total_tokens: int = 0, calls: int = 1) -> Usage:
        """One call's usage; ``total_tokens`` defaults to prompt plus completion when not reported."""
        cost: float | None = None
        if self.known:
            cost = (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1e6
        return Usage(
            calls=calls,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens or prompt_tokens + completion_tokens,
            cost_usd=cost,
        )
