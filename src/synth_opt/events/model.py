"""Typed run events and which of them are decisions.

Every event has ``sequence_number``, ``ts``, ``type``, ``message``, ``fields`` and ``lane``. Decision events are the
ones the normalized feed keeps (SPEC §9): what the search decided, never how fast or by which transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DECISION_TYPES", "Event"]

DECISION_TYPES = frozenset(
    {
        "run.config",
        "dataset.resolved",
        "seed.scored",
        "proposal.planned",
        "proposal.created",
        "candidate.scored",
        "acceptance.decided",
        "proposal.failed",
        "frontier.updated",
        "search.stopped",
        "heldout.scored",
        "run.finished",
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    sequence_number: int
    ts: str
    type: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    lane: str | None = None
    encoded: str | None = field(default=None, compare=False, repr=False)
    """The event's JSON line as ``events.jsonl`` holds it, when that is the whole event (a cache for observers
    that serialize events again, such as the workspace writer)."""

    @property
    def is_decision(self) -> bool:
        return self.type in DECISION_TYPES

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence_number": self.sequence_number,
            "ts": self.ts,
            "type": self.type,
            "message": self.message,
            "fields": self.fields,
            "lane": self.lane,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            sequence_number=int(data["sequence_number"]),
            ts=str(data["ts"]),
            type=str(data["type"]),
            message=str(data.get("message", "")),
            fields=dict(data.get("fields") or {}),
            lane=data.get("lane"),
        )
