"""CodexAppServerProposer against a real subprocess of the fake app-server."""

from __future__ import annotations

import json
import os
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from synth_opt.errors import ConfigError, ProposerError, ProposerReplyError, ProposerUnavailableError
from synth_opt.proposers.codex import CodexAppServerProposer, config_override_argv
from synth_opt.proposers.factory import CODEX_WORKDIR_NAME, build_proposer
from synth_opt.proposers.reflection import ReflectionRequest, ReflectiveRecord, render_prompt
from synth_opt.testing.fake_app_server import LOG_NAME, MARKER


def _request(proposals: int = 1) -> ReflectionRequest:
    return ReflectionRequest(
        candidate_id="cand-0",
        candidate={"system_prompt": "You are a careful classifier."},
        target_module="system_prompt",
        records=(
            ReflectiveRecord(
                task_id="t1", task={"text": "great"}, output="negative", reward=0.0, feedback="wrong label"
            ),
        ),
        task_info="Classify sentiment.",
        proposals=proposals,
    )


def _proposer(
    tmp_path: Path, mode: str, *, stall: float = 5.0, timeout: float = 20.0, **kwargs: Any
) -> CodexAppServerProposer:
    return CodexAppServerProposer(
        [sys.executable, "-m", "synth_opt.testing.fake_app_server", "--mode", mode],
        codex_home=tmp_path / "codex_home",
        workdir=tmp_path / "work",
        model=kwargs.pop("model", None),
        config_overrides=kwargs.pop("config_overrides", {}),
        timeout_seconds=timeout,
        message_stall_timeout_seconds=stall,
        **kwargs,
    )


