"""The outage circuit without sockets: a scripted container, a clock that moves only when the circuit sleeps, and the
client's two kinds of failure over in-memory transports."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from synth_opt.config import load_config
from synth_opt.container.circuit import ContainerOutageError, OutageCircuit
from synth_opt.container.client import ContainerClient, RetryPolicy
from synth_opt.container.replies import ContainerTransportError
from synth_opt.container.wire import RolloutReply, RolloutRequest
from synth_opt.errors import ConfigError, ContainerContractError

URL = "http://container.test"


def request(row: str, candidate: str = "c1") -> RolloutRequest:
    return RolloutRequest(
        rollout_id=f"{candidate}-{row}",
        submission_mode="sync",
        task_id=row,
        candidate_id=candidate,
        candidate={"instruction": candidate},
        policy={},
        task={"task_id": row},
        metadata={},
    )


def transport_error(row: str) -> ContainerTransportError:
    return ContainerTransportError(f"container at {URL} failed POST /rollout for {row}: HTTP 500", url=URL)


@dataclass
class Container:
    """What the container serves, switched by the test: everything down, some rows failing, some rows' replies
    unusable. It records every rollout call and whether the circuit was open when it was sent."""

    down: bool = False
    health_down: bool | None = None  # None: like ``down``
    bad_rows: set[str] = field(default_factory=set)
    unusable_rows: set[str] = field(default_factory=set)
    calls: list[tuple[str, bool, bool]] = field(default_factory=list)  # (rollout_id, probe, circuit open)
    health_calls: int = 0
    circuit: OutageCircuit | None = None
    jitter: random.Random | None = None  # yields a random number of times per call, to vary the interleaving

    async def send(self, sent: RolloutRequest, probe: bool) -> RolloutReply:
        self.calls.append((sent.rollout_id, probe, self.circuit is not None and self.circuit.is_open))
        await anyio.lowlevel.checkpoint()
        if self.jitter is not None:
            for _ in range(self.jitter.randrange(4)):
                await anyio.lowlevel.checkpoint()
        if self.down or sent.task_id in self.bad_rows:
            raise transport_error(sent.task_id)
        if sent.task_id in self.unusable_rows:
            raise ContainerContractError(f"container at {URL} (/rollout) sent an invalid reply", url=URL)
        return RolloutReply(rollout_id=sent.rollout_id, status="completed", reward=1.0)

    async def health(self, within_seconds: float) -> None:
        assert within_seconds <= 5.0
        self.health_calls += 1
        await anyio.lowlevel.checkpoint()
        if self.down if self.health_down is None else self.health_down:
            raise ContainerContractError(f"container at {URL} failed GET /health", url=URL)

    def sent(self, rollout_id: str, *, probe: bool | None = None) -> int:
        return sum(1 for got, was_probe, _ in self.calls if got == rollout_id and probe in (None, was_probe))


class Clock:
    """Time moves only when the circuit sleeps; ``at`` runs callbacks once the clock reaches their time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.at: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        for when, action in list(self.at):
            if self.now >= when:
                self.at.remove((when, action))
                action()
        await anyio.lowlevel.checkpoint()


