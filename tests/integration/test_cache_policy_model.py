"""The cache answers only what it was asked: a container that reports the model its policy uses
(``metadata.policy_model`` in ``GET /metadata``) gets cached answers only from runs against the same model, even
when everything in the config but the container is the same; a readonly run, which contacts nothing, finds the
model in the cache and replays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.testing.fault_container import command

from .fault_runs import fault_run_config

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, policy_model: str | None) -> Path:
    # one file name: one config, one cache namespace
    return fault_run_config(tmp_path, command(policy_model=policy_model), budget=24, cache=None)


async def run(
    tmp_path: Path, policy_model: str | None, run_id: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.setenv("SYNTH_OPTIMIZERS_RUN_ID", run_id)
    monkeypatch.setenv("SYNTH_OPTIMIZERS_CACHE_MODE", mode)
    result = await GepaRun(load_config(write_config(tmp_path, policy_model))).execute_async()
    assert result.status == "completed" and result.cache_profile_path is not None
    profile: dict[str, Any] = json.loads(Path(result.cache_profile_path).read_text())
    return profile


def rollouts(profile: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = profile["by_boundary"]["container.rollout"]
    return counts


@pytest.mark.anyio
async def test_another_policy_model_behind_the_same_config_gets_no_cached_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await run(tmp_path, "model-a", "a", "readwrite", monkeypatch)
    assert rollouts(first)["misses"] > 0 and rollouts(first)["hits"] == 0
    other = await run(tmp_path, "model-b", "b", "readwrite", monkeypatch)
    assert rollouts(other)["hits"] == 0, "a container serving another model got the first model's answers"
    assert rollouts(other)["misses"] == rollouts(first)["misses"]
    assert other["namespace"] != first["namespace"]
    again = await run(tmp_path, "model-a", "a-again", "readwrite", monkeypatch)
    assert rollouts(again)["misses"] == 0 and rollouts(again)["hits"] == rollouts(first)["misses"]
    assert again["namespace"] == first["namespace"]
    replay = await run(tmp_path, "model-a", "replay", "readonly", monkeypatch)  # contacts nothing
    assert replay["namespace"] == first["namespace"] and replay["misses"] == 0 and replay["hits"] > 0


@pytest.mark.anyio
async def test_a_container_that_reports_no_model_keeps_the_config_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = await run(tmp_path, None, "plain", "readwrite", monkeypatch)
    assert profile["namespace"] == load_config(write_config(tmp_path, None)).cache_namespace()
