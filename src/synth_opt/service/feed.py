"""A request's event stream, carried through the queue's database so it reaches the API from any host.

The worker running a request reads its run's ``events.jsonl`` (on the worker's own disk) from the first line the
current attempt wrote (:class:`AttemptFeed`) and appends the new lines to the queue (``request_events``, keyed by
request, attempt and line number, each append fenced by the lease token) every :data:`PUMP_SECONDS`, and once more
after the run ends and before its outcome is written (:class:`EventPump`). ``GET /runs/{id}/events`` reads them
back from the database, so the service process needs no access to the run directory: with a PostgreSQL queue the
run may execute on another host.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import anyio

from synth_opt.errors import LeaseLostError
from synth_opt.logs import get_logger
from synth_opt.service.queue import AsyncRunQueue, RequestStatus, RunRequest

__all__ = ["PUMP_SECONDS", "AttemptFeed", "EventPump"]

PUMP_SECONDS = 0.25
BATCH_LINES = 500
_log = get_logger("synth_opt.service")

_ATTEMPT_STARTS = frozenset({"created", "resumed"})


@dataclass
class AttemptFeed:
    """Reads a run's ``events.jsonl`` for one request, from the first line its current attempt wrote.

    An attempt starts when its worker marks the request running (``started_at``); its run then writes a ``run.state``
    ``created`` (a fresh run directory) or ``resumed`` event. Until that line appears nothing is sent, so what an
    earlier attempt or an earlier request left in the run directory (the failure of a run that was started over,
    say) is not replayed as if it were this attempt's. A file that is replaced (a new inode) or cut back is read
    again from its start."""

    path: Path
    offset: int = 0
    pending: bytes = b""
    identity: tuple[int, int] | None = None
    attempt_started: float | None = None
    begun: bool = False

    def read(self, request: RunRequest) -> list[bytes]:
        started = request.started_at if request.status is not RequestStatus.QUEUED else None
        if started is None:  # no attempt is running: nothing of this request's has been written
            return []
        if started != self.attempt_started:  # a new attempt: wait for its first line
            self.attempt_started, self.begun = float(started), False
        if not self.begun:  # until the attempt's first line shows up, look from the top (the file may be replaced)
            self.offset, self.pending = 0, b""
        try:
            with self.path.open("rb") as handle:
                stat = os.fstat(handle.fileno())
                if (stat.st_dev, stat.st_ino) != self.identity or stat.st_size < self.offset:
                    self.identity, self.offset, self.pending, self.begun = (stat.st_dev, stat.st_ino), 0, b"", False
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        found: list[bytes] = []
        for line in lines:
            if line.strip() and (self.begun or self._starts_attempt(line)):
                self.begun = True
                found.append(line)
        return found

    def _starts_attempt(self, line: bytes) -> bool:
        try:
            event = json.loads(line)
            if not isinstance(event, dict) or event.get("type") != "run.state":
                return False
            fields = event.get("fields")
            if not isinstance(fields, dict) or fields.get("state") not in _ATTEMPT_STARTS:
                return False
            written = datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()
        except (ValueError, TypeError, KeyError):
            return False
        # ``ts`` has milliseconds (truncated): compare at that precision
        return math.floor(written * 1000 + 0.5) >= math.floor((self.attempt_started or 0.0) * 1000)


@dataclass
class EventPump:
    """Copies the current attempt's new feed lines into the queue. ``feed_path`` is None until the run's config is
    loaded (it names the run directory); ``started`` is the request as ``start`` returned it (its attempt and start
    time)."""

    queue: AsyncRunQueue
    started: RunRequest
    lease_token: str
    feed_path: Callable[[], Path | None]
    sent: int = 0
    feed: AttemptFeed | None = None
    unsent: list[str] = field(default_factory=list)

    async def pump(self) -> None:
        """Append what the feed gained since the last call (a lost lease raises LeaseLostError)."""
        path = self.feed_path()
        if path is None:
            return
        if self.feed is None:
            self.feed = AttemptFeed(path)
        with anyio.CancelScope(shield=True):  # the read advances the feed: its lines must reach ``unsent``
            lines = await anyio.to_thread.run_sync(self.feed.read, self.started)
            self.unsent += [line.decode("utf-8", errors="replace") for line in lines]
        while self.unsent:  # kept until appended: a failed append is retried from the same line number
            batch = self.unsent[:BATCH_LINES]
            await self.queue.append_events(
                self.started.request_id, self.lease_token, self.started.attempts, self.sent, batch
            )
            self.sent += len(batch)
            del self.unsent[: len(batch)]

    async def run(self) -> None:
        """Pump every :data:`PUMP_SECONDS` until cancelled or the lease is lost (another worker owns the request
        now); any other failed append is logged (once until an append works again) and tried again next time:
        the lines wait in :attr:`unsent`, so the stream lags but the run goes on."""
        failing = False
        while True:
            await anyio.sleep(PUMP_SECONDS)
            try:
                await self.pump()
            except LeaseLostError:
                return
            except Exception as error:
                if not failing:
                    _log.warning("could not append the run's events to the queue; retrying", error=str(error))
                failing = True
            else:
                failing = False
