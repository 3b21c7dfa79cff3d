"""Container outages through real processes: the fault container as a launched ``[container] command`` and the fake
app-server as the proposer. An outage pauses the run and, once the container serves again, the run makes exactly the
decisions of an uninterrupted one; a permanent outage fails the run in bounded time with nothing decided from it; a
single row that keeps failing while the others are served is a degraded rollout, not an outage."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from synth_opt import ContainerContractError, GepaRun, load_config
from synth_opt.container.launch import free_loopback_port
from synth_opt.events import EventPayload
from synth_opt.events.compare import compare_feeds
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import AcceptanceDecided, ContainerOutage, RolloutCompleted, RolloutDegraded
from synth_opt.result import GepaResult
from synth_opt.testing.fault_container import command

pytestmark = pytest.mark.slow

# The seed names the answer words of rows t0 and t1, so rewards are 1 there and 0 elsewhere: a rollout that came
# back degraded (reward 0) instead of served changes the scores, and the fake proposer's children (the parent's
# text plus a marker line) are then judged differently.
AFTER = 12  # rollouts served before the fault: the seed's six and part of the search


def write_config(
    directory: Path,
    argv: list[str] | None,
    *,
    url: str | None = None,
    urls: list[str] | None = None,
    request_timeout: float | None = None,
    outage_timeout: float | None = None,
    rollout_workers: int = 4,
) -> Path:
    """The fault container launched from ``argv``, or standing at ``url`` (or as the replicas ``urls``)."""
    directory.mkdir(parents=True, exist_ok=True)
    if argv is not None:
        container = "command = [" + ", ".join(repr(part) for part in argv) + "]"
    elif urls is not None:
        container = f"urls = {json.dumps(urls)}"
    else:
        container = f"url = {url!r}"
    extra = ""
    if request_timeout is not None:
        extra += f"request_timeout_seconds = {request_timeout}\n"
    if outage_timeout is not None:
        extra += f"outage_timeout_seconds = {outage_timeout}\n"
    path = directory / "gepa.toml"
    path.write_text(
        f"""
[run]
run_id = "outage"
output_dir = {str(directory / "runs")!r}

[container]
{container}
startup_timeout_seconds = 20
{extra}
[dataset]
train_ids = {{count = 6}}
heldout_ids = {{count = 2}}

[seed_candidate]
instruction = "Answer w0 or w1."

[proposer]
backend = "codex_app_server"
command = [{sys.executable!r}, "-m", "synth_opt.testing.fake_app_server"]

[gepa]
max_train_rollouts = 36
minibatch_size = 2
reuse_evaluations = false  # every evaluation live, so the fault lands where the test puts it

[gepa.pipeline]
mode = "async_pipelined"
max_in_flight_candidates = 2

[gepa.pipeline.workers]
propose = 1
rollout = {rollout_workers}

[cache]
mode = "off"
"""
    )
    return path


def payloads(feed: Path) -> list[EventPayload]:
    """The typed payloads of the feed's events, in order."""
    return [event.data for event in read_feed(feed)]


def degraded(feed: Path) -> list[RolloutDegraded]:
    return [data for data in payloads(feed) if isinstance(data, RolloutDegraded)]


