"""The client and the launcher against a real container process written with ``synth_containers``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import httpx
import pytest

from synth_opt.container.client import ContainerClient, RetryPolicy
from synth_opt.container.connections import ShardedTransport, container_transport
from synth_opt.container.launch import (
    LaunchedContainer,
    launched_container,
    process_group_alive,
    stop_process_group,
)
from synth_opt.container.plain_http import PlainHttpTransport
from synth_opt.container.wire import RolloutRequest
from synth_opt.errors import ContainerContractError

TINY = Path(__file__).with_name("tiny_container.py")
COMMAND = [sys.executable, str(TINY), "{port}"]

pytestmark = pytest.mark.slow


def launch(*extra: str, stop_grace_seconds: float = 5.0) -> AbstractAsyncContextManager[LaunchedContainer]:
    return launched_container(
        [*COMMAND, *extra],
        cwd=TINY.parent,
        env={},
        startup_timeout_seconds=20.0,
        stop_grace_seconds=stop_grace_seconds,
    )


def rollout_request(rollout_id: str, task: dict[str, object], mode: str, **metadata: object) -> RolloutRequest:
    return RolloutRequest(
        rollout_id=rollout_id,
        submission_mode=mode,
        task_id=str(task["task_id"]),
        candidate_id="cand-1",
        candidate={"instruction": f"always say {task['answer']}"},
        policy={"type": "offline"},
        task=dict(task),
        metadata=dict(metadata),
    )


def assert_group_gone(pid: int) -> None:
    assert not process_group_alive(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@pytest.mark.anyio
async def test_every_client_method_against_a_real_container() -> None:
    async with launch() as container:
        async with ContainerClient(container.url, headers={"x-test": "1"}) as client:
            assert (await client.health())["status"] == "ok"
            metadata = await client.metadata()
            assert metadata is not None and metadata["runtime"]["name"] == "tiny"
            program = await client.program()
            assert program.seed_candidate == {"instruction": "Say hello."}
            assert program.target_modules == ("instruction",)
            assert await client.task_info() == "Reply with the answer word."
            taskset = await client.taskset()
            assert taskset.first_ids("train", 3) == ["t0", "t1", "t2"]
            assert taskset.first_ids("test", 10) == ["0", "1", "2", "3"]
            rows = await client.tasks("train", ["t3", "t1"])
            assert [row["task_id"] for row in rows] == ["t3", "t1"]
            heldout = await client.tasks("test", taskset.first_ids("test", 2))
            assert [row["answer"] for row in heldout] == ["w0", "w1"]

            sync = await client.rollout(rollout_request("roll-sync", rows[0], "sync"))
            assert sync.reward == 1.0
            assert sync.usage.total_tokens == 10
            assert sync.feedback == "expected 'w3'"
            assert sync.objectives == {"outcome_reward": 1.0}
            assert client.stats.polls == 0

            request = rollout_request("roll-async", rows[1], "async", delay_seconds=0.3)
            reply = await client.rollout(request, poll_interval_seconds=0.05)
            assert reply.reward == 1.0
            assert reply.trace == {"turns": [{"role": "user", "content": "say word 1"}]}
            assert client.stats.polls >= 2

            failing = rollout_request("roll-fail", rows[1], "async", explode=True)
            with pytest.raises(ContainerContractError, match="rollout roll-fail failed"):
                await client.rollout(failing, poll_interval_seconds=0.05)

            slow = rollout_request("roll-slow", rows[1], "async", delay_seconds=30)
            with pytest.raises(ContainerContractError, match="did not finish"):
                await client.rollout(slow, poll_interval_seconds=0.05, async_timeout_seconds=0.3)
            assert client.stats.terminations == 1
        pid = container.pid
    assert_group_gone(pid)


async def rollouts_held_open(transport: httpx.AsyncBaseTransport, rounds: int) -> dict[str, float]:
    """``rounds`` rounds of twelve rollouts held open at once (0.2 s each) through ``transport``: their rewards."""
    async with launch() as container, ContainerClient(container.url, transport=transport) as client:
        rows = await client.tasks("train", ["t0", "t1", "t2", "t3"])
        rewards: dict[str, float] = {}

        async def run(index: int) -> None:
            request = rollout_request(f"roll-{index}", rows[index % 4], "sync", delay_seconds=0.2)
            rewards[request.rollout_id] = (await client.rollout(request)).reward

        for first in range(0, 12 * rounds, 12):
            async with anyio.create_task_group() as group:
                for index in range(first, first + 12):
                    group.start_soon(run, index)
    return rewards


@pytest.mark.anyio
async def test_concurrent_rollouts_spread_over_the_connection_pools() -> None:
    """What an ``https://`` container gets (here over http): small httpcore pools, every one used."""
    transport = container_transport(12)
    assert await rollouts_held_open(transport, 1) == {f"roll-{index}": 1.0 for index in range(12)}
    assert isinstance(transport, ShardedTransport)
    assert transport.in_flight == [0, 0, 0]
    assert min(transport.requests) >= 4  # the twelve held-open rollouts used every pool


