"""A whole run with the ``openai_compatible`` proposer over real HTTP against the fake OpenAI-compatible server:
usage and cost flow into the result, and a cost limit stops the search by name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.events.normalize import read_feed
from synth_opt.proposers.reflection import REFLECTION_BLOCK_TAG
from synth_opt.testing import FakeOpenAI, serve_fake_openai
from synth_opt.testing.fake_openai import Responder

from .test_pipeline_fake import new_fake

BLOCK = re.compile(r"```json " + REFLECTION_BLOCK_TAG + r"\n(.*?)\n```", re.DOTALL)


def learn(prompt: str) -> str:
    """Add the answer of the first failed record to the text: what a good model would do on this toy task."""
    request = json.loads(BLOCK.search(prompt).group(1))  # type: ignore[union-attr]
    text = request["current_text"]
    for record in request["records"]:
        if record["reward"] < 1 and record["task"]["answer"] not in text.split():
            text = f"{text} {record['task']['answer']}"
            break
    return json.dumps({"proposals": [text]})


def config(tmp_path: Path, url: str, *, wire_api: str, limits: str) -> Path:
    path = tmp_path / f"{wire_api}.toml"
    path.write_text(
        f"""
[run]
run_id = "openai-{wire_api}"

[container]
url = "http://fake-container.test"

[dataset]
train_ids = {{count = 12}}
heldout_ids = {{count = 10}}
pareto_ids = {{count = 8}}

[proposer]
backend = "openai_compatible"
base_url = "{url}"
model = "fake-model"
api_key_env = "FAKE_OPENAI_KEY"
cost_per_million_input_tokens = 2000.0
cost_per_million_output_tokens = 8000.0
config = {{ wire_api = "{wire_api}" }}

[gepa]
minibatch_size = 3
{limits}

[cache]
mode = "off"
"""
    )
    return path


@pytest.mark.anyio
@pytest.mark.parametrize("wire_api", ["chat", "responses"])
async def test_usage_and_cost_of_the_proposer_flow_into_the_result(
    tmp_path: Path, wire_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "test-key-not-a-secret")
    fake_server = FakeOpenAI(learn)
    with serve_fake_openai(fake_server) as url:
        path = config(tmp_path, url, wire_api=wire_api, limits="max_train_rollouts = 120")
        result = await GepaRun(load_config(path), container_transport=new_fake().transport()).execute_async()
    proposer = result.usage["proposer"]
    assert proposer["calls"] == len(fake_server.requests) == result.proposals > 0
    assert proposer["prompt_tokens"] > 0 and proposer["completion_tokens"] > 0
    expected = (proposer["prompt_tokens"] * 2000 + proposer["completion_tokens"] * 8000) / 1e6
    assert proposer["cost_usd"] == pytest.approx(expected)
    assert result.cost_usd == pytest.approx(expected + result.usage["rollout"]["cost_usd"])
    assert result.accepted > 0 and result.best_train_score > result.seed_train_score  # type: ignore[operator]
    path_seen = {request.path for request in fake_server.requests}
    assert path_seen == {"/v1/chat/completions" if wire_api == "chat" else "/v1/responses"}


@pytest.mark.anyio
async def test_a_cost_limit_stops_the_run_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "test-key-not-a-secret")
    limits = """max_train_rollouts = 100000
reuse_evaluations = false
max_cost_usd = 25.0
proposer_estimated_cost_usd = 3.0
rollout_estimated_cost_usd = 0.0001"""
    with serve_fake_openai(learn) as url:
        path = config(tmp_path, url, wire_api="chat", limits=limits)
        result = await GepaRun(load_config(path), container_transport=new_fake().transport()).execute_async()
    assert result.stop_reason == "max_cost_usd"
    assert result.cost_usd is not None and 0 < result.cost_usd <= 25.0
    assert result.usage["proposer"]["calls"] >= 2


def half_an_emoji(prompt: str) -> str:
    """:func:`learn`'s proposal with half an emoji after the word: the model writes a lone surrogate as a JSON
    escape (``\\ud83d``) in its reply."""
    (text,) = json.loads(learn(prompt))["proposals"]
    return '{"proposals": [' + json.dumps(text)[:-1] + ' \\ud83d"]}'


@pytest.mark.anyio
async def test_half_an_emoji_in_the_model_s_reply_is_kept_as_a_replacement_character(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proposal holding a lone surrogate becomes a candidate holding U+FFFD in its place: the run writes its feed,
    workspace, registry and artifacts (each would fail on the surrogate) and the search goes on."""
    monkeypatch.setenv("FAKE_OPENAI_KEY", "test-key-not-a-secret")
    with serve_fake_openai(FakeOpenAI(half_an_emoji)) as url:
        path = config(tmp_path, url, wire_api="chat", limits="max_train_rollouts = 120")
        result = await GepaRun(load_config(path), container_transport=new_fake().transport()).execute_async()
    assert result.status == "completed" and result.accepted > 0
    assert "\ufffd" in result.best_candidate["instruction"]
    assert "\ufffd" in Path(result.candidate_registry_path).read_text(encoding="utf-8")


def talkative(prompt: str) -> str:
    """:func:`learn`'s reply, then 3,000 words of explanation: a server that ignores ``max_tokens``."""
    return learn(prompt) + "\n" + " ".join(["because"] * 3000)


@pytest.mark.anyio
@pytest.mark.parametrize("responder", [learn, talkative])
async def test_a_call_that_counts_more_than_its_reservation_is_charged_it_and_warned_of_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, responder: Responder
) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "test-key-not-a-secret")
    limits = """max_train_rollouts = 60
max_total_tokens = 10000000
proposer_estimated_tokens = 200
rollout_estimated_tokens = 1"""
    with serve_fake_openai(FakeOpenAI(responder)) as url:
        path = config(tmp_path, url, wire_api="chat", limits=limits)
        path.write_text(
            path.read_text().replace(
                'config = { wire_api = "chat" }',
                'config = { wire_api = "chat", max_tokens = 50 }\nmax_prompt_tokens = 2000',
            )
        )
        result = await GepaRun(load_config(path), container_transport=new_fake().transport()).execute_async()
    warnings = [e for e in read_feed(Path(result.event_feed_path)) if e.type == "config.warning"]
    beyond = [e.message for e in warnings if e.fields["key"] == "gepa.max_total_tokens"]
    assert result.status == "completed" and result.proposals >= 2
    if responder is learn:
        assert beyond == []  # every call within the 2,050 tokens reserved for it
        return
    assert len(beyond) == 1, beyond  # once a run, however many calls
    assert re.search(r"proposal 0 counted 3\d{3} tokens where 2050 were reserved", beyond[0]), beyond[0]
    assert result.usage["proposer"]["completion_tokens"] >= 3000 * result.proposals  # charged what it reported
