"""Python observers of a run, as in gepa's callbacks: ``GepaRun(config, callbacks=[MyCallback()])``.

A callback is an object with any of the methods of :class:`GepaCallback` (subclass it and override what you need);
each gets the typed event (:mod:`synth_opt.events.types`):

- ``on_proposal_decided(decision)``: an :class:`AcceptanceDecided` or :class:`ProposalFailed`, in proposal order;
- ``on_frontier_updated(frontier)``: a :class:`FrontierUpdated` after the seed and every candidate that joined;
- ``on_budget_updated(budget)``: a :class:`BudgetUpdated` after every commit (rollouts used and reserved);
- ``on_run_finished(finished)``: the :class:`RunFinished` of a completed run;
- ``on_event(event)``: every :class:`~synth_opt.events.model.Event` of the run, for anything else;
- ``on_result(result)``: the :class:`~synth_opt.result.GepaResult` once written (``status`` completed, failed or
  cancelled; its paths name the run's artifacts), last.

Callbacks never stall the run (:class:`CallbackRelay`): the run hands each event to a bounded queue and goes on; one
thread of the relay's own calls the callbacks in the order of the events, each with its own copy (a callback that
changes what it is given changes nothing the run or its caller holds). An exception in a callback, even
``SystemExit`` or ``KeyboardInterrupt``, is logged (once per callback and method, with the count at the end) and the
other events still reach it. When a callback is
so slow that the queue fills, the events that do not fit are dropped for it and counted (a warning at the end says
how many). At the end of the run the relay waits at most :data:`DRAIN_SECONDS` in all for the callbacks to catch up,
so ``on_run_finished`` has normally been called when ``execute()`` returns. Something that is no callback (a
function, a class instead of an instance, an object with none of the methods) is a ``TypeError`` when the run is
made.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from synth_opt.events import Event
from synth_opt.events.types import (
    AcceptanceDecided,
    BudgetUpdated,
    FrontierUpdated,
    ProposalFailed,
    RunFinished,
)
from synth_opt.logs import get_logger
from synth_opt.result import GepaResult

__all__ = ["DRAIN_SECONDS", "QUEUE_SIZE", "CallbackRelay", "GepaCallback", "checked_callback"]

QUEUE_SIZE: Final = 10_000
"""Events waiting for the callbacks at most; more are dropped (and counted)."""
DRAIN_SECONDS: Final = 5.0
"""How long the end of a run waits for the callbacks to take the events still queued."""

_log = get_logger("synth_opt.callbacks")
_METHODS: Final[dict[str, str]] = {
    AcceptanceDecided.TYPE: "on_proposal_decided",
    ProposalFailed.TYPE: "on_proposal_decided",
    FrontierUpdated.TYPE: "on_frontier_updated",
    BudgetUpdated.TYPE: "on_budget_updated",
    RunFinished.TYPE: "on_run_finished",
}
_STOP: Final = object()


@dataclass(frozen=True, slots=True)
class _Result:
    result: GepaResult


class GepaCallback:
    """The callback methods, each doing nothing: override the ones you need (every method is optional; an object
    with only some of them works too)."""

    def on_proposal_decided(self, decision: AcceptanceDecided | ProposalFailed) -> None:
        """A proposal was decided (accepted or rejected, or failed), in proposal order."""

    def on_frontier_updated(self, frontier: FrontierUpdated) -> None:
        """The pool's fronts changed: the seed was scored, or an accepted candidate joined."""

    def on_budget_updated(self, budget: BudgetUpdated) -> None:
        """A proposal committed: what the run has used and holds reserved."""

    def on_run_finished(self, finished: RunFinished) -> None:
        """The search and the heldout evaluation are done; the result follows."""

    def on_event(self, event: Event) -> None:
        """Every event of the run (transport events included), typed in ``event.data``."""

    def on_result(self, result: GepaResult) -> None:
        """The run's result, written: completed, failed or cancelled (``result.status``)."""


