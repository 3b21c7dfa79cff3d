"""The heldout phase is checkpointed: a run stopped after the seed's heldout evaluation came in, while the best's
was still running, resumes by evaluating only the best on the heldout rows, and ends where an uninterrupted run
ends (the same normalized feed, rollouts, heldout scores). A version-2 checkpoint (written before the phase was
checkpointed) still resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from synth_opt import GepaResult, GepaRun, RunCancelledError, load_config
from synth_opt.events.compare import compare_feeds
from synth_opt.events.types import CheckpointWritten
from synth_opt.testing.fake_container import FakeContainer

from .test_pipeline_fake import LearningProposer, cancelled_after_decisions, new_fake, write_config

SEED_TEXT = "answer w0"  # new_fake()'s seed candidate


def rollout_body(request: httpx.Request) -> dict[str, Any] | None:
    if request.method == "POST" and request.url.path == "/rollout":
        body: dict[str, Any] = json.loads(request.content)
        return body
    return None


def is_heldout(body: dict[str, Any]) -> bool:
    return str(body["task_id"]).startswith("test-")  # new_fake()'s heldout rows are its test split


def holding_the_best_s_heldout(fake: FakeContainer) -> httpx.MockTransport:
    """Serves everything but the heldout rollouts of any candidate other than the seed: those never answer."""
    never = anyio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        body = rollout_body(request)
        if body is not None and is_heldout(body) and body["candidate"]["instruction"] != SEED_TEXT:
            await never.wait()
        return await fake.handle(request)

    return httpx.MockTransport(handle)


def recording(fake: FakeContainer, bodies: list[dict[str, Any]]) -> httpx.MockTransport:
    async def handle(request: httpx.Request) -> httpx.Response:
        body = rollout_body(request)
        if body is not None:
            bodies.append(body)
        return await fake.handle(request)

    return httpx.MockTransport(handle)


def config_file(tmp_path: Path, name: str) -> Path:
    # more rollout workers than heldout rows: the best's rows that never answer leave a worker for each of the seed's
    return write_config(tmp_path, name, mode="async_pipelined", rollout_workers=16)


async def whole_run(tmp_path: Path) -> GepaResult:
    config = load_config(config_file(tmp_path, "whole"))
    return await GepaRun(
        config, container_transport=new_fake().transport(), proposer=LearningProposer()
    ).execute_async()


@pytest.mark.anyio
async def test_a_run_stopped_in_the_heldout_phase_evaluates_only_what_was_still_awaited(tmp_path: Path) -> None:
    whole = await whole_run(tmp_path)
    assert whole.best_candidate_id != whole.seed_candidate_id  # two heldout evaluations: the seed's and the best's
    rows = whole.rollouts_used["heldout"] // 2

    path = config_file(tmp_path, "parts")
    run = GepaRun(
        load_config(path), container_transport=holding_the_best_s_heldout(new_fake()), proposer=LearningProposer()
    )

    async def stop_once_the_seed_s_heldout_is_checkpointed(events: Any, view: Any) -> None:
        async with events:
            async for event in events:
                data = event.data
                if isinstance(data, CheckpointWritten) and (data.snapshot.get("heldout") or {}).get("scores"):
                    assert list(data.snapshot["heldout"]["scores"]) == [whole.seed_candidate_id]
                    run.cancel("stopped in the heldout phase")

    run.observer = stop_once_the_seed_s_heldout_is_checkpointed
    with pytest.raises(RunCancelledError):
        with anyio.fail_after(60):
            await run.execute_async()
    checkpoint = json.loads((tmp_path / "runs" / "parts" / "checkpoint.json").read_text())
    assert checkpoint["version"] == 3 and list(checkpoint["heldout"]["scores"]) == [whole.seed_candidate_id]

    served: list[dict[str, Any]] = []
    resumed = await GepaRun(
        load_config(path), container_transport=recording(new_fake(), served), proposer=LearningProposer()
    ).execute_async()
    # the resume ran the best's heldout rows and nothing else: no search rollout, none of the seed's
    assert len(served) == rows and all(is_heldout(body) for body in served), served
    assert {body["candidate"]["instruction"] for body in served} != {SEED_TEXT}
    assert all(body["candidate"]["instruction"] != SEED_TEXT for body in served)

    comparison = compare_feeds(Path(whole.normalized_event_feed_path), Path(resumed.normalized_event_feed_path))
    assert comparison.equal, comparison
    assert (resumed.rollouts_used, resumed.rollouts_reused) == (whole.rollouts_used, whole.rollouts_reused)
    assert (resumed.seed_heldout_score, resumed.best_heldout_score) == (
        whole.seed_heldout_score,
        whole.best_heldout_score,
    )
    assert resumed.best_candidate_id == whole.best_candidate_id


@pytest.mark.anyio
async def test_a_version_2_checkpoint_still_resumes(tmp_path: Path) -> None:
    whole = await whole_run(tmp_path)
    path = config_file(tmp_path, "older")
    await cancelled_after_decisions(
        GepaRun(load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer()), 3
    )
    stored = tmp_path / "runs" / "older" / "checkpoint.json"
    checkpoint = json.loads(stored.read_text())
    assert checkpoint.pop("heldout") is None  # stopped in the search
    stored.write_text(json.dumps({**checkpoint, "version": 2}))

    resumed = await GepaRun(
        load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer()
    ).execute_async()
    comparison = compare_feeds(Path(whole.normalized_event_feed_path), Path(resumed.normalized_event_feed_path))
    assert comparison.equal, comparison
    assert (resumed.rollouts_used, resumed.best_heldout_score) == (whole.rollouts_used, whole.best_heldout_score)
