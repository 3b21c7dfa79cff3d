"""Standing replicas of one container (``[container] urls``): each rollout goes to the least busy healthy replica.

A :class:`ReplicaSet` answers every route the run uses, as one :class:`~synth_opt.container.client.ContainerClient`
does, over one client per replica:

- **Routing.** A rollout goes to the healthy replica that should finish it first: the fewest rollouts in flight,
  weighted by how much slower than the fastest replica its rollouts have been (``(in flight + 1) x`` the ratio of
  its moving average of rollout durations to the fastest's, counted as 1 within :data:`SIMILAR`, so that noise
  starves no replica; a replica with no history yet counts as fast; ties to the earlier URL in the list). A slow
  replica is so sent fewer rollouts in proportion, even when a batch starts with every replica idle. The other
  routes (``/health``, metadata, the start-up check, ``/taskset``, ``/program``) go to the first
  healthy replica.
- **Taking a replica out.** A rollout that ends in a transport failure on a replica (nothing served, after the
  client's retries) takes that replica out: no rollout is routed to it until a background probe (``GET /health``
  at :data:`PROBE_DELAYS_SECONDS`, the last repeating) sees it answer again, and a ``container.replica`` event says
  so each way. The failed rollout itself goes back to the set's one outage circuit
  (:mod:`~synth_opt.container.circuit`; ``outage_timeout_seconds`` always sets one in a run), which holds it and
  sends it again, to a replica it has not failed on while there is one: so a replica that answers ``/health`` but
  fails rollouts cannot strike one rollout three times and make it a degraded attempt.
- **Failing.** Only when no replica is healthy does a rollout fail at once, and then the outage circuit's rules
  apply to the set as to one container: it probes every replica, and fails the run with
  :class:`~synth_opt.errors.ContainerOutageError` only if none serves within ``outage_timeout_seconds``.
- **One container.** At start-up every reachable replica must report the same ``/program`` and ``/taskset``
  (:meth:`ReplicaSet.check_identical`); a mismatch is a :class:`~synth_opt.errors.ContainerContractError` naming
  both URLs. A replica unreachable at start-up is taken out (and probed back in); none reachable fails the run.

Decisions stay timing-independent: which replica serves a rollout changes nothing in its reply (the replicas are
one program), and a rollout lost with a replica is sent again until served, as a single container's is through an
outage. A run over one replica and over four makes the same decisions.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup

from synth_opt.container.circuit import Emit, OutageCircuit
from synth_opt.container.client import ContainerClient
from synth_opt.container.wire import ProgramInfo, RolloutReply, RolloutRequest, TasksetInfo
from synth_opt.errors import ContainerContractError, ContainerTransportError

__all__ = ["PROBE_DELAYS_SECONDS", "Replica", "ReplicaSet"]

PROBE_DELAYS_SECONDS: Final = (0.25, 0.5, 1.0, 2.0)
"""Pauses between health probes of a replica that is out (the last one repeats)."""
PROBE_TIMEOUT_SECONDS: Final = 5.0
SMOOTHING: Final = 0.2
"""The weight of the latest rollout's duration in a replica's moving average."""
SIMILAR: Final = 1.5
"""Replicas whose average durations are within this factor of the fastest's count as equally fast."""

ReplicaEmit = Callable[[str, str, str], None]
"""``(url, state, reason)`` of a ``container.replica`` event: ``out`` or ``in``."""


@dataclass(slots=True)
class Replica:
    """One replica: its client, whether it takes rollouts, and how many it has in flight."""

    index: int
    client: ContainerClient
    healthy: bool = True
    in_flight: int = 0
    served: int = 0
    taken_out: int = 0
    seconds: float | None = None
    """A moving average of its served rollouts' durations (None before the first)."""
    probing: bool = field(default=False, repr=False)

    def took(self, seconds: float) -> None:
        self.served += 1
        self.seconds = seconds if self.seconds is None else (1 - SMOOTHING) * self.seconds + SMOOTHING * seconds

    @property
    def url(self) -> str:
        return self.client.url


