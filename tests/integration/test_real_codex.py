"""The real ``codex app-server`` as the proposer, its model a deterministic fake Responses-API server.

Codex (installed from npm into a cache outside the repository, see ``codex_support``) runs with a temporary
``CODEX_HOME``, a read-only sandbox and approval ``never``, and reaches the fake through a custom model provider
(``-c model_providers.NAME={base_url=..., wire_api="responses"}``). Skipped only where npm is missing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.proposers.codex import CodexAppServerProposer
from synth_opt.proposers.reflection import (
    BASE_INSTRUCTIONS,
    REPLY_SCHEMA,
    ReflectionRequest,
    ReflectiveRecord,
    render_prompt,
)
from synth_opt.testing.fake_openai import FakeOpenAI, serve_fake_openai

from .codex_support import FAKE_MODEL, PROVIDER, answer_adding_responder, codex_binary, codex_overrides

TINY = Path(__file__).with_name("tiny_container.py")
KEY_ENV = "SYNTH_OPT_FAKE_MODEL_KEY"


@pytest.fixture(scope="module")
def codex() -> Path:
    return codex_binary()


def request() -> ReflectionRequest:
    row = {"task_id": "t3", "question": "say word 3", "answer": "w3"}
    return ReflectionRequest(
        candidate_id="seed",
        candidate={"instruction": "Say hello."},
        target_module="instruction",
        records=(ReflectiveRecord("t3", row, {"reply": "hello"}, 0.0, "expected 'w3'"),),
        task_info="Reply with the answer word.",
    )


@pytest.mark.anyio
async def test_one_call_through_the_real_codex_app_server_returns_the_model_proposal_and_its_usage(
    tmp_path: Path, codex: Path
) -> None:
    fake = FakeOpenAI(answer_adding_responder, api_key="fake-key-for-codex")
    with serve_fake_openai(fake) as base_url:
        overrides = codex_overrides(base_url)
        overrides[f"model_providers.{PROVIDER}"]["env_key"] = KEY_ENV
        proposer = CodexAppServerProposer(
            [str(codex), "app-server"],
            codex_home=tmp_path / "codex_home",
            workdir=tmp_path / "work",
            model=FAKE_MODEL,
            config_overrides=overrides,
            timeout_seconds=60,
            message_stall_timeout_seconds=30,
            env={KEY_ENV: "fake-key-for-codex"},
        )
        try:
            started = time.monotonic()
            result = await proposer.propose(request())
        finally:
            await proposer.aclose()
    assert time.monotonic() - started < 30
    assert result.texts == ("Say hello. w3",)
    # the fake counts words: the prompt is the last user message, the reply is the proposals JSON
    prompt_words, reply_words = len(render_prompt(request()).split()), len(result.raw_text.split())
    assert result.usage.calls == 1
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (prompt_words, reply_words)
    assert result.usage.total_tokens == prompt_words + reply_words > 0
    # what codex made of our thread/start and turn/start
    assert [r.path for r in fake.requests] == ["/v1/responses"]
    body = fake.requests[0].body
    assert body["model"] == FAKE_MODEL and body["stream"] is True
    assert body["text"]["format"]["type"] == "json_schema" and body["text"]["format"]["schema"] == REPLY_SCHEMA
    developer = [part["text"] for item in body["input"] if item.get("role") == "developer" for part in item["content"]]
    assert BASE_INSTRUCTIONS in developer, "baseInstructions reach the model as a developer message"
    turn_metadata = json.loads(body["client_metadata"]["x-codex-turn-metadata"])
    assert turn_metadata["sandbox_mode"] == "read-only"
    assert (tmp_path / "codex_home" / "sessions").is_dir(), "codex kept its state in the temporary CODEX_HOME"


def toml_string(text: str) -> str:
    return json.dumps(text)


def config(tmp_path: Path, codex: Path, base_url: str) -> Path:
    provider = codex_overrides(base_url)[f"model_providers.{PROVIDER}"]
    inline = ", ".join(f"{key} = {json.dumps(value)}" for key, value in provider.items())
    path = tmp_path / "gepa.toml"
    path.write_text(
        f"""
[run]
run_id = "real-codex"

[container]
command = [{toml_string(sys.executable)}, {toml_string(str(TINY))}, "{{port}}"]
startup_timeout_seconds = 20

[dataset]
train_ids = {{count = 6}}
heldout_ids = {{count = 4}}

[proposer]
backend = "codex_app_server"
command = [{toml_string(str(codex))}, "app-server"]
model = "{FAKE_MODEL}"
timeout_seconds = 60
message_stall_timeout_seconds = 30

[proposer.config]
"model_providers.{PROVIDER}" = {{{inline}}}
model_provider = "{PROVIDER}"

[gepa]
max_train_rollouts = 30
minibatch_size = 2

[cache]
mode = "off"
"""
    )
    return path


@pytest.mark.anyio
async def test_a_gepa_run_whose_proposer_is_the_real_codex_improves_the_tiny_container(
    tmp_path: Path, codex: Path
) -> None:
    fake = FakeOpenAI(answer_adding_responder)
    with serve_fake_openai(fake) as base_url:
        run = GepaRun(load_config(config(tmp_path, codex, base_url)))
        started = time.monotonic()
        result = await run.execute_async()
    assert time.monotonic() - started < 60
    assert result.status == "completed", result.stop_reason
    calls = result.usage["proposer"]["calls"]
    assert calls > 0 and len(fake.requests) == calls, "one model request per proposer call"
    assert result.usage["proposer"]["total_tokens"] > 0
    assert result.proposals >= 1 and result.accepted >= 1
    assert result.best_train_score is not None and result.seed_train_score is not None
    assert result.best_train_score > result.seed_train_score
    assert result.best_candidate["instruction"].startswith("Say hello. w")
    assert (run.run_dir / "codex_home").is_dir(), "CODEX_HOME is run-local"
