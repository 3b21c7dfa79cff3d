"""Turning a proposer call's reported token counts into a :class:`~synth_opt.usage.Usage` with a cost.

Proposer backends report tokens, never money. The run config gives per-million-token prices; with neither
price set the cost is *unknown* (``cost_usd=None``), and ``0`` means free, so a cost limit can tell the two
apart (a price left unset beside a set one counts as free).
"""

from __future__ import annotations

from dataclasses import dataclass

from synth_opt.usage import Usage

__all__ = ["TokenPrices"]


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """USD per million input (prompt) and output (completion) tokens."""

    input_per_million: float | None = None
    output_per_million: float | None = None

    @property
    def known(self) -> bool:
        return self.input_per_million is not None or self.output_per_million is not None

    def usage(self, *, prompt_tokens: int, completion_tokens: int, total_tokens: int = 0, calls: int = 1) -> Usage:
        """One call's usage; ``total_tokens`` defaults to prompt plus completion when not reported."""
        cost: float | None = None
        if self.known:
            cost = (
                prompt_tokens * (self.input_per_million or 0.0) + completion_tokens * (self.output_per_million or 0.0)
            ) / 1e6
        return Usage(
            calls=calls,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens or prompt_tokens + completion_tokens,
            cost_usd=cost,
        )
