"""The outage circuit: transport failures of rollouts are held and tried again, never turned into outcomes by an
outage.

Every live rollout call goes through one :class:`OutageCircuit` per container. A call that ends in a *transport
failure* (:class:`~synth_opt.errors.ContainerTransportError`: nothing usable was served, after the
client's own retries) does not come back as a result. It is *held* until the circuit knows whether the container
is down or only this rollout fails:

- **Evidence.** A held rollout is tried again once another rollout that *started after its failure* was served
  (a reply or a task failure: something came back). It becomes a degraded attempt (its transport error is raised
  to the rollout actor) only after :data:`ROW_FAILURE_STRIKES` failures that were each followed by such evidence:
  one row that keeps failing while the container serves the others. Calls that started before a failure (slow
  replies still on their way when an outage begins) are never evidence.
- **Outage.** When rollouts of :data:`OUTAGE_THRESHOLD` different rows have failed with nothing served since, the
  circuit *opens*: no new rollout is sent, only probes. (Rows, not rollouts: the failures of one bad row, however
  many candidates it is tried with, never open it.)
- **Probes.** While a rollout is held or the circuit is open, one waiter at a time probes: ``GET /health`` with a
  timeout of at most :data:`HEALTH_PROBE_TIMEOUT_SECONDS`, then, if it answered, one rollout with a single attempt:
  a held one, or a *canary* (the latest rollout served on a row that is not held, sent again under a probe
  ``rollout_id``; its reply is only evidence and goes nowhere else). A served probe closes the circuit; ``/health``
  answering alone never does. Probes back off between rounds (:data:`PROBE_DELAYS_SECONDS`).
- **Verdict.** If nothing is served within ``outage_timeout_seconds`` of the first failure, every held and waiting
  rollout fails with :class:`ContainerOutageError` naming the URL; the rollout actor lets it end the run (it is
  not a degraded attempt). A probe in flight at the deadline is cut off ``request_timeout_seconds`` later, so the
  run fails within ``outage_timeout_seconds + request_timeout_seconds`` (plus the probe's few seconds) of it.

Determinism: what a rollout ends as (its reply, a task failure, or degraded) depends only on what the container
serves, never on timing. A rollout caught by an outage is sent again until it is served, so it gets the reply an
uninterrupted run got; a row that always fails is degraded after the same number of failures however fast the
evidence came. Timing decides only how many probes are spent, and probes never reach the supervisor. Events
(``container.outage``, lane ``rollout``: ``opened``, ``probing``, ``closed``, ``failed``) are transport events,
not decisions.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

import anyio
import anyio.lowlevel

from synth_opt.container.wire import RolloutReply, RolloutRequest
from synth_opt.errors import ContainerContractError, ContainerOutageError, ContainerTransportError
from synth_opt.usage import Usage

__all__ = [
    "HEALTH_PROBE_TIMEOUT_SECONDS",
    "OUTAGE_THRESHOLD",
    "PROBE_DELAYS_SECONDS",
    "ROW_FAILURE_STRIKES",
    "CircuitStats",
    "ContainerOutageError",
    "OutageCircuit",
    "Send",
]

OUTAGE_THRESHOLD: Final = 3
"""Rows whose rollouts failed with nothing served since: the circuit opens."""
ROW_FAILURE_STRIKES: Final = 3
"""Failures of one rollout, each followed by another rollout served, before it is a degraded attempt."""
HEALTH_PROBE_TIMEOUT_SECONDS: Final = 5.0
PROBE_DELAYS_SECONDS: Final = (0.25, 0.5, 1.0, 2.0)
"""Pauses between probe rounds that served nothing (the last one repeats)."""

Send = Callable[[RolloutRequest, bool], Awaitable[RolloutReply]]
"""Send one rollout: ``(request, probe)``; a probe makes a single attempt, otherwise the client's retry policy."""
HealthProbe = Callable[[float], Awaitable[object]]
"""``GET /health`` within the given seconds; raises ``ContainerContractError`` when it is not answered."""
Emit = Callable[[str, str, dict[str, Any]], None]
"""``(state, message, fields)`` of a ``container.outage`` event."""


