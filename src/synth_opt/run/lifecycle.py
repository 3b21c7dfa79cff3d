"""The run's lifecycle states: the ``run.state`` events, and the history of them a result keeps."""

from __future__ import annotations

from typing import Any

from synth_opt.events import Event, EventBus

__all__ = ["StateHistory", "emit_run_state"]


def emit_run_state(bus: EventBus, name: str, message: str | None = None, **fields: Any) -> None:
    bus.emit("run.state", message or f"state: {name}", lane="supervisor", state=name, **fields)


class StateHistory:
    """Every ``run.state`` the bus carries (the run's and the supervisor's), with when it was entered."""

    def __init__(self, bus: EventBus) -> None:
        self.entries: list[dict[str, str]] = []
        bus.on_event(self._track)

    def _track(self, event: Event) -> None:
        if event.type == "run.state":
            self.entries.append({"state": str(event.fields["state"]), "at": event.ts})