def _log(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "codex_home" / LOG_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def _wait_for_logged(tmp_path: Path, method: str) -> None:
    """Poll the fake's log: it is written by another process, so there is no in-process event to wait on."""
    for _ in range(250):
        if method in [m.get("method") for m in _log(tmp_path)]:
            return
        await anyio.sleep(0.02)
    raise AssertionError(f"the fake app-server never logged {method}")


@pytest.mark.anyio
async def test_ok_turn_parses_the_proposal_and_usage(tmp_path: Path) -> None:
    proposer = _proposer(
        tmp_path,
        "ok",
        model="fake-model",
        cost_per_million_input_tokens=2.0,
        cost_per_million_output_tokens=8.0,
    )
    request = _request()
    result = await proposer.propose(request)
    await proposer.aclose()

    assert result.texts == (f"You are a careful classifier.\n{MARKER}",)
    prompt_words = len(render_prompt(request).split())
    reply_words = len(result.raw_text.split())
    assert result.usage.calls == 1
    assert result.usage.prompt_tokens == prompt_words
    assert result.usage.completion_tokens == reply_words
    assert result.usage.total_tokens == prompt_words + reply_words
    assert result.usage.cost_usd == pytest.approx((prompt_words * 2.0 + reply_words * 8.0) / 1e6)
    assert result.duration_seconds > 0

    log = _log(tmp_path)
    assert log[0]["event"] == "started"
    sent = log[1:]
    assert [m.get("method") for m in sent] == ["initialize", "initialized", "thread/start", "turn/start"]
    assert all("jsonrpc" not in m for m in sent)
    assert "id" not in sent[1]
    assert sent[0]["params"]["clientInfo"]["name"] == "synth_opt"
    thread = sent[2]["params"]
    assert thread["approvalPolicy"] == "never" and thread["sandbox"] == "read-only"
    assert thread["model"] == "fake-model" and thread["cwd"] == str(tmp_path / "work")
    turn = sent[3]["params"]
    assert turn["input"] == [{"type": "text", "text": render_prompt(request), "text_elements": []}]
    assert turn["outputSchema"]["required"] == ["proposals"]


@pytest.mark.anyio
async def test_several_proposals_and_unknown_cost(tmp_path: Path) -> None:
    proposer = _proposer(tmp_path, "ok")
    result = await proposer.propose(_request(proposals=2))
    await proposer.aclose()
    assert len(result.texts) == 2
    assert result.usage.cost_usd is None


@pytest.mark.anyio
async def test_exit_right_after_initialize_fails_fast_naming_the_exit(tmp_path: Path) -> None:
    proposer = _proposer(tmp_path, "exit-after-initialize", stall=30.0, timeout=60.0)
    started = time.monotonic()
    with pytest.raises(ProposerError) as caught:
        await proposer.propose(_request())
    await proposer.aclose()
    assert time.monotonic() - started < 5.0
    assert "exited with code 3" in caught.value.message
    assert "unknown variant `chat`" in caught.value.message
    assert caught.value.detail["exit_code"] == 3


@pytest.mark.anyio
async def test_a_server_killed_mid_turn_is_an_outage_naming_the_signal(tmp_path: Path) -> None:
    """It started the turn, so its configuration works: its death served nothing, and the call may be made again
    (the next one launches a fresh server)."""
    proposer = _proposer(tmp_path, "die-mid-turn-once", stall=30.0, timeout=60.0)
    started = time.monotonic()
    with pytest.raises(ProposerUnavailableError) as caught:
        await proposer.propose(_request())
    assert time.monotonic() - started < 10.0
    assert "was killed by signal 9 while we waited for turn/completed" in caught.value.message
    assert "killed mid-turn" in caught.value.message
    result = await proposer.propose(_request())
    await proposer.aclose()
    assert len(result.texts) == 1


@pytest.mark.anyio
async def test_silent_server_hits_the_stall_timeout(tmp_path: Path) -> None:
    # the stall limit also covers the fake server's start-up, which takes over a second on a loaded machine
    proposer = _proposer(tmp_path, "never-answer", stall=3.0, timeout=60.0)
    started = time.monotonic()
    with pytest.raises(ProposerUnavailableError, match="message_stall_timeout_seconds"):
        await proposer.propose(_request())
    await proposer.aclose()
    assert time.monotonic() - started < 15.0
    assert "turn/interrupt" in [m.get("method") for m in _log(tmp_path)]


@pytest.mark.anyio
async def test_trickling_server_hits_the_whole_call_timeout(tmp_path: Path) -> None:
    proposer = _proposer(tmp_path, "trickle", stall=3.0, timeout=6.0)  # deltas every 0.2 s: never a stall
    with pytest.raises(ProposerUnavailableError, match="timeout_seconds=6"):
        await proposer.propose(_request())
    await proposer.aclose()


@pytest.mark.anyio
async def test_reply_without_proposals_is_an_error(tmp_path: Path) -> None:
    proposer = _proposer(tmp_path, "bad-reply")
    with pytest.raises(ProposerReplyError, match="no parseable proposal") as caught:
        await proposer.propose(_request())
    await proposer.aclose()
    assert caught.value.raw_reply == "I read the examples; the current prompt already looks fine to me."
    assert caught.value.usage.completion_tokens == len(caught.value.raw_reply.split())  # what the turn reported


@pytest.mark.anyio
async def test_failed_turn_is_an_error_with_the_turn_error(tmp_path: Path) -> None:
    proposer = _proposer(tmp_path, "turn-failed")
    with pytest.raises(ProposerReplyError, match="'failed': fake upstream error") as caught:
        await proposer.propose(_request())
    await proposer.aclose()
    assert "fake upstream error" in caught.value.raw_reply
    assert caught.value.usage.prompt_tokens > 0  # no usage reported: estimated from the turn text


@pytest.mark.anyio
async def test_a_negative_token_count_fails_the_proposal_at_an_estimate(tmp_path: Path) -> None:
    proposer = _proposer(tmp_path, "negative-usage")
    with pytest.raises(ProposerReplyError) as caught:
        await proposer.propose(_request())
    await proposer.aclose()
    message = caught.value.message
    assert "tokenUsage.outputTokens is -1650000: usage cannot be negative" in message, message
    assert caught.value.usage.prompt_tokens > 0 and caught.value.usage.completion_tokens > 0  # the estimate


@pytest.mark.anyio
async def test_server_request_is_declined_and_the_turn_completes(tmp_path: Path) -> None:
    proposer = _proposer(tmp_path, "server-request", stall=5.0)
    result = await proposer.propose(_request())
    await proposer.aclose()
    assert result.texts == (f"You are a careful classifier.\n{MARKER}",)
    answers = [m for m in _log(tmp_path) if m.get("id") == "srv_approval_1"]
    assert answers == [{"id": "srv_approval_1", "result": {"decision": "decline"}}]


@pytest.mark.anyio
async def test_cancellation_interrupts_and_kills_the_process(tmp_path: Path) -> None:
    proposer = _proposer(tmp_path, "never-answer", stall=30.0, timeout=60.0)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(proposer.propose, _request())
        await _wait_for_logged(tmp_path, "turn/start")
        tasks.cancel_scope.cancel()
    await proposer.aclose()
    log = _log(tmp_path)
    pid = log[0]["pid"]
    assert "turn/interrupt" in [m.get("method") for m in log]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.anyio
async def test_cancellation_before_the_turn_start_reply_still_interrupts_the_turn(tmp_path: Path) -> None:
    proposer = _proposer(tmp_path, "slow-turn-start", stall=30.0, timeout=60.0)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(proposer.propose, _request())
        await _wait_for_logged(tmp_path, "turn/start")
        tasks.cancel_scope.cancel()
    await proposer.aclose()
    interrupts = [m for m in _log(tmp_path) if m.get("method") == "turn/interrupt"]
    assert [m["params"]["turnId"] for m in interrupts] == ["turn_fake_1"]


@pytest.mark.anyio
async def test_aclose_stops_a_call_in_flight(tmp_path: Path) -> None:
    proposer = _proposer(tmp_path, "never-answer", stall=30.0, timeout=60.0)
    failures: list[BaseException] = []

    async def call() -> None:
        try:
            await proposer.propose(_request())
        except ProposerError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call)
        await _wait_for_logged(tmp_path, "turn/start")
        await proposer.aclose()
    assert len(failures) == 1 and "closed" in str(failures[0])
    with pytest.raises(ProcessLookupError):
        os.kill(_log(tmp_path)[0]["pid"], 0)


