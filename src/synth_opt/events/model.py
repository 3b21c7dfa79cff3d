"""Typed run events and which of them are decisions.

Every event has ``sequence_number``, ``ts``, ``type``, ``message``, ``fields`` and ``lane``. Decision events are the
ones the normalized feed keeps (SPEC §9): what the search decided, never how fast or by which transport.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from synth_opt.events.types import EventPayload, UnknownEvent, decision_types, payload_of

__all__ = ["DECISION_TYPES", "Event"]

P = TypeVar("P", bound=EventPayload)

DECISION_TYPES = decision_types()
"""The decision events' type names: the payload classes that say ``DECISION`` (:mod:`synth_opt.events.types`)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its envelope (number, time, type, message, lane), its ``fields`` as the feed holds them, and
    ``data``, the same fields as the typed payload of its type (:mod:`synth_opt.events.types`; an
    :class:`~synth_opt.events.types.UnknownEvent` for a type no class claims)."""

    sequence_number: int
    ts: str
    type: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    lane: str | None = None
    encoded: str | None = field(default=None, compare=False, repr=False)
    """The event's JSON line as ``events.jsonl`` holds it, when that is the whole event (a cache for observers
    that serialize events again, such as the workspace writer)."""
    _data: EventPayload | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def data(self) -> EventPayload:
        """The typed payload (read from ``fields`` the first time it is asked for)."""
        data = self._data
        if data is None:
            data = payload_of(self.type, self.fields)
            object.__setattr__(self, "_data", data)
        return data

    def data_as(self, cls: builtins.type[P]) -> P | None:
        """``data`` when this event is of ``cls``'s type, else None, without reading the payload of any other
        event (for an observer called on every event that follows a few types: ``bus.on_event`` callbacks)."""
        if self.type != cls.TYPE:
            return None
        data = self.data
        return data if isinstance(data, cls) else None

    def read_partially(self) -> Event:
        """This event, or, when its fields are fewer than its type's class has (an older feed, a hand-made event),
        a copy whose ``data`` is that class read partially: the missing fields are None whatever their annotation
        (:meth:`~synth_opt.events.types.EventPayload.from_fields`). An event without one of its type's key fields
        stays as it is (an :class:`~synth_opt.events.types.UnknownEvent`)."""
        if not isinstance(self.data, UnknownEvent):
            return self
        data = payload_of(self.type, self.fields, partial=True)
        if isinstance(data, UnknownEvent):
            return self
        copy = replace(self)
        object.__setattr__(copy, "_data", data)
        return copy

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
        """An event as ``to_json`` (a line of ``events.jsonl``) gives it, its typed payload in ``data``."""
        return cls(
            sequence_number=int(data["sequence_number"]),
            ts=str(data["ts"]),
            type=str(data["type"]),
            message=str(data.get("message", "")),
            fields=dict(data.get("fields") or {}),
            lane=data.get("lane"),
        )
