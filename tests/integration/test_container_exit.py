"""A launched container that exits while the run uses it fails the run at once, naming its exit code and the tail
of its log, and before a single decision is made from its absence."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from synth_opt import ContainerContractError, GepaRun, load_config
from synth_opt.events import Event
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import RolloutDegraded
from synth_opt.run import RunView

from .test_run_faults import config


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

    run = GepaRun(load_config(config(tmp_path)), observer=kill_it)  # the fault tests' launched tiny container
    with pytest.raises(ContainerContractError) as caught:
        await run.execute_async()
    took = time.monotonic() - killed_at[0]
    message = caught.value.message
    assert "exited with code" in message and "container.log" in message, message
    assert caught.value.detail["returncode"] is not None
    assert took < 10, took  # noticed at once (about 0.1 s here), not after the client's retries
    feed = read_feed(run.run_dir / "events.jsonl")
    degraded = [e.data for e in feed if isinstance(e.data, RolloutDegraded)]
    assert len(degraded) <= 8, degraded  # at most the rollouts in flight when it died; none decided from it