@pytest.mark.anyio
async def test_aclose_refuses_new_calls(tmp_path: Path) -> None:
    proposer = _proposer(tmp_path, "ok")
    await proposer.aclose()
    with pytest.raises(ProposerError, match="closed"):
        await proposer.propose(_request())


@pytest.mark.anyio
async def test_missing_command_is_a_proposer_error(tmp_path: Path) -> None:
    proposer = CodexAppServerProposer(
        [str(tmp_path / "no-such-codex")],
        codex_home=tmp_path / "home",
        workdir=tmp_path / "work",
        model=None,
        config_overrides={},
        timeout_seconds=5,
        message_stall_timeout_seconds=5,
    )
    with pytest.raises(ProposerError, match="could not start"):
        await proposer.propose(_request())
    await proposer.aclose()


def test_codex_home_and_config_overrides(tmp_path: Path) -> None:
    overrides = {
        "model_provider": "fake",
        "model_providers.fake": {
            "base_url": "http://127.0.0.1:1/v1",
            "env_key": "K",
            "wire_api": "responses",
        },
        "model_reasoning_effort": "low",
        "retries": 0,
        "flags": [True, 1.5, 'a"b\x7f'],
        "odd key": {"dotted.key": "x"},
    }
    proposer = _proposer(tmp_path, "ok", config_overrides=overrides)
    assert (tmp_path / "codex_home").is_dir() and (tmp_path / "work").is_dir()
    argv = config_override_argv(overrides)
    assert proposer.argv[-len(argv) :] == tuple(argv)
    assert argv[0::2] == ["-c"] * len(overrides)
    for pair, (key, value) in zip(argv[1::2], overrides.items(), strict=True):
        name, _, text = pair.partition("=")
        assert name == key
        assert tomllib.loads(f"x = {text}")["x"] == value
    with pytest.raises(ConfigError, match=r"config\.bad"):
        config_override_argv({"bad": None})


@dataclass
class _Section:
    command: list[str] | None
    backend: str = "codex_app_server"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    codex_home: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: float = 30.0
    message_stall_timeout_seconds: float = 10.0
    proposals_per_call: int = 1
    cost_per_million_input_tokens: float = 0.0
    cost_per_million_output_tokens: float = 0.5


@pytest.mark.anyio
async def test_factory_builds_codex_with_run_local_state(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "synth_opt.testing.fake_app_server"]
    proposer = build_proposer(_Section(command=command, config={"model_reasoning_effort": "low"}), run_dir=tmp_path)
    assert isinstance(proposer, CodexAppServerProposer) and proposer.backend == "codex_app_server"
    assert proposer.codex_home == tmp_path / "codex_home" and proposer.codex_home.is_dir()
    assert proposer.workdir == tmp_path / CODEX_WORKDIR_NAME
    assert proposer.argv == (*command, "-c", 'model_reasoning_effort="low"')
    result = await proposer.propose(_request())
    await proposer.aclose()
    assert result.usage.cost_usd is not None and result.usage.cost_usd > 0
    default = build_proposer(_Section(command=None, codex_home=tmp_path / "elsewhere"), run_dir=tmp_path)
    assert isinstance(default, CodexAppServerProposer)
    assert default.argv == ("codex", "app-server") and default.codex_home == tmp_path / "elsewhere"


def test_a_base_url_becomes_codex_s_model_provider_unless_the_config_chooses_one(tmp_path: Path) -> None:
    command = ["codex", "app-server"]
    section = _Section(command=command, base_url="http://127.0.0.1:8080/v1", api_key_env="LOCAL_KEY")
    proposer = build_proposer(section, run_dir=tmp_path)
    assert isinstance(proposer, CodexAppServerProposer)
    provider = (
        'model_providers.synth_opt={name = "synth_opt endpoint", base_url = "http://127.0.0.1:8080/v1", '
        'wire_api = "responses", env_key = "LOCAL_KEY"}'
    )
    assert proposer.argv == (*command, "-c", provider, "-c", 'model_provider="synth_opt"')
    chosen = _Section(command=command, base_url="http://127.0.0.1:8080/v1", config={"model_provider": "mine"})
    assert build_proposer(chosen, run_dir=tmp_path).argv == (*command, "-c", 'model_provider="mine"')
    without = build_proposer(_Section(command=command), run_dir=tmp_path)
    assert without.argv == tuple(command)
