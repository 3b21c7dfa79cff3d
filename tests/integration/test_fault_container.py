"""The fault-injection container as a real process on loopback, seen through the real ``ContainerClient``."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import httpx
import pytest

from synth_opt import GepaRun, load_config
from synth_opt.container.client import ContainerClient, RetryPolicy
from synth_opt.container.launch import free_loopback_port
from synth_opt.container.wire import GEPA_CONTRACT_VERSION, RolloutRequest
from synth_opt.errors import ContainerContractError
from synth_opt.testing.fault_container import command

from .fault_runs import fault_run_config

MODULE = "synth_opt.testing.fault_container"
TWO_TRIES = RetryPolicy(max_attempts=2, base_delay_seconds=0.05)

pytestmark = pytest.mark.slow


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]

    def stats(self) -> dict[str, Any]:
        reply = httpx.get(f"{self.url}/fault/stats", timeout=5.0)
        reply.raise_for_status()
        stats: dict[str, Any] = reply.json()
        return stats


@contextmanager
def fault_container(*args: str, argv: Sequence[str] | None = None) -> Iterator[Served]:
    """Start the container on a free port, wait for ``/health``, and always kill it on the way out."""
    port = free_loopback_port()
    argv = [sys.executable, "-m", MODULE, "--port", str(port), *args] if argv is None else argv
    argv = [part.replace("{port}", str(port)) for part in argv]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr)
        try:
            _wait_healthy(url, process, stderr)
            assert process.stdout is not None
            assert process.stdout.readline().decode() == f"listening on {url}\n"
            yield Served(url, process)
        finally:
            process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr.seek(0)
            raise AssertionError(f"fault container exited {process.returncode}: {stderr.read()!r}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"fault container at {url} did not answer /health within 20 s")


def rollout_request(number: int, task_id: str = "t1", answer: str = "w1") -> RolloutRequest:
    return RolloutRequest(
        rollout_id=f"r-{number}",
        submission_mode="sync",
        task_id=task_id,
        candidate_id="cand-1",
        candidate={"instruction": f"always say {answer}"},
        policy={"type": "offline"},
        task={"task_id": task_id},
        metadata={},
    )


def client(url: str, *, timeout: float = 10.0, retry: RetryPolicy = TWO_TRIES) -> ContainerClient:
    return ContainerClient(url, request_timeout_seconds=timeout, retry=retry)


# ------------------------------------------------------------------------------------------------ the contract


@pytest.mark.anyio
async def test_serves_the_contract_with_a_deterministic_task() -> None:
    with fault_container() as served:
        async with client(served.url) as container:
            assert (await container.health())["status"] == "ok"
            metadata = await container.metadata()
            assert metadata is not None
            assert metadata["metadata"]["optimizer_contracts"]["gepa"]["version"] == GEPA_CONTRACT_VERSION
            program = await container.program()
            assert program.seed_candidate == {"instruction": "Say hello."}
            assert program.target_modules == ("instruction",)
            assert await container.task_info() == "Reply with the answer word."
            taskset = await container.taskset()
            assert len(taskset.first_ids("train", 100)) == 12 and taskset.first_ids("train", 2) == ["t0", "t1"]
            assert taskset.first_ids("test", 100) == ["h0", "h1", "h2", "h3"]
            rows = await container.tasks("test", ["h2", "h0"])
            assert [row["answer"] for row in rows] == ["w2", "w0"]
            right = await container.rollout(rollout_request(1, "t3", answer="w3"))
            wrong = await container.rollout(rollout_request(2, "t3", answer="w4"))
            longer = await container.rollout(rollout_request(3, "t1", answer="w10"))  # w1 must be a whole word
            assert (right.reward, wrong.reward, longer.reward) == (1.0, 0.0, 0.0)
            assert right.usage.total_tokens == 10 and right.feedback == "expected 'w3'"
            assert served.stats()["faults"] == 0


@pytest.mark.anyio
async def test_row_counts_are_options_and_command_builds_a_launchable_argv() -> None:
    argv = command("http500", after=0, train=3, test=2)
    assert argv[argv.index("--port") + 1] == "{port}"
    with fault_container(argv=argv) as served:
        async with client(served.url) as container:
            taskset = await container.taskset()
            assert taskset.first_ids("train", 100) == ["t0", "t1", "t2"]
            assert taskset.first_ids("test", 100) == ["h0", "h1"]
            with pytest.raises(ContainerContractError, match="HTTP 500"):
                await container.rollout(rollout_request(1))
            assert served.stats()["faults"] == 2  # --count 0: every attempt


def test_a_count_for_refused_is_rejected() -> None:
    done = subprocess.run(
        [sys.executable, "-m", MODULE, "--port", "0", "--fault", "refused", "--count", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--refuse-seconds" in done.stderr and done.stdout == ""


# --------------------------------------------------------------------------------------- faults, then recovery


@pytest.mark.parametrize(
    ("fault", "count", "expected"),
    [
        ("http500", 2, "HTTP 500"),
        ("reset", 2, "(after 2 attempts)"),
        ("hang", 2, "(after 2 attempts)"),
        ("malformed", 1, "not JSON"),  # served, so not retried
        ("wrong_id", 1, "'r-2-wrong'"),
    ],
)
@pytest.mark.anyio
async def test_a_fault_hits_the_next_k_rollouts_and_then_service_resumes(fault: str, count: int, expected: str) -> None:
    with fault_container("--fault", fault, "--after", "1", "--count", str(count)) as served:
        async with client(served.url, timeout=1.0) as container:
            assert (await container.rollout(rollout_request(1))).reward == 1.0
            with anyio.fail_after(30), pytest.raises(ContainerContractError) as caught:
                await container.rollout(rollout_request(2))
            assert served.url in caught.value.message and "/rollout" in caught.value.message
            assert expected in caught.value.message
            assert (await container.rollout(rollout_request(3))).reward == 1.0
        stats = served.stats()
        assert (stats["faults"], stats["normal_replies"]) == (count, 2)


@pytest.mark.anyio
async def test_transport_faults_are_named_as_such() -> None:
    """What the client reports for each transport fault, and the hint that goes with it."""
    seen: dict[str, str] = {}
    for fault in ("reset", "hang"):
        with fault_container("--fault", fault) as served:
            async with client(served.url, timeout=1.0) as container:
                with anyio.fail_after(30), pytest.raises(ContainerContractError) as caught:
                    await container.rollout(rollout_request(1))
                seen[fault] = caught.value.message
                assert caught.value.detail["status"] is None
                assert "request_timeout_seconds" in caught.value.message
    assert "ReadError (Connection reset by peer)" in seen["reset"]
    assert "ReadTimeout" in seen["hang"] or "request timeout of 1 s" in seen["hang"]


@pytest.mark.anyio
async def test_malformed_reply_is_reported_as_a_bad_reply() -> None:
    with fault_container("--fault", "malformed") as served:
        async with client(served.url) as container:
            with pytest.raises(ContainerContractError) as caught:
                await container.rollout(rollout_request(1))
    assert caught.value.detail["status"] == 200
    assert "HTTP 200 with a body that is not JSON" in caught.value.message
    assert "fix the container so its reply follows the synth-containers contract" in caught.value.message


@pytest.mark.anyio
async def test_refused_closes_the_port_until_it_reopens() -> None:
    with fault_container("--fault", "refused", "--after", "1", "--refuse-seconds", "5") as served:
        async with client(served.url) as container:
            assert (await container.rollout(rollout_request(1))).reward == 1.0
            with pytest.raises(ContainerContractError) as caught:
                await container.rollout(rollout_request(2))
            assert served.url in caught.value.message and "Connection refused" in caught.value.message
            with pytest.raises(ContainerContractError, match="GET /health"):
                await container.health()  # the whole port is closed, not only the rollout route
            with anyio.fail_after(20):
                while True:
                    try:
                        await container.health()
                        break
                    except ContainerContractError:
                        await anyio.sleep(0.2)
            assert (await container.rollout(rollout_request(3))).reward == 1.0
        assert served.stats()["normal_replies"] == 2


@pytest.mark.anyio
async def test_die_kills_the_process_on_the_next_rollout() -> None:
    with fault_container("--fault", "die", "--after", "2") as served:
        async with client(served.url) as container:
            for number in (1, 2):
                assert (await container.rollout(rollout_request(number))).reward == 1.0
            with pytest.raises(ContainerContractError) as caught:
                await container.rollout(rollout_request(3))
            assert served.url in caught.value.message and "Connection refused" in caught.value.message
            assert served.process.wait(timeout=10) == -signal.SIGKILL


@pytest.mark.anyio
async def test_a_fault_row_keeps_failing_while_other_rows_succeed() -> None:
    with fault_container("--fault", "http500", "--fault-row", "t3") as served:
        async with client(served.url) as container:
            for number, row in enumerate(["t1", "t3", "t2", "t3", "t4"]):
                answer = "w" + row[1:]
                if row == "t3":
                    with pytest.raises(ContainerContractError, match="HTTP 500"):
                        await container.rollout(rollout_request(number, row, answer))
                else:
                    assert (await container.rollout(rollout_request(number, row, answer))).reward == 1.0
            stats = served.stats()
    assert (stats["faults"], stats["rollout_requests"]) == (4, 7)  # two t3 rollouts, two attempts each


@pytest.mark.anyio
async def test_a_hanging_request_does_not_hold_up_the_others() -> None:
    args = ("--fault", "hang", "--fault-row", "t3")
    with fault_container(*args) as served:
        async with client(served.url, timeout=60.0) as container:
            async with anyio.create_task_group() as group:
                group.start_soon(container.rollout, rollout_request(100, "t3", "w3"))
                for _ in range(400):  # until the t3 request is in and hanging
                    if served.stats()["faults"] == 1:
                        break
                    await anyio.sleep(0.05)
                for number in range(1, 6):
                    assert (await container.rollout(rollout_request(number))).reward == 1.0
                group.cancel_scope.cancel()
            assert served.stats()["rollout_requests"] == 6


# ------------------------------------------------------------------------------------- the request deadline


@pytest.mark.anyio
async def test_request_timeout_bounds_a_body_trickled_a_byte_a_second() -> None:
    """A reply that starts at once but trickles its body (here a byte every 0.2 s, well inside a 1 s read timeout)
    would hold a rollout for minutes under a per-read timeout; ``request_timeout_seconds`` bounds the whole attempt,
    so two 1 s attempts fail in seconds."""
    with fault_container("--fault", "slow_body", "--trickle-seconds", "0.2") as served:
        async with client(served.url, timeout=1.0) as container:
            started = anyio.current_time()
            with anyio.fail_after(60), pytest.raises(ContainerContractError) as caught:
                await container.rollout(rollout_request(1))
            elapsed = anyio.current_time() - started
            assert elapsed < 10, f"took {elapsed:.1f} s"
            assert served.url in caught.value.message and "POST /rollout" in caught.value.message
            assert "no complete reply within the request timeout of 1 s (after 2 attempts)" in caught.value.message
            assert "raise [container] request_timeout_seconds" in caught.value.message
            assert served.stats()["faults"] == 2


@pytest.mark.anyio
async def test_a_trickled_body_that_finishes_in_time_is_a_normal_reply() -> None:
    args = ("--fault", "slow_body", "--trickle-seconds", "0.001")
    with fault_container(*args) as served:
        async with client(served.url, timeout=30.0) as container:
            assert (await container.rollout(rollout_request(1))).reward == 1.0
            assert served.stats()["faults"] == 1


# ------------------------------------------------------------------------------------------------- a whole run


@pytest.mark.anyio
async def test_a_whole_run_against_the_fault_container_absorbs_a_retried_fault(tmp_path: Path) -> None:
    """As a ``[container] command`` it serves a complete run; one 500 is absorbed by the client's retries."""
    argv = command("http500", after=3, count=1)
    path = fault_run_config(tmp_path, argv, run_id="fault-container", budget=40)
    result = await GepaRun(load_config(path)).execute_async()
    assert result.status == "completed"
    assert result.seed_heldout_score == 0.0  # "Say hello." names no answer word
    assert result.rollouts_used["train"] > 6
    log = (tmp_path / "runs" / "fault-container" / "container.log").read_text()
    assert "fault http500 on rollout request 4" in log