def circuit_for(
    container: Container, clock: Clock, *, outage: float = 30.0, request_timeout: float = 10.0, **kwargs: Any
) -> tuple[OutageCircuit, list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    circuit = OutageCircuit(
        url=URL,
        outage_timeout_seconds=outage,
        request_timeout_seconds=request_timeout,
        health=container.health,
        emit=lambda state, _message, fields: events.append((state, fields)),
        clock=clock,
        sleep=clock.sleep,
        **kwargs,
    )
    container.circuit = circuit
    return circuit, events


async def run_all(circuit: OutageCircuit, container: Container, rows: list[str]) -> dict[str, Any]:
    """Run one rollout per row at once; each row's reply or error."""
    outcomes: dict[str, Any] = {}

    async def one(row: str) -> None:
        try:
            outcomes[row] = await circuit.run(request(row), container.send)
        except ContainerContractError as error:
            outcomes[row] = error

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for row in rows:
                group.start_soon(one, row)
    return outcomes


# ------------------------------------------------------------------------------------------------- outages


@pytest.mark.anyio
async def test_an_outage_that_ends_holds_every_rollout_and_then_serves_each_of_them() -> None:
    container, clock = Container(down=True), Clock()
    circuit, events = circuit_for(container, clock)
    clock.at.append((3.0, lambda: setattr(container, "down", False)))
    outcomes = await run_all(circuit, container, ["a", "b", "c", "d", "e"])
    assert all(isinstance(outcome, RolloutReply) for outcome in outcomes.values()), outcomes
    states = [state for state, _ in events]
    assert states[0] == "opened" and states[-1] == "closed" and "probing" in states
    assert all(fields["url"] == URL for _, fields in events)
    # while open, only probes went out (single attempts); /health answering alone closed nothing
    assert all(probe for _, probe, was_open in container.calls if was_open)
    assert not circuit.is_open and circuit.held == 0


@pytest.mark.anyio
async def test_health_answering_does_not_close_the_circuit_and_an_outage_never_degrades() -> None:
    """Every rollout fails with a 5xx while ``/health`` answers: one rollout, alone, must not come back degraded."""
    container, clock = Container(down=True, health_down=False), Clock()
    circuit, events = circuit_for(container, clock, outage=20.0, request_timeout=4.0)
    with anyio.fail_after(30), pytest.raises(ContainerOutageError) as caught:
        await circuit.run(request("a"), container.send)
    assert URL in caught.value.message and "outage_timeout_seconds" in caught.value.message
    assert 20.0 <= clock.now <= 20.0 + 4.0
    assert container.health_calls > 1
    assert [state for state, _ in events][-1] == "failed"


@pytest.mark.anyio
async def test_a_permanent_outage_fails_every_waiting_rollout_within_the_timeouts() -> None:
    container, clock = Container(down=True), Clock()
    circuit, _ = circuit_for(container, clock, outage=12.0, request_timeout=3.0)
    outcomes = await run_all(circuit, container, ["a", "b", "c", "d"])
    assert all(isinstance(outcome, ContainerOutageError) for outcome in outcomes.values()), outcomes
    assert clock.now <= 12.0 + 3.0
    with pytest.raises(ContainerOutageError):  # and a rollout that comes later fails at once
        await circuit.run(request("e"), container.send)


@pytest.mark.anyio
async def test_a_reply_that_started_before_the_failures_is_no_evidence() -> None:
    """A slow reply still on its way when the outage began is served after a failure: the failed rollout must not
    count it as the container serving others (it would come back degraded, here after one such failure)."""
    container, clock = Container(), Clock()
    circuit, _ = circuit_for(container, clock, outage=10.0, strikes=1)
    release = anyio.Event()
    outcome: dict[str, Any] = {}

    async def slow(sent: RolloutRequest, probe: bool) -> RolloutReply:
        await release.wait()
        return RolloutReply(rollout_id=sent.rollout_id, status="completed", reward=1.0)

    failed = anyio.Event()

    async def send_b(sent: RolloutRequest, probe: bool) -> RolloutReply:
        try:
            return await container.send(sent, probe)
        finally:
            failed.set()

    async def failing() -> None:
        try:
            outcome["b"] = await circuit.run(request("b"), send_b)
        except ContainerContractError as error:
            outcome["b"] = error

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(circuit.run, request("a"), slow)
            await anyio.lowlevel.checkpoint()
            container.down = True
            group.start_soon(failing)
            await failed.wait()
            release.set()
    assert isinstance(outcome["b"], ContainerOutageError), outcome


# ------------------------------------------------------------------------------------- one row that fails


@pytest.mark.anyio
async def test_a_row_that_always_fails_alone_is_degraded_after_a_fixed_number_of_tries() -> None:
    container, clock = Container(bad_rows={"x"}), Clock()
    circuit, events = circuit_for(container, clock)
    assert isinstance(await circuit.run(request("a"), container.send), RolloutReply)
    with anyio.fail_after(30), pytest.raises(ContainerTransportError) as caught:
        await circuit.run(request("x"), container.send)
    assert not isinstance(caught.value, ContainerOutageError)
    assert "failed 3 times while the container served other rollouts" in caught.value.message
    assert container.sent("c1-x", probe=False) == 3
    assert circuit.stats.canaries >= 3  # the evidence came from probes of another row: nothing else was running
    assert not [state for state, _ in events if state != "canary_served"]  # never an outage
    assert circuit.stats.canaries_served == len(events)  # the canaries' spend is reported, one event each


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.anyio
async def test_one_bad_row_among_good_ones_ends_the_same_whatever_the_interleaving(seed: int) -> None:
    container, clock = Container(bad_rows={"x"}, jitter=random.Random(seed)), Clock()
    circuit, events = circuit_for(container, clock)
    rows = ["a", "x", "b", "c", "d"]
    random.Random(seed).shuffle(rows)
    outcomes = await run_all(circuit, container, rows)
    assert isinstance(outcomes["x"], ContainerTransportError)
    assert not isinstance(outcomes["x"], ContainerOutageError)
    assert all(isinstance(outcomes[row], RolloutReply) for row in rows if row != "x")
    assert container.sent("c1-x", probe=False) == 3
    assert "opened" not in [state for state, _ in events]


@pytest.mark.anyio
async def test_rollouts_of_one_bad_row_for_many_candidates_do_not_open_the_circuit() -> None:
    container, clock = Container(bad_rows={"x"}), Clock()
    circuit, events = circuit_for(container, clock)
    assert isinstance(await circuit.run(request("a"), container.send), RolloutReply)
    outcomes: list[Any] = []

    async def candidate(name: str) -> None:
        try:
            outcomes.append(await circuit.run(request("x", name), container.send))
        except ContainerContractError as error:
            outcomes.append(error)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for name in ("c1", "c2", "c3", "c4"):
                group.start_soon(candidate, name)
    assert len(outcomes) == 4
    assert all(type(outcome) is ContainerTransportError for outcome in outcomes)
    assert circuit.stats.opened == 0 and not [state for state, _ in events if state != "canary_served"]


# ------------------------------------------------------------------------------------------- task failures


@pytest.mark.anyio
async def test_a_task_failure_is_the_answer_and_counts_as_the_container_serving() -> None:
    container, clock = Container(unusable_rows={"u"}), Clock()
    circuit, _ = circuit_for(container, clock)
    with pytest.raises(ContainerContractError) as caught:
        await circuit.run(request("u"), container.send)
    assert not isinstance(caught.value, ContainerTransportError)
    assert container.sent("c1-u") == 1  # served: not sent again


@pytest.mark.anyio
async def test_the_circuit_rejects_non_positive_timeouts() -> None:
    container = Container()
    with pytest.raises(ValueError, match="positive"):
        OutageCircuit(url=URL, outage_timeout_seconds=0, request_timeout_seconds=1, health=container.health)


# -------------------------------------------------------------------------- the client's two kinds of failure


def client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> ContainerClient:
    async def no_sleep(_seconds: float) -> None:
        return None

    return ContainerClient(URL, transport=httpx.MockTransport(handler), sleep=no_sleep, **kwargs)


def reply_for(raw: httpx.Request) -> httpx.Response:
    import json

    body = json.loads(raw.content)
    return httpx.Response(
        200, json={"rollout_id": body["rollout_id"], "status": "completed", "reward_info": {"outcome_reward": 1.0}}
    )


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503])
@pytest.mark.anyio
async def test_retryable_statuses_end_in_a_transport_failure_after_the_retries(status: int) -> None:
    sent: list[int] = []

    def handler(_raw: httpx.Request) -> httpx.Response:
        sent.append(status)
        return httpx.Response(status, json={"detail": "busy"})

    async with client(handler, retry=RetryPolicy(max_attempts=3)) as container:
        with pytest.raises(ContainerTransportError) as caught:
            await container.rollout(request("a"))
    assert len(sent) == 3 and caught.value.detail["status"] == status and URL in caught.value.message


