"""What every proposer backend provides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.usage import Usage

__all__ = ["Proposer", "ProposerResult"]


@dataclass(frozen=True, slots=True)
class ProposerResult:
    """The parsed proposals of one proposer call, with its usage (``cost_usd`` None when unknown)."""

    texts: tuple[str, ...]
    usage: Usage = field(default_factory=Usage)
    raw_text: str = ""
    duration_seconds: float = 0.0


class Proposer(Protocol):
    """One proposer backend. ``propose`` is never retried by the caller: proposer calls cost money."""

    backend: str

    async def propose(self, request: ReflectionRequest) -> ProposerResult: ...

    async def aclose(self) -> None: ...
