"""Run events: the typed model, the fan-out bus and the JSONL feed."""

from synth_opt.events.bus import EventBus, utc_now
from synth_opt.events.model import DECISION_TYPES, Event

__all__ = ["DECISION_TYPES", "Event", "EventBus", "utc_now"]