@pytest.mark.anyio
async def test_refused_connections_end_in_a_transport_failure() -> None:
    def handler(raw: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=raw)

    async with client(handler) as container:
        with pytest.raises(ContainerTransportError) as caught:
            await container.rollout(request("a"))
    assert caught.value.detail["status"] is None


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(200, content=b"<html>not json</html>"), "not JSON"),
        (httpx.Response(200, json=["a", "list"]), "expected a JSON object"),
        (httpx.Response(200, json={"rollout_id": "other", "status": "completed", "reward": 1}), "'other'"),
        (httpx.Response(200, json={"rollout_id": "c1-a", "status": "failed"}), "failed"),
        (httpx.Response(200, json={"rollout_id": "c1-a", "status": "completed", "reward": "high"}), "reward"),
        (httpx.Response(200, json={"rollout_id": "c1-a", "padding": "x" * 5000}), "over container.max_reply_bytes"),
        (httpx.Response(400, json={"detail": "bad request"}), "HTTP 400"),
    ],
)
@pytest.mark.anyio
async def test_a_served_reply_that_is_unusable_is_a_task_failure_sent_once(
    response: httpx.Response, expected: str
) -> None:
    sent = 0

    def handler(_raw: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return response

    async with client(handler, max_reply_bytes=4096, outage_timeout_seconds=30.0) as container:
        with pytest.raises(ContainerContractError, match=expected) as caught:
            await container.rollout(request("a"))
    assert not isinstance(caught.value, ContainerTransportError)
    assert sent == 1


@pytest.mark.anyio
async def test_with_the_circuit_a_transport_failure_is_sent_again_instead_of_returned() -> None:
    """Five 503s (more than the four attempts), then service: the rollout's reply, not an error."""
    failures = 5
    events: list[str] = []

    def handler(raw: httpx.Request) -> httpx.Response:
        nonlocal failures
        if raw.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if failures:
            failures -= 1
            return httpx.Response(503, json={"detail": "busy"})
        return reply_for(raw)

    emit: Callable[[str, str, dict[str, Any]], None] = lambda state, _message, _fields: events.append(state)  # noqa: E731
    async with client(handler, outage_timeout_seconds=30.0, outage_events=emit) as container:
        with anyio.fail_after(30):
            reply = await container.rollout(request("a"))
    assert reply.reward == 1.0 and failures == 0


@pytest.mark.anyio
async def test_without_the_circuit_a_transport_failure_is_raised_after_the_retries() -> None:
    async with client(lambda _raw: httpx.Response(503)) as container:
        assert container.circuit is None
        with pytest.raises(ContainerTransportError):
            await container.rollout(request("a"))


# ------------------------------------------------------------------------------------------------- config

BASE = """
[container]
url = "http://127.0.0.1:8102"
{extra}
[dataset]
train_ids = ["a", "b"]

[proposer]
backend = "codex_app_server"
"""


def test_outage_timeout_defaults_to_120_seconds_and_stays_out_of_the_decision_digest(tmp_path: Path) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(BASE.format(extra=""))
    default = load_config(path)
    assert default.container.outage_timeout_seconds == 120
    path.write_text(BASE.format(extra="outage_timeout_seconds = 5"))
    short = load_config(path)
    assert short.container.outage_timeout_seconds == 5
    assert short.decision_digest() == default.decision_digest()


@pytest.mark.parametrize("value", ["0", "-1"])
def test_outage_timeout_must_be_positive(tmp_path: Path, value: str) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(BASE.format(extra=f"outage_timeout_seconds = {value}"))
    with pytest.raises(ConfigError, match="outage_timeout_seconds"):
        load_config(path)
