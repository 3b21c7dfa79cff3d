"""The run's lifecycle states: the ``run.state`` events, and the history of them a result keeps."""

from __future__ import annotations

from synth_opt.events import Event, EventBus
from synth_opt.events.types import RunState

__all__ = ["StateHistory", "emit_run_state"]


def emit_run_state(bus: EventBus, state: RunState, message: str | None = None) -> None:
    bus.emit(state, message or f"state: {state.state}", lane="supervisor")


class StateHistory:
    """Every ``run.state`` the bus carries (the run's and the supervisor's), with when it was entered."""

    def __init__(self, bus: EventBus) -> None:
        self.entries: list[dict[str, str]] = []
        bus.on_event(self._track)

    def _track(self, event: Event) -> None:
        state = event.data_as(RunState)
        if state is not None:
            self.entries.append({"state": str(state.state), "at": event.ts})
