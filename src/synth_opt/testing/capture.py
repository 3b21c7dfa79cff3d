"""Collect the typed events a run emits in this process, for tests (after structlog's ``capture_logs``).

::

    with capture_events() as events:
        result = GepaRun(config).run_sync()
    decisions = events.of(AcceptanceDecided)      # the payloads, typed
    assert [d.proposal_index for d in decisions] == [0, 1, 2]

Every bus of the process feeds the capture while the block is open (a run's bus, a test's own), so assertions read
payload attributes (:mod:`synth_opt.events.types`) instead of parsing ``events.jsonl``. The events are the ones the
feed stores, URL secrets redacted; a field the feed leaves out (a checkpoint's snapshot) is still there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from synth_opt.events import Event, EventPayload
from synth_opt.events.bus import observe_every_bus

__all__ = ["CapturedEvents", "capture_events"]

P = TypeVar("P", bound=EventPayload)


class CapturedEvents(list[Event]):
    """The events emitted while :func:`capture_events` was open, in emission order."""

    def of(self, cls: type[P]) -> list[P]:
        """The payloads of the events of class ``cls`` (or a subclass), in order."""
        return [event.data for event in self if isinstance(event.data, cls)]

    def first(self, cls: type[P]) -> P:
        """The payload of the first event of class ``cls``; ``LookupError`` when there is none."""
        for event in self:
            if isinstance(event.data, cls):
                return event.data
        raise LookupError(f"no {cls.TYPE} event was emitted")

    def types(self) -> list[str]:
        """The type names, in order."""
        return [event.type for event in self]


@contextmanager
def capture_events() -> Iterator[CapturedEvents]:
    """Collect every event any bus of this process emits while the block is open."""
    captured = CapturedEvents()
    stop = observe_every_bus(captured.append)
    try:
        yield captured
    finally:
        stop()