def outage_states(feed: Path) -> list[str]:
    return [data.state for data in payloads(feed) if isinstance(data, ContainerOutage)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> GepaResult:
    """The same config against a fault container that injects nothing."""
    path = write_config(tmp_path_factory.mktemp("uninterrupted"), command())
    result = GepaRun(load_config(path)).execute()
    assert result.status == "completed"
    assert result.normalized_event_feed_path is not None
    feed = Path(result.event_feed_path)
    assert not degraded(feed)
    scores = [data for data in payloads(feed) if isinstance(data, AcceptanceDecided)]
    assert len(scores) >= 3, "the reference run must decide several proposals"
    return result


async def recovered_run(tmp_path: Path, argv: list[str], **options: Any) -> GepaResult:
    result = await GepaRun(load_config(write_config(tmp_path, argv, **options))).execute_async()
    assert result.status == "completed"
    return result


def assert_same_decisions(result: GepaResult, reference: GepaResult) -> None:
    assert result.normalized_event_feed_path is not None and reference.normalized_event_feed_path is not None
    comparison = compare_feeds(Path(result.normalized_event_feed_path), Path(reference.normalized_event_feed_path))
    assert comparison.equal, (comparison.first_difference, comparison.left_line, comparison.right_line)
    assert result.best_candidate == reference.best_candidate
    assert result.rollouts_used == reference.rollouts_used


def assert_committed_prefix(normalized: Path, reference: GepaResult) -> None:
    """What a failed run committed is what the uninterrupted run committed first: nothing was decided from the
    outage (the failed run's own end is left out)."""
    assert reference.normalized_event_feed_path is not None
    expected = Path(reference.normalized_event_feed_path).read_text().splitlines()
    committed = [
        line
        for line in normalized.read_text().splitlines()
        if json.loads(line)["type"] not in ("run.finished", "search.stopped")
    ]
    assert any(json.loads(line)["type"] == "acceptance.decided" for line in committed)
    assert committed == expected[: len(committed)]


# ------------------------------------------------------------------------------------------ outages that end


@pytest.mark.anyio
async def test_a_refused_outage_pauses_the_run_and_it_ends_as_an_uninterrupted_run(
    tmp_path: Path, uninterrupted: GepaResult
) -> None:
    result = await recovered_run(tmp_path, command("refused", after=AFTER, refuse_seconds=3))
    feed = Path(result.event_feed_path)
    assert not degraded(feed)
    states = outage_states(feed)
    assert states and states[0] == "opened" and states[-1] == "closed"
    assert_same_decisions(result, uninterrupted)


@pytest.mark.anyio
async def test_more_5xx_replies_than_the_client_retries_are_an_outage_not_an_outcome(
    tmp_path: Path, uninterrupted: GepaResult
) -> None:
    # one rollout at a time (workers are no decision setting): the first faulty rollout gets all four attempts
    result = await recovered_run(tmp_path, command("http500", after=AFTER, count=6), rollout_workers=1)
    assert not degraded(Path(result.event_feed_path))
    assert_same_decisions(result, uninterrupted)


@pytest.mark.anyio
async def test_hanging_replies_time_out_and_the_run_recovers(tmp_path: Path, uninterrupted: GepaResult) -> None:
    argv = command("hang", after=AFTER, count=6)
    result = await recovered_run(tmp_path, argv, request_timeout=1, rollout_workers=1)
    assert not degraded(Path(result.event_feed_path))
    assert_same_decisions(result, uninterrupted)


# ------------------------------------------------------------------------------------- an outage that stays


@pytest.mark.anyio
async def test_a_permanent_outage_fails_the_run_in_bounded_time_and_decides_nothing_from_it(
    tmp_path: Path, uninterrupted: GepaResult
) -> None:
    outage_timeout, request_timeout = 3.0, 2.0
    path = write_config(
        tmp_path, command("http500", after=AFTER), request_timeout=request_timeout, outage_timeout=outage_timeout
    )
    run = GepaRun(load_config(path))
    started = time.monotonic()
    with pytest.raises(ContainerContractError) as caught:
        await run.execute_async()
    elapsed = time.monotonic() - started
    # the bound is from the first failure; the run's start is earlier, so this is stricter
    assert elapsed < outage_timeout + request_timeout + 10, f"failed after {elapsed:.1f} s"
    assert "http://127.0.0.1:" in caught.value.message
    feed = run.run_dir / "events.jsonl"
    assert not degraded(feed)
    assert "opened" in outage_states(feed)
    assert_committed_prefix(run.run_dir / "events.normalized.jsonl", uninterrupted)


@contextmanager
def standing_container(*args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A fault container the run does not launch (``[container] url``), as a container on another host would be."""
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "synth_opt.testing.fault_container", "--port", str(port), *args]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "the fault container did not start"
            try:
                if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url, process
    finally:
        process.kill()
        process.wait()


@pytest.mark.anyio
async def test_a_standing_container_that_dies_fails_the_run_as_an_outage(
    tmp_path: Path, uninterrupted: GepaResult
) -> None:
    """Nobody watches a standing container's process: its death is an outage (every connection refused), and the
    run fails naming its URL within the timeouts, with no degraded rollouts and nothing decided from them."""
    with standing_container("--fault", "die", "--after", str(AFTER)) as (url, process):
        path = write_config(tmp_path, None, url=url, request_timeout=2.0, outage_timeout=3.0)
        run = GepaRun(load_config(path))
        started = time.monotonic()
        with pytest.raises(ContainerContractError) as caught:
            await run.execute_async()
        elapsed = time.monotonic() - started
        assert process.wait(timeout=10) == -signal.SIGKILL
    assert elapsed < 3.0 + 2.0 + 10, f"failed after {elapsed:.1f} s"
    assert url in caught.value.message and "Connection refused" in caught.value.message
    feed = run.run_dir / "events.jsonl"
    assert not degraded(feed)
    assert outage_states(feed)[-1] == "failed"
    assert_committed_prefix(run.run_dir / "events.normalized.jsonl", uninterrupted)


# ------------------------------------------------------------------------------ one row is not an outage


@pytest.mark.anyio
async def test_a_row_that_always_fails_while_others_are_served_is_degraded_and_the_run_completes(
    tmp_path: Path,
) -> None:
    result = await recovered_run(tmp_path, command("http500", row="t3"))
    feed = Path(result.event_feed_path)
    rollouts = [data for data in payloads(feed) if isinstance(data, RolloutCompleted | RolloutDegraded)]
    bad = [rollout for rollout in rollouts if rollout.task_id == "t3"]
    good = [rollout for rollout in rollouts if rollout.task_id != "t3"]
    assert bad and good
    assert all(rollout.status == "degraded" for rollout in bad)
    assert all(rollout.status != "degraded" for rollout in good)
    assert "opened" not in outage_states(feed)