class CallbackRelay:
    """Delivers a run's events to ``callbacks`` from a thread of its own (see the module's docstring).

    ``offer`` is the bus's synchronous observer (``bus.on_event(relay.offer)``): it only enqueues. ``close`` ends
    delivery, waiting at most ``drain_seconds``."""

    def __init__(
        self,
        callbacks: Sequence[object],
        *,
        queue_size: int | None = None,
        drain_seconds: float | None = None,
        copies: bool = True,
    ) -> None:
        """``copies=False`` hands every callback the run's own event objects: only for callbacks of this package
        that never change what they are given (the MLflow tracker)."""
        self.callbacks = [checked_callback(callback) for callback in callbacks]
        self.copies = copies
        self.drain_seconds = DRAIN_SECONDS if drain_seconds is None else drain_seconds
        self.dropped = 0
        self.failures: Counter[tuple[str, str]] = Counter()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_SIZE if queue_size is None else queue_size)
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        if self.callbacks and self._thread is None:
            self._thread = threading.Thread(target=self._deliver, name="synth-opt-callbacks", daemon=True)
            self._thread.start()

    def offer(self, event: Event) -> None:
        """Queue ``event`` for the callbacks; never blocks (a full queue drops it and counts it)."""
        if self._thread is None or self._closed:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def result(self, result: GepaResult) -> None:
        """Queue the run's written result (``on_result``); never blocks, like :meth:`offer`."""
        if self._thread is None or self._closed:
            return
        try:
            self._queue.put_nowait(_Result(result))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Stop taking events and let the callbacks finish what is queued, for at most ``drain_seconds``; then
        log what was dropped or failed. Blocking: call it from a worker thread in async code."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + self.drain_seconds  # one wait in all, for the queue and the thread
        try:
            self._queue.put(_STOP, timeout=self.drain_seconds)
        except queue.Full:
            pass
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            _log.warning(
                "callbacks still busy at the end of the run; not waiting for them",
                waited_seconds=self.drain_seconds,
                queued=self._queue.qsize(),
            )
        if self.dropped:
            _log.warning("callbacks were too slow: events dropped for them", dropped=self.dropped)
        for (name, method), count in sorted(self.failures.items()):
            _log.warning("a callback raised", callback=name, method=method, times=count)

    def _deliver(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, _Result):
                for callback in self.callbacks:
                    self._call(callback, "on_result", copy.deepcopy(item.result) if self.copies else item.result)
                continue
            assert isinstance(item, Event)
            method = _METHODS.get(item.type)
            for callback in self.callbacks:
                event = copy.deepcopy(item) if self.copies else item
                if method is not None:
                    self._call(callback, method, event.data)
                self._call(callback, "on_event", event)

    def _call(self, callback: object, method: str, argument: Any) -> None:
        function: Callable[[Any], object] | None = getattr(callback, method, None)
        if function is None:
            return
        try:
            function(argument)
        except BaseException as error:  # a callback's bug (even a sys.exit) never reaches the run or the others
            key = (type(callback).__name__, method)
            if not self.failures[key]:
                _log.warning(
                    "a callback raised; the run goes on",
                    callback=key[0],
                    method=method,
                    error=f"{type(error).__name__}: {error}",
                )
            self.failures[key] += 1


_CALLBACK_METHODS: Final = frozenset({*_METHODS.values(), "on_event", "on_result"})


def checked_callback(callback: object) -> object:
    """``callback`` when it is an object with at least one callback method; a TypeError saying what to pass."""
    if isinstance(callback, type):
        raise TypeError(f"callbacks: pass an instance of {callback.__name__} ({callback.__name__}()), not the class")
    if not any(callable(getattr(callback, name, None)) for name in _CALLBACK_METHODS):
        raise TypeError(
            f"callbacks: {callback!r} has none of the callback methods ({', '.join(sorted(_CALLBACK_METHODS))}); "
            "subclass synth_opt.GepaCallback and override those you need"
        )
    return callback
