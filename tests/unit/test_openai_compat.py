"""OpenAICompatibleProposer over real HTTP against the fake OpenAI-compatible server."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from synth_opt.errors import ConfigError, ProposerError, ProposerReplyError, ProposerUnavailableError
from synth_opt.proposers.factory import build_proposer
from synth_opt.proposers.openai_compat import OpenAICompatibleProposer, WireApi
from synth_opt.proposers.reflection import (
    BASE_INSTRUCTIONS,
    ReflectionRequest,
    ReflectiveRecord,
    render_prompt,
)
from synth_opt.testing.fake_app_server import MARKER, fake_proposals
from synth_opt.testing.fake_openai import FakeOpenAI, FakeOpenAIError, serve_fake_openai
from synth_opt.urls import join_path

KEY_ENV = "FAKE_PROPOSER_KEY"
SECRET = "sk-test-not-a-real-key"


def _request() -> ReflectionRequest:
    return ReflectionRequest(
        candidate_id="cand-0",
        candidate={"system_prompt": "Answer briefly."},
        target_module="system_prompt",
        records=(ReflectiveRecord(task_id="t1", task={"q": "2+2"}, output="5", reward=0.0, feedback="wrong"),),
    )


def _propose_json(prompt: str) -> str:
    return json.dumps({"proposals": fake_proposals(prompt)})


def _proposer(
    url: str,
    wire_api: WireApi = "chat",
    *,
    prices: tuple[float | None, float | None] = (None, None),
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = 10,
) -> OpenAICompatibleProposer:
    return OpenAICompatibleProposer(
        url,
        model="fake-model",
        api_key_env=KEY_ENV,
        env={KEY_ENV: SECRET},
        timeout_seconds=timeout,
        wire_api=wire_api,
        cost_per_million_input_tokens=prices[0],
        cost_per_million_output_tokens=prices[1],
        transport=transport,
    )


@pytest.mark.anyio
@pytest.mark.parametrize("wire_api", ["chat", "responses"])
async def test_wire_formats_usage_and_cost(wire_api: WireApi) -> None:
    fake = FakeOpenAI(_propose_json, api_key=SECRET)
    request = _request()
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url, wire_api, prices=(1.0, 4.0))
        result = await proposer.propose(request)
        await proposer.aclose()

    assert result.texts == (f"Answer briefly.\n{MARKER}",)
    prompt = render_prompt(request)
    prompt_words, reply_words = len(prompt.split()), len(result.raw_text.split())
    assert result.usage.calls == 1
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (prompt_words, reply_words)
    assert result.usage.total_tokens == prompt_words + reply_words
    assert result.usage.cost_usd == pytest.approx((prompt_words * 1.0 + reply_words * 4.0) / 1e6)

    [seen] = fake.requests
    assert seen.prompt == prompt
    assert seen.headers["authorization"] == f"Bearer {SECRET}"
    assert seen.body["model"] == "fake-model"
    if wire_api == "chat":
        assert seen.path == "/v1/chat/completions"
        assert seen.body["messages"][0] == {"role": "system", "content": BASE_INSTRUCTIONS}
        assert seen.body["response_format"]["type"] == "json_schema"  # JSON is asked for by default
    else:
        assert seen.path == "/v1/responses"
        assert seen.body["instructions"] == BASE_INSTRUCTIONS


@pytest.mark.anyio
async def test_cost_is_unknown_without_prices() -> None:
    with serve_fake_openai(_propose_json) as url:
        proposer = _proposer(url)
        result = await proposer.propose(_request())
        await proposer.aclose()
    assert result.usage.cost_usd is None
    assert result.usage.prompt_tokens > 0


@pytest.mark.anyio
async def test_zero_prices_mean_free_not_unknown() -> None:
    with serve_fake_openai(_propose_json) as url:
        proposer = _proposer(url, prices=(0.0, 0.0))
        result = await proposer.propose(_request())
        await proposer.aclose()
    assert result.usage.cost_usd == 0.0 and result.usage.prompt_tokens > 0


def test_missing_api_key_variable_is_named_and_key_never_shown() -> None:
    with pytest.raises(ProposerError, match=KEY_ENV):
        OpenAICompatibleProposer("http://127.0.0.1:1/v1", model="m", api_key_env=KEY_ENV, env={}, timeout_seconds=1)
    assert SECRET not in repr(_proposer("http://127.0.0.1:1/v1"))


@pytest.mark.anyio
async def test_non_2xx_names_url_and_status() -> None:
    def refuse(prompt: str) -> str:
        raise FakeOpenAIError(403, "forbidden model")

    fake = FakeOpenAI(refuse)
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url)
        with pytest.raises(ProposerError) as caught:
            await proposer.propose(_request())
        await proposer.aclose()
    assert f"{url}/chat/completions" in caught.value.message
    assert "403" in caught.value.message
    assert SECRET not in caught.value.message
    assert len(fake.requests) == 1  # a refusal other than 429 or 5xx is never retried


@pytest.mark.anyio
@pytest.mark.parametrize("wire_api", ["chat", "responses"])
async def test_unparseable_reply_is_an_error(wire_api: WireApi) -> None:
    with serve_fake_openai(lambda prompt: "Looks good to me!") as url:
        proposer = _proposer(url, wire_api)
        with pytest.raises(ProposerReplyError, match="no parseable proposal"):
            await proposer.propose(_request())
        await proposer.aclose()


@pytest.mark.anyio
async def test_streaming_responses_events_end_with_usage() -> None:
    """The SSE stream the real codex binary will read: ordered events, final text and usage."""
    with serve_fake_openai(lambda prompt: "hello there") as url:
        async with httpx.AsyncClient() as client:
            body = {
                "model": "m",
                "input": [{"role": "user", "content": [{"type": "input_text", "text": "a b c"}]}],
            }
            response = await client.post(f"{url}/responses", json={**body, "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    types = [event["type"] for event in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.output_text.delta" in types and "response.output_item.done" in types
    assert events[-1]["response"]["usage"]["input_tokens"] == 3
    assert events[-1]["response"]["usage"]["output_tokens"] == 2
    done = next(event for event in events if event["type"] == "response.output_item.done")
    assert done["item"]["content"][0]["text"] == "hello there"


@pytest.mark.anyio
async def test_unreachable_server_is_a_proposer_error() -> None:
    with serve_fake_openai(_propose_json) as url:
        pass  # the port is closed again
    proposer = _proposer(url)
    proposer.max_retries = 0
    with pytest.raises(ProposerUnavailableError, match="served nothing"):
        await proposer.propose(_request())
    await proposer.aclose()


@pytest.mark.anyio
async def test_whole_call_timeout_through_the_transport_seam() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(5)
        return httpx.Response(200, json={})

    proposer = _proposer("http://fake.invalid/v1", transport=httpx.MockTransport(slow), timeout=0.3)
    with pytest.raises(ProposerUnavailableError, match=r"timeout_seconds=0\.3"):
        await proposer.propose(_request())
    await proposer.aclose()


@dataclass
class _Section:
    backend: str = "openai_compatible"
    command: list[str] | None = None
    model: str | None = "fake-model"
    base_url: str | None = "http://127.0.0.1:1/v1"
    api_key_env: str | None = None
    codex_home: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: float = 30.0
    message_stall_timeout_seconds: float = 10.0
    proposals_per_call: int = 1
    cost_per_million_input_tokens: float = 0.0
    cost_per_million_output_tokens: float = 0.0


@pytest.mark.anyio
async def test_factory_builds_openai_compatible_with_body_options(tmp_path: Path) -> None:
    fake = FakeOpenAI(_propose_json)
    with serve_fake_openai(fake) as url:
        section = _Section(base_url=url, config={"wire_api": "responses", "temperature": 0.2})
        proposer = build_proposer(section, run_dir=tmp_path)
        assert isinstance(proposer, OpenAICompatibleProposer) and proposer.backend == "openai_compatible"
        await proposer.propose(_request())
        await proposer.aclose()
    assert fake.requests[0].path == "/v1/responses"
    assert fake.requests[0].body["temperature"] == 0.2
    assert "authorization" not in fake.requests[0].headers


def test_factory_rejects_bad_sections(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        build_proposer(_Section(base_url=None), run_dir=tmp_path)
    with pytest.raises(ConfigError, match="wire_api"):
        build_proposer(_Section(config={"wire_api": "chat_v2"}), run_dir=tmp_path)
    with pytest.raises(ConfigError, match="backend"):
        build_proposer(_Section(backend="claude"), run_dir=tmp_path)


@pytest.mark.anyio
async def test_a_base_url_with_a_query_keeps_it_and_reaches_the_route() -> None:
    """Some gateways need a query on every request (``?api-version=...``): routes go on the path, not after it."""
    with serve_fake_openai(_propose_json) as url:
        proposer = _proposer(f"{url}?api-version=2024-10-01")
        result = await proposer.propose(_request())
        await proposer.aclose()
    assert result.texts and proposer.url == f"{url}/chat/completions?api-version=2024-10-01"
    assert join_path("http://h/v1/?k=1#f", "models") == "http://h/v1/models?k=1#f"


def _chat_reply(usage: Any) -> bytes:
    content = json.dumps({"proposals": ["Answer in one word."]})
    body = {"choices": [{"message": {"content": content}, "finish_reason": "stop"}], "usage": usage}
    return json.dumps(body).encode()  # NaN and Infinity as JSON's non-standard literals, as a hostile server sends


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("usage", "named"),
    [
        ({"prompt_tokens": float("nan"), "completion_tokens": 3}, "usage.prompt_tokens is nan, not a number"),
        ({"total_tokens": float("inf")}, "usage.total_tokens is inf, not a number"),
        ({"prompt_tokens": 5, "completion_tokens": -1650000}, "usage.completion_tokens is -1650000: usage cannot be"),
        ({"total_tokens": 10**30}, "usage.total_tokens is an integer of 31 digits, more than the 1e+09 tokens"),
    ],
)
async def test_a_reported_usage_no_ledger_can_count_fails_the_proposal_at_an_estimate(usage: Any, named: str) -> None:
    proposer = _proposer(
        "http://fake.invalid/v1",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=_chat_reply(usage))),
    )
    with pytest.raises(ProposerReplyError) as raised:
        await proposer.propose(_request())
    await proposer.aclose()
    assert named in raised.value.message and "counted at an estimate" in raised.value.message
    estimate = raised.value.usage
    assert 0 < estimate.prompt_tokens < 1000 and 0 < estimate.completion_tokens < 100, estimate


@pytest.mark.anyio
async def test_a_reply_nested_deeper_than_the_parser_goes_is_a_failed_proposal() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    proposer = _proposer(
        "http://fake.invalid/v1", transport=httpx.MockTransport(lambda r: httpx.Response(200, content=deep))
    )
    with pytest.raises(ProposerReplyError, match="not a JSON object"):
        await proposer.propose(_request())
    await proposer.aclose()


@pytest.mark.anyio
async def test_a_reply_larger_than_max_reply_bytes_is_a_failed_proposal_read_no_further() -> None:
    served: list[int] = []

    async def chunks() -> Any:
        yield b'{"choices": [{"message": {"content": "'
        for _ in range(64):  # 64 MiB, were it all read
            served.append(1)
            yield b"x" * (1024 * 1024)

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())

    proposer = OpenAICompatibleProposer(
        "http://fake.invalid/v1",
        model="fake-model",
        api_key_env=None,
        timeout_seconds=10,
        transport=httpx.MockTransport(handle),
        max_reply_bytes=1024 * 1024,
    )
    with pytest.raises(ProposerReplyError) as raised:
        await proposer.propose(_request())
    await proposer.aclose()
    assert "answered more than 1048576 bytes (proposer.max_reply_bytes)" in raised.value.message
    assert raised.value.raw_reply.startswith('{"choices"') and len(raised.value.raw_reply) <= 2000
    assert len(served) <= 2  # the rest of the body was never produced