@dataclass(slots=True)
class CircuitStats:
    """Counters for observers and tests; they never feed decisions."""

    opened: int = 0
    probe_rounds: int = 0
    health_probes: int = 0
    rollout_probes: int = 0
    canaries: int = 0
    canaries_served: int = 0
    canary_usage: Usage = field(default_factory=Usage)  # what served canaries spent: paid, then thrown away
    retried: int = 0
    degraded: int = 0


@dataclass(eq=False, slots=True)
class _Held:
    """A rollout whose last call ended in a transport failure."""

    request: RolloutRequest
    send: Send
    error: ContainerTransportError
    failed_at: int  # calls started when the failure was seen: a call served with a higher number is evidence
    failed_clock: float
    probing: bool = False
    reply: RolloutReply | None = None
    task_error: ContainerContractError | None = None

    @property
    def done(self) -> bool:
        return self.reply is not None or self.task_error is not None


@dataclass(slots=True)
class _Streak:
    """Transport failures with nothing served since the first of them."""

    after_call: int  # calls started when it began: only a call started later ends it
    began: float
    rows: dict[str, None] = field(default_factory=dict)
    failures: int = 0
    tried: set[str] = field(default_factory=set)  # rows probed in this round
    turn: int = 0
    pauses: int = 0
    last_error: ContainerTransportError | None = None