class ReplicaSet:
    """The replicas as one container; an async context manager (it runs the probes of replicas taken out)."""

    def __init__(
        self,
        clients: Sequence[ContainerClient],
        *,
        outage_timeout_seconds: float | None,
        request_timeout_seconds: float,
        outage_events: Emit | None = None,
        replica_events: ReplicaEmit | None = None,
        sleep: Callable[[float], Any] = anyio.sleep,
    ) -> None:
        if not clients:
            raise ValueError("a replica set needs at least one replica")
        self.replicas = [Replica(index, client) for index, client in enumerate(clients)]
        self.url = ", ".join(replica.url for replica in self.replicas)
        self._emit = replica_events
        self._sleep = sleep
        self._failed_on: dict[str, frozenset[int]] = {}
        """The replicas each held rollout failed on: it is sent again to another one while another is healthy (a
        replica that answers ``/health`` but fails rollouts must not be the one every retry lands on)."""
        self._tg: TaskGroup | None = None
        self.circuit: OutageCircuit | None = None
        if outage_timeout_seconds is not None:
            self.circuit = OutageCircuit(
                url=self.url,
                outage_timeout_seconds=outage_timeout_seconds,
                request_timeout_seconds=request_timeout_seconds,
                health=self._probe_any,
                emit=outage_events,
            )

    async def __aenter__(self) -> ReplicaSet:
        self._tg = await anyio.create_task_group().__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        tg, self._tg = self._tg, None
        try:
            tg.cancel_scope.cancel()  # the probes of replicas still out
            await tg.__aexit__(None, None, None)  # the caller's error is the caller's: it goes on past this
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            for replica in self.replicas:
                await replica.client.aclose()

    # -- routing ------------------------------------------------------------------------------------------------

    def _least_busy(self, avoid: frozenset[int] = frozenset()) -> Replica | None:
        """The healthy replica expected to finish a new rollout first (see the module's routing rule), other than
        those in ``avoid`` (the replicas this rollout already failed on) while another one is healthy."""
        healthy = [replica for replica in self.replicas if replica.healthy]
        fresh = [replica for replica in healthy if replica.index not in avoid]
        fastest = min((replica.seconds for replica in healthy if replica.seconds), default=None)

        def expected(replica: Replica) -> tuple[float, int, int]:
            slowness = 1.0  # no history yet, or within SIMILAR of the fastest: as fast (noise must not starve it)
            if fastest and replica.seconds and replica.seconds > SIMILAR * fastest:
                slowness = replica.seconds / fastest
            return ((replica.in_flight + 1) * slowness, replica.in_flight, replica.index)

        return min(fresh or healthy, key=expected, default=None)

    def _take_out(self, replica: Replica, reason: str) -> None:
        if not replica.healthy:
            return
        replica.healthy = False
        replica.taken_out += 1
        if self._emit is not None:
            self._emit(replica.url, "out", reason)
        if not replica.probing and self._tg is not None:
            replica.probing = True
            self._tg.start_soon(self._probe_back, replica)

    def _bring_in(self, replica: Replica) -> None:
        if replica.healthy:
            return
        replica.healthy = True
        if self._emit is not None:
            self._emit(replica.url, "in", "it answers GET /health again")

    async def _probe_back(self, replica: Replica) -> None:
        """Probe a replica that is out until it answers ``GET /health``; then it takes rollouts again."""
        try:
            for attempt in itertools.count():
                await self._sleep(PROBE_DELAYS_SECONDS[min(attempt, len(PROBE_DELAYS_SECONDS) - 1)])
                if replica.healthy or await self._answers(replica):
                    self._bring_in(replica)
                    return
        finally:
            replica.probing = False

    async def _answers(self, replica: Replica) -> bool:
        try:
            await replica.client.probe_health(PROBE_TIMEOUT_SECONDS)
        except ContainerContractError:
            return False
        return True

    async def _probe_any(self, within_seconds: float) -> None:
        """The outage circuit's probe: ``GET /health`` of every replica at once, those that answer brought back in;
        raises (the first replica's error) when none is healthy."""
        errors: dict[int, ContainerContractError] = {}

        async def probe(replica: Replica) -> None:
            try:
                await replica.client.probe_health(within_seconds)
            except ContainerContractError as error:
                errors[replica.index] = error
                return
            self._bring_in(replica)

        async with anyio.create_task_group() as tg:  # all at once: a round lasts one probe, not one per replica
            for replica in self.replicas:
                tg.start_soon(probe, replica)
        if all(not replica.healthy for replica in self.replicas):
            raise errors[min(errors)]

    # -- rollouts -----------------------------------------------------------------------------------------------

    async def rollout(
        self,
        request: RolloutRequest,
        *,
        poll_interval_seconds: float = 0.25,
        async_timeout_seconds: float = 600.0,
    ) -> RolloutReply:
        """One rollout on the least busy healthy replica; through the set's outage circuit when it has one."""
        send = functools.partial(
            self._send, poll_interval_seconds=poll_interval_seconds, async_timeout_seconds=async_timeout_seconds
        )
        if self.circuit is None:
            return await send(request, False)
        return await self.circuit.run(request, send)

    async def _send(
        self, request: RolloutRequest, probe: bool, *, poll_interval_seconds: float, async_timeout_seconds: float
    ) -> RolloutReply:
        failed_on = self._failed_on.get(request.rollout_id, frozenset())
        replica = self._least_busy(failed_on)
        if replica is None:
            raise ContainerTransportError(
                f"no replica of the container is healthy ({self.url}); each is probed with GET /health until it "
                "answers: check that the replicas are running",
                url=self.url,
                route="/rollout",
            )
        replica.in_flight += 1
        started = time.monotonic()
        try:
            reply = await replica.client.send_rollout(
                request,
                probe=probe,
                poll_interval_seconds=poll_interval_seconds,
                async_timeout_seconds=async_timeout_seconds,
            )
        except ContainerTransportError as error:
            self._take_out(replica, error.message)
            self._failed_on[request.rollout_id] = failed_on | {replica.index}
            raise
        finally:
            replica.in_flight -= 1
        self._failed_on.pop(request.rollout_id, None)
        replica.took(time.monotonic() - started)
        return reply

    # -- the other routes ---------------------------------------------------------------------------------------

    async def _first_healthy(self, call: Callable[[ContainerClient], Any]) -> Any:
        """``call`` on the first healthy replica; a transport failure takes it out and the next one is asked."""
        last: ContainerTransportError | None = None
        for replica in self.replicas:
            if not replica.healthy:
                continue
            try:
                return await call(replica.client)
            except ContainerTransportError as error:
                self._take_out(replica, error.message)
                last = error
        if last is not None:
            raise last
        raise ContainerTransportError(
            f"no replica of the container is healthy ({self.url}); check that the replicas are running",
            url=self.url,
        )

    async def health(self) -> dict[str, Any]:
        """``GET /health`` of every replica: those that do not answer are taken out (and probed back in); the
        first answer, or the first replica's error when none answers."""
        answers: list[dict[str, Any]] = []
        first: ContainerContractError | None = None
        for replica in self.replicas:
            try:
                answers.append(await replica.client.health())
            except ContainerTransportError as error:
                self._take_out(replica, error.message)
                first = first or error
        if not answers:
            assert first is not None
            raise first
        return answers[0]

    async def metadata(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = await self._first_healthy(lambda client: client.metadata())
        return value

    async def check(self, policy: Mapping[str, Any]) -> dict[str, Any] | None:
        value: dict[str, Any] | None = await self._first_healthy(lambda client: client.check(policy))
        return value

    async def task_info(self) -> str | None:
        value: str | None = await self._first_healthy(lambda client: client.task_info())
        return value

    async def taskset(self) -> TasksetInfo:
        value: TasksetInfo = await self._first_healthy(lambda client: client.taskset())
        return value

    async def program(self) -> ProgramInfo:
        value: ProgramInfo = await self._first_healthy(lambda client: client.program())
        return value

    async def tasks(self, split: str, task_ids: Sequence[str]) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = await self._first_healthy(lambda client: client.tasks(split, task_ids))
        return value

    async def check_identical(self) -> None:
        """Every healthy replica reports the first one's ``/program`` and ``/taskset``, or a
        :class:`ContainerContractError` names the two that differ."""
        healthy = [replica for replica in self.replicas if replica.healthy]
        if len(healthy) < 2:
            return
        first = healthy[0]
        program, taskset = await first.client.program(), await first.client.taskset()
        for replica in healthy[1:]:
            for route, mine, theirs in (
                ("GET /program", program, await replica.client.program()),
                ("GET /taskset", taskset, await replica.client.taskset()),
            ):
                if mine != theirs:
                    raise ContainerContractError(
                        f"container replicas {first.url} and {replica.url} report different {route}: "
                        "[container] urls must list replicas of one container (the same program and tasks); "
                        "deploy the same version to every replica",
                        url=replica.url,
                        route=route,
                        first_url=first.url,
                    )
