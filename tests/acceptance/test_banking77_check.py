"""The Banking77 cookbook's start-up check through whole runs: a policy endpoint that does not serve the configured
model fails the run before anything is spent, and the model the endpoint serves (its ``GET /models`` entry) joins
the cache namespace, so a config pointed at another server that serves another model under the same name gets none
of the first model's cached answers, while the same model behind a new port gets them all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synth_opt import ContainerCheckError, GepaRun, load_config
from synth_opt.testing import FakeOpenAI, serve_fake_openai

from .test_banking77_cli import pytestmark as needs_data
from .test_banking77_llm import llm_config

pytestmark = needs_data

KEY = "sk-fake-banking77"


def server(meta: dict[str, Any], *, models: tuple[str, ...] = ("fake-model",)) -> FakeOpenAI:
    return FakeOpenAI(lambda query: "card_arrival", api_key=KEY, models=models, model_meta=meta)


async def cached_run(tmp_path: Path, fake: FakeOpenAI, run_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SYNTH_OPTIMIZERS_RUN_ID", run_id)
    monkeypatch.setenv("SYNTH_OPTIMIZERS_CACHE_MODE", "readwrite")
    with serve_fake_openai(fake) as base_url:
        result = await GepaRun(load_config(llm_config(tmp_path, base_url))).execute_async()
    assert result.status == "completed" and result.cache_profile_path is not None
    profile: dict[str, Any] = json.loads(Path(result.cache_profile_path).read_text())
    counts: dict[str, int] = profile["by_boundary"]["container.rollout"]
    return profile["namespace"], counts


@pytest.mark.anyio
async def test_the_model_the_endpoint_serves_chooses_the_cache_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("B77_FAKE_KEY", KEY)
    first_server = server({"file": "model-a.gguf", "n_params": 494032768})
    first, first_counts = await cached_run(tmp_path, first_server, "a", monkeypatch)
    assert first_counts["misses"] > 0 and first_counts["hits"] == 0
    other, other_counts = await cached_run(tmp_path, server({"file": "model-b.gguf"}), "b", monkeypatch)
    assert other != first and other_counts["hits"] == 0, "another model under the same name got cached answers"
    again_server = server({"file": "model-a.gguf", "n_params": 494032768})  # a new process, a new port
    again, again_counts = await cached_run(tmp_path, again_server, "a-again", monkeypatch)
    assert again == first and again_counts["misses"] == 0 and again_counts["hits"] == first_counts["misses"]
    assert first_server.requests and not again_server.requests  # every rollout answered from the cache


@pytest.mark.anyio
async def test_an_endpoint_without_the_model_fails_the_run_before_any_rollout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("B77_FAKE_KEY", KEY)
    fake = server({}, models=("another-model",))
    with serve_fake_openai(fake) as base_url:
        config = load_config(llm_config(tmp_path, base_url))
        with pytest.raises(ContainerCheckError) as caught:
            await GepaRun(config).execute_async()
    message = caught.value.message
    assert "'fake-model'" in message and "'another-model'" in message and base_url in message
    assert not fake.requests, "a rollout reached the model before the check failed"
    feed = (tmp_path / "runs" / "latest" / "events.jsonl").read_text()
    assert '"container.checked"' in feed and '"rollout.' not in feed
    assert KEY not in feed
