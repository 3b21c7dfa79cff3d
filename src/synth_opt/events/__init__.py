"""Run events: the typed payloads, the event model, the fan-out bus and the JSONL feed."""

from synth_opt.events.bus import EventBus, utc_now
from synth_opt.events.model import DECISION_TYPES, Event
from synth_opt.events.types import EVENT_TYPES, UNSET, EventPayload, Stage, UnknownEvent, payload_of

__all__ = [
    "DECISION_TYPES",
    "EVENT_TYPES",
    "UNSET",
    "Event",
    "EventBus",
    "EventPayload",
    "Stage",
    "UnknownEvent",
    "payload_of",
    "utc_now",
]