class OutageCircuit:
    """One container's circuit; safe to share between the rollout workers of one event loop."""

    def __init__(
        self,
        *,
        url: str,
        outage_timeout_seconds: float,
        request_timeout_seconds: float,
        health: HealthProbe,
        emit: Emit | None = None,
        threshold: int = OUTAGE_THRESHOLD,
        strikes: int = ROW_FAILURE_STRIKES,
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if outage_timeout_seconds <= 0 or request_timeout_seconds <= 0:
            raise ValueError("outage_timeout_seconds and request_timeout_seconds must be positive")
        if threshold < 1 or strikes < 1:
            raise ValueError("threshold and strikes must be at least 1")
        self.url = url
        self.stats = CircuitStats()
        self._outage_timeout = outage_timeout_seconds
        self._request_timeout = request_timeout_seconds
        self._health = health
        self._emit = emit
        self._threshold = threshold
        self._strikes = strikes
        self._clock = clock
        self._sleep = sleep
        self._calls = 0
        self._served_after = 0  # the highest number of a served call
        self._streak: _Streak | None = None
        self._open = False
        self._fatal: ContainerOutageError | None = None
        self._held: list[_Held] = []
        self._good: dict[str, RolloutRequest] = {}  # row -> the latest request served on it, newest last
        self._send: Send | None = None
        self._probing = False
        self._changed = anyio.Event()

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def held(self) -> int:
        return len(self._held)

    # ----------------------------------------------------------------------------------------------- the call

    async def run(self, request: RolloutRequest, send: Send) -> RolloutReply:
        """The rollout's reply, or its task failure; its transport error once it is a degraded attempt (a row
        that fails while others are served); :class:`ContainerOutageError` when the container stays down."""
        self._send = send
        strikes = 0
        while True:
            await self._wait_until(lambda: not self._open)
            try:
                return await self._call(request, send)
            except ContainerTransportError as error:
                held = _Held(request, send, error, failed_at=self._calls, failed_clock=self._clock())
            self._held.append(held)
            self._notify()
            try:
                await self._wait_until(functools.partial(self._settled, held))
            finally:
                self._held.remove(held)
            if held.reply is not None:
                return held.reply
            if held.task_error is not None:
                raise held.task_error
            strikes += 1
            if strikes >= self._strikes:
                self.stats.degraded += 1
                raise _row_failure(held, strikes)
            self.stats.retried += 1

    async def _call(
        self, request: RolloutRequest, send: Send, *, probe: bool = False, canary: bool = False
    ) -> RolloutReply:
        self._calls += 1
        number = self._calls
        try:
            reply = await send(request, probe)
        except ContainerTransportError as error:
            self._failed(request, error, held=len(self._held) + (0 if probe else 1))
            raise
        except ContainerContractError:
            self._served(number, None)
            raise
        self._served(number, None if canary else request)
        return reply

    # ------------------------------------------------------------------------------------------- bookkeeping

    def _settled(self, held: _Held) -> bool:
        """Whether a held rollout may go on: a probe served it, or another rollout was served since it failed."""
        return held.done or (not held.probing and self._evidence_for(held))

    def _evidence_for(self, held: _Held) -> bool:
        return self._served_after > held.failed_at

    def _failed(self, request: RolloutRequest, error: ContainerTransportError, *, held: int) -> None:
        streak = self._streak
        if streak is None:
            streak = self._streak = _Streak(after_call=self._calls, began=self._clock())
        streak.rows[request.task_id] = None
        streak.failures += 1
        streak.last_error = error
        if not self._open and len(streak.rows) >= self._threshold:
            self._open = True
            self.stats.opened += 1
            self._event(
                "opened",
                f"{self.url}: rollouts of {len(streak.rows)} rows failed with nothing served since; sending only "
                "probes until a rollout is served",
                failed_rollouts=streak.failures,
                failed_rows=len(streak.rows),
                held=held,
                error=error.message,
            )
        self._notify()

    def _served(self, number: int, request: RolloutRequest | None) -> None:
        self._served_after = max(self._served_after, number)
        if request is not None:
            self._good.pop(request.task_id, None)
            self._good[request.task_id] = request
        streak = self._streak
        if streak is not None and number > streak.after_call:
            self._streak = self._carried_streak()
            if self._open:
                self._open = False
                self._event(
                    "closed",
                    f"{self.url} served a rollout again; {len(self._held)} held rollouts are sent again",
                    failed_rollouts=streak.failures,
                    failed_rows=len(streak.rows),
                    held=len(self._held),
                    paused_seconds=round(self._clock() - streak.began, 3),
                )
        self._notify()

    def _carried_streak(self) -> _Streak | None:
        """What is left of a streak that a served call ended: the held rollouts that failed after that call started
        (it is no evidence for them), from the first of their failures; None when there are none."""
        waiting = [held for held in self._held if not held.done and not self._evidence_for(held)]
        if not waiting:
            return None
        streak = _Streak(
            after_call=min(held.failed_at for held in waiting), began=min(held.failed_clock for held in waiting)
        )
        for held in waiting:
            streak.rows[held.request.task_id] = None
            streak.failures += 1
            streak.last_error = held.error
        return streak

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _event(self, state: str, message: str, **fields: Any) -> None:
        if self._emit is not None:
            self._emit(state, message, {"state": state, "url": self.url, **fields})

    # ---------------------------------------------------------------------------------------------- waiting

    async def _wait_until(self, ready: Callable[[], bool]) -> None:
        """Wait for ``ready``; meanwhile lead the probes when they are needed and nobody else leads them."""
        while True:
            if self._fatal is not None:
                raise self._fatal
            if ready():
                return
            if not self._probing and self._needs_probe():
                self._probing = True
                try:
                    await self._probe_round()
                finally:
                    self._probing = False
                    self._notify()
                await anyio.lowlevel.checkpoint()
                continue
            await self._changed.wait()

    def _needs_probe(self) -> bool:
        return self._open or any(not held.done and not self._evidence_for(held) for held in self._held)

    # ----------------------------------------------------------------------------------------------- probes

    async def _probe_round(self) -> None:
        """One probe round: ``GET /health``, then one rollout if it answered; a pause when nothing was served."""
        streak = self._streak
        if streak is None:  # the failure was a straggler's, or something was served meanwhile: evidence will come
            streak = self._streak = _Streak(after_call=self._calls, began=self._clock())
        deadline = streak.began + self._outage_timeout
        if self._clock() >= deadline:
            self._fail(streak)
            return
        self.stats.probe_rounds += 1
        if self._open:
            self._event(
                "probing",
                f"{self.url}: probe round {self.stats.probe_rounds} ({len(self._held)} rollouts held)",
                round=self.stats.probe_rounds,
                held=len(self._held),
                failed_rollouts=streak.failures,
            )
        if await self._health_answers() and await self._probe_rollout(streak, deadline):
            return
        if self._streak is not streak:  # something else was served meanwhile
            return
        delay = PROBE_DELAYS_SECONDS[min(streak.pauses, len(PROBE_DELAYS_SECONDS) - 1)]
        streak.pauses += 1
        await self._sleep(max(0.0, min(delay, deadline - self._clock())))

    async def _health_answers(self) -> bool:
        self.stats.health_probes += 1
        timeout = min(HEALTH_PROBE_TIMEOUT_SECONDS, self._request_timeout)
        try:
            with anyio.fail_after(timeout):
                await self._health(timeout)
        except (ContainerContractError, TimeoutError):
            return False
        return True

    async def _probe_rollout(self, streak: _Streak, deadline: float) -> bool:
        """Send one held rollout or a canary with a single attempt; whether something was served."""
        target = self._pick(streak)
        if target is None:
            return False
        limit = max(0.0, deadline + self._request_timeout - self._clock())
        with anyio.move_on_after(limit):
            if isinstance(target, _Held):
                return await self._probe_held(target)
            return await self._canary(target)
        return False  # cut off at the deadline: the next round gives the verdict

    async def _probe_held(self, held: _Held) -> bool:
        self.stats.rollout_probes += 1
        held.probing = True
        try:
            held.reply = await self._call(held.request, held.send, probe=True)
        except ContainerTransportError as error:
            held.error, held.failed_at, held.failed_clock = error, self._calls, self._clock()
            return False
        except ContainerContractError as error:
            held.task_error = error
        finally:
            held.probing = False
        return True

    async def _canary(self, source: RolloutRequest) -> bool:
        assert self._send is not None
        self.stats.canaries += 1
        request = replace(
            source,
            rollout_id=f"{source.rollout_id}-probe-{self.stats.canaries}",
            metadata={**source.metadata, "outage_probe": True},
        )
        try:
            reply = await self._call(request, self._send, probe=True, canary=True)
        except ContainerTransportError:
            return False
        except ContainerContractError:
            return True  # served, even if not usable: the container is up
        self.stats.canaries_served += 1
        self.stats.canary_usage = self.stats.canary_usage + reply.usage
        self._event(
            "canary_served",
            f"outage probe {request.rollout_id} was served; its reply is thrown away, its usage is counted",
            rollout_id=request.rollout_id,
            usage=reply.usage.to_dict(),
        )
        return True

    def _pick(self, streak: _Streak) -> _Held | RolloutRequest | None:
        """The next probe: held rollouts (one per row) and canaries (rows served before, not held) take turns,
        each row once per round; canaries first while only one row has failed (that looks like a bad row)."""
        held_rows: dict[str, _Held] = {}
        for held in self._held:
            if not held.done and not held.probing:
                held_rows.setdefault(held.request.task_id, held)
        canaries = {row: request for row, request in reversed(self._good.items()) if row not in held_rows}
        kinds: list[dict[str, Any]] = [held_rows, canaries]
        if len(streak.rows) <= 1:
            kinds.reverse()
        for _ in range(2):
            for offset in range(2):
                kind = kinds[(streak.turn + offset) % 2]
                row = next((row for row in kind if row not in streak.tried), None)
                if row is not None:
                    streak.turn += 1
                    streak.tried.add(row)
                    picked: _Held | RolloutRequest = kind[row]
                    return picked
            streak.tried.clear()  # every row was probed in this round: start the next one
        return None

    def _fail(self, streak: _Streak) -> None:
        elapsed = self._clock() - streak.began
        last = streak.last_error.message if streak.last_error is not None else "none"
        self._fatal = ContainerOutageError(
            f"container at {self.url} served no rollout for {elapsed:.0f} s ([container] outage_timeout_seconds = "
            f"{self._outage_timeout:g}): {streak.failures} rollout calls on {len(streak.rows)} rows failed, "
            f"{self.stats.probe_rounds} probe rounds served nothing; last error: {last}; check that the container "
            "is running and reachable (see its log), or raise [container] outage_timeout_seconds",
            url=self.url,
            route="/rollout",
            failed_rollouts=streak.failures,
            failed_rows=len(streak.rows),
            outage_seconds=round(elapsed, 3),
        )
        self._event(
            "failed",
            f"{self.url} served no rollout within outage_timeout_seconds = {self._outage_timeout:g}",
            failed_rollouts=streak.failures,
            failed_rows=len(streak.rows),
            paused_seconds=round(elapsed, 3),
        )
        self._notify()


def _row_failure(held: _Held, strikes: int) -> ContainerTransportError:
    request, error = held.request, held.error
    return ContainerTransportError(
        f"{error.message}; rollout {request.rollout_id} (row {request.task_id}) failed {strikes} times while the "
        "container served other rollouts: a degraded attempt",
        **{**error.detail, "rollout_id": request.rollout_id, "task_id": request.task_id, "failures": strikes},
    )
