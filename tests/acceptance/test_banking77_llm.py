"""The Banking77 cookbook's LLM policy through a whole run against the project's fake OpenAI-compatible server:
the container subprocess sends the candidate as the system prompt, and the usage the server reports flows into
the run's usage and cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.testing import FakeOpenAI, serve_fake_openai

from .test_banking77_cli import pytestmark as needs_data
from .test_banking77_cli import small_config

pytestmark = needs_data

INPUT_PRICE, OUTPUT_PRICE = 2.0, 10.0  # dollars per million tokens


def llm_config(folder: Path, base_url: str) -> Path:
    path = small_config(folder, budget=120, cache="off")
    text = path.read_text()
    replacements = {
        'type = "keyword"': (
            f'type = "llm"\nmodel = "fake-model"\nbase_url = "{base_url}"\napi_key_env = "B77_FAKE_KEY"\n'
            f"max_tokens = 8\nconfig = {{ input_cost_per_million = {INPUT_PRICE}, "
            f"output_cost_per_million = {OUTPUT_PRICE} }}"
        ),
        "pareto_ids = { count = 60 }": "pareto_ids = { count = 10 }",
        "heldout_ids = { count = 100 }": "heldout_ids = { count = 10 }",
        "minibatch_size = 20": "minibatch_size = 5",
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)
    return path


@pytest.mark.anyio
async def test_the_llm_policy_sends_the_candidate_and_its_usage_reaches_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("B77_FAKE_KEY", "sk-fake-banking77")
    fake = FakeOpenAI(lambda query: "card_arrival", api_key="sk-fake-banking77")
    with serve_fake_openai(fake) as base_url:
        result = await GepaRun(load_config(llm_config(tmp_path, base_url))).execute_async()
    assert result.status == "completed"
    rollouts = result.rollouts_used["train"] + result.rollouts_used["heldout"]
    assert len(fake.requests) == rollouts > 0

    registry = json.loads(Path(result.candidate_registry_path).read_text())
    prompts = {entry["payload"]["system_prompt"] for entry in registry["candidates"].values()}
    for request in fake.requests:
        system = request.body["messages"][0]
        assert system["role"] == "system" and system["content"] in prompts  # the candidate text, verbatim
        assert request.body["messages"][1]["content"] == request.prompt  # the customer's query
        assert request.body["max_tokens"] == 8

    prompt_tokens = sum(len(request.prompt.split()) for request in fake.requests)
    completion_tokens = len(fake.requests)  # one word per reply
    usage = result.usage["rollout"]
    assert usage["prompt_tokens"] == prompt_tokens and usage["completion_tokens"] == completion_tokens
    expected_cost = (prompt_tokens * INPUT_PRICE + completion_tokens * OUTPUT_PRICE) / 1_000_000
    assert usage["cost_usd"] == pytest.approx(expected_cost, rel=1e-6)
    assert result.cost_usd == pytest.approx(expected_cost + result.usage["proposer"]["cost_usd"], rel=1e-6)
    assert "sk-fake-banking77" not in (Path(result.event_feed_path)).read_text()
