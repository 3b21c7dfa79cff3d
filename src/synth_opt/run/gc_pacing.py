"""The garbage collector's pace while runs execute.

A run allocates many short-lived containers (an event's fields, a rollout's request and reply), nearly all freed
by reference counting; with CPython's default young-generation threshold (700 allocations) the cyclic collector
runs tens of thousands of times in a large run and walks a growing heap each time it reaches the old generation:
about a tenth of the engine's time at zero container latency. While at least one run executes in the process, the
young-generation threshold is raised to :data:`YOUNG_THRESHOLD` (never lowered); the previous thresholds come back
when the last run ends. Collection still happens: cycles are found, only less often.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["YOUNG_THRESHOLD", "run_paced_collector"]

YOUNG_THRESHOLD = 10_000

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def run_paced_collector() -> Iterator[None]:
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
            young, middle, old = _saved
            gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, old)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
