"""The event bus: numbers events, appends them to ``events.jsonl`` and fans them out to observers.

``emit`` is synchronous and never waits on an observer: each subscriber has its own bounded stream, and a
subscriber that falls behind loses events (counted in ``dropped``) instead of slowing the pipeline. The JSONL
feed is written and flushed line by line, so a crash loses at most the line being written. Every event passes
through here, so here URL secrets are redacted (:mod:`synth_opt.redact`): in the message and in every string field
but the task content, before anything stores or sees the event.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from synth_opt.errors import RunFailedError
from synth_opt.events.model import Event
from synth_opt.events.types import EVENT_TYPES, EventPayload
from synth_opt.redact import CONTENT_FIELDS, redact_text

__all__ = ["FEED_OMITTED_FIELDS", "EventBus", "observe_every_bus", "utc_now"]

# Bulky fields kept out of events.jsonl (observers such as the workspace writer still get them; a checkpoint's
# payload is stored durably in checkpoint.json before its event is emitted).
FEED_OMITTED_FIELDS: dict[str, tuple[str, ...]] = {
    name: cls.FEED_OMITTED for name, cls in EVENT_TYPES.items() if cls.FEED_OMITTED
}
OMITTED_PLACEHOLDER = "<in checkpoint.json>"


_EVERY_BUS: list[Callable[[Event], None]] = []
"""Callbacks that see the events of every bus in this process (:func:`synth_opt.testing.capture_events`)."""


def observe_every_bus(callback: Callable[[Event], None]) -> Callable[[], None]:
    """Call ``callback`` for every event any bus of this process emits from now on, until the returned function
    is called. For tests (:func:`synth_opt.testing.capture_events`); ``callback`` must be quick and not raise."""
    _EVERY_BUS.append(callback)

    def stop() -> None:
        if callback in _EVERY_BUS:
            _EVERY_BUS.remove(callback)

    return stop


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventBus:
    def __init__(self, feed_path: Path | None = None, *, clock: Callable[[], str] = utc_now) -> None:
        self._clock = clock
        self._file: IO[str] | None = feed_path.open("a", encoding="utf-8") if feed_path else None
        self._subscribers: list[tuple[MemoryObjectSendStream[Event], frozenset[str] | None]] = []
        self._callbacks: list[Callable[[Event], None]] = []
        self._path = feed_path
        self.sequence_number = 0
        self.dropped = 0
        self.write_error: OSError | None = None
        self._quiet = False

    def subscribe(
        self, capacity: int = 1024, *, types: frozenset[str] | None = None
    ) -> MemoryObjectReceiveStream[Event]:
        """A bounded stream of every event, or only of ``types`` (a display need not see each rollout)."""
        send, receive = anyio.create_memory_object_stream[Event](capacity)
        if self._quiet:
            send.close()
        else:
            self._subscribers.append((send, types))
        return receive

    def on_event(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback`` synchronously for every event (it must be quick and must not raise)."""
        self._callbacks.append(callback)

    def emit(self, payload: EventPayload, message: str, *, lane: str | None = None) -> Event:
        """Number the event ``payload`` describes (:mod:`synth_opt.events.types`), append it to the feed and hand
        it to the observers. A feed that cannot be written (a full disk) raises
        :class:`~synth_opt.errors.RunFailedError` naming the file and the OS error, for this event and every later
        one: no observer ever sees an event the feed did not store."""
        if self.write_error is not None:
            raise self._write_failure()
        self.sequence_number += 1
        type = payload.event_type
        message = redact_text(message)
        fields: dict[str, Any] = _jsonable(payload.to_fields())
        ts = self._clock()
        line: dict[str, Any] = {
            "sequence_number": self.sequence_number,
            "ts": ts,
            "type": type,
            "message": message,
            "fields": fields,
            "lane": lane,
        }
        omitted = FEED_OMITTED_FIELDS.get(type)
        if omitted:
            shown = {k: (OMITTED_PLACEHOLDER if k in omitted else v) for k, v in fields.items()}
            text = json.dumps({**line, "fields": shown}, ensure_ascii=False, allow_nan=False)
        else:
            text = json.dumps(line, ensure_ascii=False, allow_nan=False)
        event = Event(self.sequence_number, line["ts"], type, message, fields, lane, encoded=None if omitted else text)
        if self._file is not None:
            try:
                self._file.write(text + "\n")
                self._file.flush()
            except OSError as error:
                self.write_error = error
                raise self._write_failure() from None
        for callback in self._callbacks:
            callback(event)
        for callback in _EVERY_BUS:  # capture_events() in tests; empty otherwise
            callback(event)
        for stream, types in () if self._quiet else self._subscribers:
            if types is not None and type not in types:
                continue
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:
                self.dropped += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
        return event

    def sync(self) -> None:
        """Make every line written so far durable (flush and fsync ``events.jsonl``)."""
        if self.write_error is not None:
            raise self._write_failure()
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as error:
                self.write_error = error
                raise self._write_failure() from None

    def _write_failure(self) -> RunFailedError:
        error = self.write_error
        assert error is not None
        return RunFailedError(
            f"could not write {self._path}: {error.strerror or error}; free space (or fix permissions) and re-run "
            "the same config to resume from its last checkpoint",
            path=str(self._path),
        )

    def go_quiet(self) -> None:
        """Stop writing the feed and feeding observers, for good; events are still numbered and passed to the
        callbacks (a run abandoned by a service worker that lost its lease writes nothing more)."""
        self.close_subscribers()
        if self._file is not None:
            try:
                self._file.close()
            except OSError as error:
                self.write_error = self.write_error or error
            self._file = None
        self._quiet = True

    def close_subscribers(self) -> None:
        """End every observer's stream; the feed file stays open."""
        for stream, _ in self._subscribers:
            stream.close()
        self._subscribers.clear()

    def close(self) -> None:
        """End the observers' streams and close the feed. A close whose last flush fails records the error in
        ``write_error`` instead of raising (the run is ending; its caller decides what the error means)."""
        self.close_subscribers()
        if self._file is not None:
            try:
                self._file.close()
            except OSError as error:
                self.write_error = self.write_error or error
            self._file = None


def _jsonable(value: Any, redact: bool = True) -> Any:
    """``value`` as JSON can hold it, URL secrets redacted in its strings (not under :data:`CONTENT_FIELDS`)."""
    if isinstance(value, str):
        return redact_text(value) if redact else value
    if isinstance(value, dict):
        return {str(k): _jsonable(v, redact and k not in CONTENT_FIELDS) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, redact) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
