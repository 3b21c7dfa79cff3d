"""Containers written by others: a third-party container that only supports async submission, as a subprocess."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from synth_opt import ContainerContractError, GepaRun, load_config

ASYNC_ONLY = Path(__file__).with_name("async_only_container.py")


def config(tmp_path: Path, submission: str) -> Path:
    path = tmp_path / f"{submission}.toml"
    path.write_text(
        f"""
[run]
run_id = "interop-{submission}"
output_dir = "runs"

[container]
command = [{sys.executable!r}, {str(ASYNC_ONLY)!r}, "{{port}}"]
startup_timeout_seconds = 30

[dataset]
train_ids = {{count = 8}}
heldout_ids = {{count = 4}}

[proposer]
backend = "codex_app_server"
command = [{sys.executable!r}, "-m", "synth_opt.testing.fake_app_server"]

[gepa]
max_train_rollouts = 60
max_heldout_rollouts = 8
minibatch_size = 2
rollout_submission_mode = "{submission}"
rollout_poll_interval_ms = 20

[gepa.pipeline]
mode = "async_pipelined"
max_in_flight_candidates = 2

[cache]
mode = "off"
"""
    )
    return path


@pytest.mark.anyio
async def test_a_run_against_an_async_only_container_polls_every_rollout(tmp_path: Path) -> None:
    stats: dict[str, int] = {}
    url: list[str] = []

    from anyio.streams.memory import MemoryObjectReceiveStream

    from synth_opt.events import Event
    from synth_opt.run import RunView

    async def watch(events: MemoryObjectReceiveStream[Event], view: RunView) -> None:
        async with events:
            async for event in events:
                if event.type == "container.launched":
                    url.append(str(event.fields["url"]))
                # every train rollout is in (the search stops while proposals are still in flight; the heldout
                # phase starts once they committed) and the container is still up: read what it saw
                if event.type == "run.state" and event.fields.get("state") == "evaluating_heldout":
                    async with httpx.AsyncClient() as client:
                        stats.update((await client.get(f"{url[0]}/stats")).json())

    result = await GepaRun(load_config(config(tmp_path, "async")), observer=watch).execute_async()
    assert result.status == "completed" and result.stop_reason in ("max_train_rollouts", "reuse_evaluations")
    assert stats["sync_refused"] == 0
    assert stats["async_submitted"] >= result.rollouts_used["train"] > 0
    assert result.proposals > 0  # the proposer's children were scored through the polled rollouts
    registry = json.loads(Path(result.candidate_registry_path).read_text())
    assert len(registry["candidates"]) > 1
    manifest = json.loads(Path(result.manifest_path).read_text())
    assert manifest["rollouts_used"]["heldout"] > 0


@pytest.mark.anyio
async def test_sync_submission_to_an_async_only_container_fails_with_its_reason(tmp_path: Path) -> None:
    with pytest.raises(ContainerContractError) as caught:
        await GepaRun(load_config(config(tmp_path, "sync"))).execute_async()
    message = caught.value.one_line()
    assert "POST /rollout" in message and "HTTP 422" in message
    assert "submission_mode must be 'async'" in message
