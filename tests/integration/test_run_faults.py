"""Fault tests through real processes: a container that dies mid-run, proposers that die or stall."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from synth_opt import ContainerContractError, GepaRun, ProposerError, load_config
from synth_opt.container.launch import process_group_alive
from synth_opt.events import Event
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import ContainerLaunched, RunState
from synth_opt.run import RunView

TINY = Path(__file__).with_name("tiny_container.py")


def config(
    tmp_path: Path, *, proposer_mode: str = "ok", stall: float = 120.0, timeout: float = 300.0, outage: float = 120.0
) -> Path:
    path = tmp_path / "gepa.toml"
    path.write_text(
        f"""
[run]
run_id = "faults"

[container]
command = [{sys.executable!r}, {str(TINY)!r}, "{{port}}"]
startup_timeout_seconds = 20

[dataset]
train_ids = {{count = 6}}
heldout_ids = {{count = 4}}

[proposer]
backend = "codex_app_server"
command = [{sys.executable!r}, "-m", "synth_opt.testing.fake_app_server", "--mode", "{proposer_mode}"]
timeout_seconds = {timeout}
message_stall_timeout_seconds = {stall}
outage_timeout_seconds = {outage}

[gepa]
max_train_rollouts = 200
minibatch_size = 2

[cache]
mode = "off"
"""
    )
    return path


@pytest.mark.anyio
async def test_a_container_that_dies_mid_run_fails_with_a_contract_error_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    launched: list[int] = []

    async def kill_after_seed(events: MemoryObjectReceiveStream[Event], view: RunView) -> None:
        async with events:
            async for event in events:
                if event.type == "container.launched":
                    launched.append(int(event.fields["pid"]))
                if event.type == "proposal.planned" and len(launched) == 1:
                    os.killpg(launched[0], signal.SIGKILL)
                    launched.append(0)

    run = GepaRun(load_config(config(tmp_path)), observer=kill_after_seed)
    started = time.monotonic()
    with pytest.raises(ContainerContractError) as caught:
        await run.execute_async()
    assert time.monotonic() - started < 60
    message = caught.value.message  # its exit is noticed at once (test_container_exit.py times it)
    assert "http://127.0.0.1:" in message and "exited with code -9" in message, message
    assert launched and not process_group_alive(launched[0])
    assert "failed" in (run.run_dir / "run_status.json").read_text()


@pytest.mark.anyio
async def test_a_proposer_that_exits_after_initialize_fails_the_run_quickly(tmp_path: Path) -> None:
    run = GepaRun(load_config(config(tmp_path, proposer_mode="exit-after-initialize")))
    started = time.monotonic()
    with pytest.raises(ProposerError):
        await run.execute_async()
    assert time.monotonic() - started < 30


@pytest.mark.anyio
async def test_a_proposer_that_never_answers_fails_within_the_stall_and_outage_timeouts(tmp_path: Path) -> None:
    """No message in time is an outage (nothing served): the call is made again until the outage timeout."""
    run = GepaRun(load_config(config(tmp_path, proposer_mode="never-answer", stall=1.0, outage=2.0)))
    started = time.monotonic()
    with pytest.raises(ProposerError, match=r"served nothing for .*outage_timeout_seconds = 2\b.*(stall|message)"):
        await run.execute_async()
    assert time.monotonic() - started < 30


@pytest.mark.anyio
async def test_a_proposer_killed_mid_turn_is_an_outage_and_the_run_ends_where_an_undisturbed_one_does(
    tmp_path: Path,
) -> None:
    """The first app-server dies mid-turn (SIGKILL); the call is made again on a fresh one, nothing is decided
    from the death, and the run's decisions are those of a run whose proposer never died."""
    (tmp_path / "killed").mkdir()
    (tmp_path / "calm").mkdir()
    killed = await GepaRun(load_config(config(tmp_path / "killed", proposer_mode="die-mid-turn-once"))).execute_async()
    calm = await GepaRun(load_config(config(tmp_path / "calm"))).execute_async()
    outages = [e.fields for e in read_feed(Path(killed.event_feed_path)) if e.type == "proposer.outage"]
    assert [o["state"] for o in outages] == ["waiting", "closed"]
    assert "was killed by signal 9" in outages[0]["error"]
    assert killed.proposals_failed == 0 and killed.stop_reason == calm.stop_reason
    assert killed.best_candidate == calm.best_candidate and killed.rollouts_used == calm.rollouts_used
    assert normalized(killed.normalized_event_feed_path) == normalized(calm.normalized_event_feed_path)


def normalized(path: str | None) -> list[str]:
    """A normalized feed without the config line (it names the proposer's mode)."""
    assert path is not None
    return [line for line in Path(path).read_text().splitlines() if '"run.config"' not in line]


def test_ctrl_c_exits_130_and_stops_the_container(tmp_path: Path) -> None:
    path = config(tmp_path)
    path.write_text(path.read_text().replace("max_train_rollouts = 200", "max_train_rollouts = 1000000"))
    process = subprocess.Popen(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(path), "--no-progress"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    feed = tmp_path / "runs" / "faults" / "events.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "proposal.planned" not in (feed.read_text() if feed.exists() else ""):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("error[run_cancelled]")
    events = list(read_feed(feed))
    pid = next(e.data.pid for e in events if isinstance(e.data, ContainerLaunched))
    assert not process_group_alive(pid)
    assert isinstance(events[-1].data, RunState) and events[-1].data.state == "cancelled"
