"""The run's checkpoints: the supervisor offers one after every commit; this takes and persists (as a
``checkpoint.written`` event, which the workspace keeps) at most one every CHECKPOINT_INTERVAL_SECONDS."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from synth_opt.events import EventBus

__all__ = ["CHECKPOINT_INTERVAL_SECONDS", "CheckpointWriter", "emit_checkpoint"]

CHECKPOINT_INTERVAL_SECONDS = 0.5


class CheckpointWriter:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._pending: Callable[[], dict[str, Any] | None] | None = None
        self._last_at = 0.0

    def offer(self, take: Callable[[], dict[str, Any] | None]) -> None:
        """The supervisor offers a checkpoint after every commit; one is taken and persisted at most every
        CHECKPOINT_INTERVAL_SECONDS (and at the end), since resuming from any of them is exact."""
        self._pending = take
        if time.monotonic() - self._last_at >= CHECKPOINT_INTERVAL_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Take and persist the checkpoint offered last, if it is not persisted yet."""
        if self._pending is not None:
            snapshot = self._pending()
            self._pending = None
            self._last_at = time.monotonic()
            if snapshot is not None:
                emit_checkpoint(self.bus, snapshot)


def emit_checkpoint(bus: EventBus, snapshot: dict[str, Any]) -> None:
    bus.emit(
        "checkpoint.written",
        f"checkpoint after {snapshot['commits']} commits",
        lane="supervisor",
        commits=snapshot["commits"],
        generation=snapshot["commits"],
        best_candidate_id=snapshot.get("best_candidate_id"),
        candidate_count=snapshot.get("pool_size"),
        payload=snapshot,
    )
