"""A launched container that exits while the run uses it fails the run at once, naming its exit code and the tail
of its log, and before a single decision is made from its absence."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from synth_opt import ContainerContractError, GepaRun, load_config
from synth_opt.events import Event
from synth_opt.run import RunView

TINY = Path(__file__).with_name("tiny_container.py")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def config(tmp_path: Path) -> Path:
    path = tmp_path / "gepa.toml"
    path.write_text(
        f"""
[run]
run_id = "exits"

[container]
command = [{sys.executable!r}, {str(TINY)!r}, "{{port}}"]
startup_timeout_seconds = 20

[dataset]
train_ids = {{count = 6}}
heldout_ids = {{count = 4}}

[proposer]
backend = "codex_app_server"
command = [{sys.executable!r}, "-m", "synth_opt.testing.fake_app_server", "--mode", "ok"]

[gepa]
max_train_rollouts = 400
minibatch_size = 2

[cache]
mode = "off"
"""
    )
    return path


@pytest.mark.anyio
async def test_a_launched_container_that_exits_mid_run_fails_the_run_at_once(tmp_path: Path) -> None:
    killed_at: list[float] = []

    async def kill_it(events: MemoryObjectReceiveStream[Event], view: RunView) -> None:
        pid = None
        async with events:
            async for event in events:
                if event.type == "container.launched":
                    pid = int(event.fields["pid"])
                if event.type == "acceptance.decided" and pid is not None and not killed_at:
                    os.kill(pid, signal.SIGTERM)  # the server alone: the exit code is its own
                    killed_at.append(time.monotonic())

    run = GepaRun(load_config(config(tmp_path)), observer=kill_it)
    with pytest.raises(ContainerContractError) as caught:
        await run.execute_async()
    took = time.monotonic() - killed_at[0]
    message = caught.value.message
    assert "exited with code" in message and "container.log" in message, message
    assert caught.value.detail["returncode"] is not None
    assert took < 10, took  # noticed at once (about 0.1 s here), not after the client's retries
    feed = [json.loads(line) for line in (tmp_path / "runs" / "exits" / "events.jsonl").read_text().splitlines()]
    degraded = [e for e in feed if e["type"] == "rollout.degraded"]
    assert len(degraded) <= 8, degraded  # at most the rollouts in flight when it died; none decided from it