@pytest.mark.anyio
async def test_plain_http_rollouts_keep_their_connections_from_round_to_round() -> None:
    """The transport an ``http://`` container gets: twelve rollouts held open at once take twelve connections,
    and the next twelve go over the same ones."""
    transport = container_transport(12, scheme="http")
    assert isinstance(transport, PlainHttpTransport)
    assert await rollouts_held_open(transport, 2) == {f"roll-{index}": 1.0 for index in range(24)}
    assert transport.connections_opened <= 13  # twelve, and the one the task list took if it was not reused


@pytest.mark.anyio
async def test_a_killed_container_is_noticed_while_its_context_is_open() -> None:
    """Its exit cancels the work inside the context and raises an error naming the exit code."""
    retry = RetryPolicy(max_attempts=3, base_delay_seconds=0.05)
    pid = 0
    with anyio.fail_after(10), pytest.raises(ContainerContractError) as caught:
        async with launch() as container:
            pid = container.pid
            async with ContainerClient(container.url, retry=retry, request_timeout_seconds=5) as client:
                row = (await client.tasks("train", ["t0"]))[0]
                assert (await client.rollout(rollout_request("before", row, "sync"))).reward == 1.0
                os.kill(container.pid, signal.SIGKILL)
                await anyio.sleep(30)  # whatever the body waits on is cancelled
                pytest.fail("the exit of the container must cancel the body")
    message = caught.value.message
    assert container.url in message and "exited with code -9" in message
    assert_group_gone(pid)


@pytest.mark.anyio
async def test_command_that_exits_immediately_fails_fast() -> None:
    command = [sys.executable, "-c", "import sys; print('no config here'); sys.exit(3)"]
    started = time.monotonic()
    with anyio.fail_after(10), pytest.raises(ContainerContractError) as caught:
        async with launched_container(command, cwd=None, env={}, startup_timeout_seconds=30):
            pytest.fail("a command that exits must not yield")
    assert time.monotonic() - started < 5
    assert "exited with code 3" in caught.value.message
    assert "no config here" in caught.value.message


@pytest.mark.anyio
async def test_missing_executable_is_a_contract_error() -> None:
    with pytest.raises(ContainerContractError, match="could not start"):
        async with launched_container(["/nonexistent/container-binary"], cwd=None, env={}, startup_timeout_seconds=5):
            pass


@pytest.mark.anyio
async def test_startup_timeout_names_command_and_url() -> None:
    command = [sys.executable, "-c", "import time; time.sleep(30)"]
    with anyio.fail_after(10), pytest.raises(ContainerContractError) as caught:
        async with launched_container(command, cwd=None, env={}, startup_timeout_seconds=0.5):
            pass
    assert "within 0.5 s" in caught.value.message
    assert "http://127.0.0.1:" in caught.value.message
    assert "time.sleep(30)" in caught.value.message


@pytest.mark.anyio
async def test_cancellation_kills_the_process_group() -> None:
    launched: list[LaunchedContainer] = []
    with anyio.CancelScope() as scope:
        async with launch("--spawn-child") as container:
            launched.append(container)
            assert process_group_alive(container.pid)
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert_group_gone(launched[0].pid)


@pytest.mark.anyio
async def test_stubborn_container_is_killed_after_the_grace_period() -> None:
    started = time.monotonic()
    async with launch("--ignore-sigterm", stop_grace_seconds=0.5) as container:
        pid = container.pid
    assert time.monotonic() - started < 8
    assert_group_gone(pid)


def test_stop_process_group_sync_helper() -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"
    )
    with subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE, start_new_session=True) as child:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        assert stop_process_group(child.pid, grace_seconds=0.3) is True
        child.wait(timeout=5)
    assert not process_group_alive(child.pid)
    assert stop_process_group(child.pid, grace_seconds=0.3) is False
