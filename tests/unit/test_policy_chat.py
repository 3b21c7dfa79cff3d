"""ChatEndpoint: the llm policies' chat-completions call, against httpx.MockTransport and the fake OpenAI server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from synth_opt.policies.chat import DEFAULT_BASE_URL, ChatEndpoint, LlmPolicyError
from synth_opt.testing.fake_openai import FakeOpenAI, FakeOpenAIError, serve_fake_openai

KEY_ENV = "POLICY_CHAT_TEST_KEY"
SECRET = "sk-test-not-a-real-key"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]


def _completion(content: Any = "4", usage: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"choices": [{"message": {"role": "assistant", "content": content}}]}
    if usage is not None:
        body["usage"] = usage
    return body


def _transport(
    answer: Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request] | None = None
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return answer(request)

    return httpx.MockTransport(handler)


def _policy(**overrides: Any) -> dict[str, Any]:
    return {"type": "llm", "model": "m", "base_url": "http://llm.test/v1/", **overrides}


@pytest.mark.anyio
async def test_one_call_sends_the_policy_settings_and_prices_the_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    policy = _policy(
        api_key_env=KEY_ENV,
        max_tokens=7,
        temperature=0.5,
        config={"input_cost_per_million": 2.0, "output_cost_per_million": 10.0},
    )
    endpoint = ChatEndpoint.from_policy(policy, default_max_tokens=32)
    seen: list[httpx.Request] = []
    usage = {"prompt_tokens": 1000, "completion_tokens": 30}
    transport = _transport(lambda request: httpx.Response(200, json=_completion("4", usage)), seen)
    text, call_usage = await endpoint.complete_once(MESSAGES, transport=transport)
    assert text == "4"
    assert call_usage == {
        "calls": 1,
        "prompt_tokens": 1000,
        "completion_tokens": 30,
        "total_tokens": 1030,
        "cost_usd": (1000 * 2.0 + 30 * 10.0) / 1_000_000,
    }
    (request,) = seen
    assert str(request.url) == "http://llm.test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"model": "m", "messages": MESSAGES, "max_tokens": 7, "temperature": 0.5}


@pytest.mark.anyio
async def test_defaults_no_key_no_prices_and_missing_usage() -> None:
    endpoint = ChatEndpoint.from_policy({"model": "m"}, default_max_tokens=32)
    assert endpoint.base_url == DEFAULT_BASE_URL and endpoint.timeout_seconds == 60.0
    seen: list[httpx.Request] = []
    text, usage = await endpoint.complete_once(
        MESSAGES, transport=_transport(lambda request: httpx.Response(200, json=_completion(None)), seen)
    )
    assert text == ""
    assert usage == {"calls": 1, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost_usd": 0.0}
    assert "authorization" not in seen[0].headers
    assert json.loads(seen[0].content)["max_tokens"] == 32 and json.loads(seen[0].content)["temperature"] == 0.0


def test_the_policy_table_is_checked_model_then_key_then_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(LlmPolicyError, match=r"^policy\.model is required for the llm policy$") as no_model:
        ChatEndpoint.from_policy({"api_key_env": KEY_ENV, "config": "x"}, default_max_tokens=1)
    assert no_model.value.status == 400
    with pytest.raises(LlmPolicyError, match=f"policy.api_key_env names {KEY_ENV}, which is not set") as no_key:
        ChatEndpoint.from_policy(_policy(api_key_env=KEY_ENV, config="x"), default_max_tokens=1)
    assert no_key.value.status == 400
    with pytest.raises(LlmPolicyError, match=r"^policy\.config must be a table$") as bad_config:
        ChatEndpoint.from_policy(_policy(config=["x"]), default_max_tokens=1)
    assert bad_config.value.status == 422


def test_the_key_never_shows_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    endpoint = ChatEndpoint("m", api_key_env=KEY_ENV, max_tokens=1)
    assert SECRET not in repr(endpoint)
    assert repr(endpoint) == f"ChatEndpoint(base_url={DEFAULT_BASE_URL!r}, model='m')"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("upstream", "status"),
    [(400, 400), (401, 400), (404, 400), (408, 408), (425, 425), (429, 429), (500, 502), (503, 502)],
)
async def test_an_http_error_maps_to_retryable_or_not(upstream: int, status: int) -> None:
    endpoint = ChatEndpoint("m", base_url="http://llm.test/v1", max_tokens=1, retry_base_seconds=0.01)
    transport = _transport(lambda request: httpx.Response(upstream, text="x" * 300))
    with pytest.raises(LlmPolicyError) as error:
        await endpoint.complete_once(MESSAGES, transport=transport)
    assert error.value.status == status
    assert str(error.value) == f"LLM endpoint http://llm.test/v1 answered {upstream}: {'x' * 200}"


@pytest.mark.anyio
async def test_an_unreachable_endpoint_or_a_reply_that_is_no_completion_is_a_502() -> None:
    endpoint = ChatEndpoint("m", base_url="http://llm.test/v1", max_tokens=1, retry_base_seconds=0.01)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(LlmPolicyError, match=r"^LLM endpoint http://llm.test/v1 unreachable: connection refused"):
        await endpoint.complete_once(MESSAGES, transport=httpx.MockTransport(refuse))
    for body in (b"not json", b'{"choices": []}', b'{"choices": [{}]}', b"[1]"):
        transport = _transport(lambda request, body=body: httpx.Response(200, content=body))
        with pytest.raises(LlmPolicyError, match="sent no chat completion") as error:
            await endpoint.complete_once(MESSAGES, transport=transport)
        assert error.value.status == 502
    async with endpoint.client(httpx.MockTransport(refuse)) as client:
        with pytest.raises(LlmPolicyError, match="unreachable") as error:
            await endpoint.complete(client, MESSAGES)
        assert error.value.status == 502 and isinstance(error.value.__cause__, httpx.ConnectError)


@pytest.mark.anyio
async def test_several_calls_share_one_client_and_usage_adds_up() -> None:
    endpoint = ChatEndpoint(
        "m", base_url="http://llm.test/v1", max_tokens=4, input_cost_per_million=1.0, output_cost_per_million=3.0
    )
    seen: list[httpx.Request] = []
    usage = {"prompt_tokens": 10, "completion_tokens": 2}
    transport = _transport(lambda request: httpx.Response(200, json=_completion("ok", usage)), seen)
    async with endpoint.client(transport) as client:
        replies = [await endpoint.complete(client, MESSAGES) for _ in range(3)]
    assert [text for text, _ in replies] == ["ok"] * 3 and len(seen) == 3
    assert endpoint.usage(30, 6, calls=3) == {
        "calls": 3,
        "prompt_tokens": 30,
        "completion_tokens": 6,
        "total_tokens": 36,
        "cost_usd": (30 * 1.0 + 6 * 3.0) / 1_000_000,
    }


@pytest.mark.anyio
async def test_against_the_fake_openai_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    fake = FakeOpenAI(lambda prompt: "four", api_key=SECRET)  # the fake checks the bearer key
    with serve_fake_openai(fake) as base_url:
        endpoint = ChatEndpoint.from_policy(
            {"model": "fake-model", "base_url": base_url, "api_key_env": KEY_ENV}, default_max_tokens=8
        )
        text, usage = await endpoint.complete_once(MESSAGES)
    assert text == "four"
    assert usage["calls"] == 1 and usage["completion_tokens"] == 1 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + 1 and usage["cost_usd"] == 0.0
    (recorded,) = fake.requests
    assert recorded.body["model"] == "fake-model" and recorded.body["max_tokens"] == 8


@pytest.mark.anyio
async def test_transient_failures_are_retried_and_only_the_served_call_is_counted() -> None:
    failures = [FakeOpenAIError(503), FakeOpenAIError(429, "slow down", headers={"Retry-After": "0.3"})]

    def respond(prompt: str) -> str:
        if failures:
            raise failures.pop(0)
        return "four"

    fake = FakeOpenAI(respond)
    with serve_fake_openai(fake) as base_url:
        endpoint = ChatEndpoint.from_policy({"model": "fake-model", "base_url": base_url}, default_max_tokens=8)
        endpoint.backoff.base_seconds = 0.01
        text, usage = await endpoint.complete_once(MESSAGES)
    assert text == "four" and len(fake.requests) == 3
    assert usage["calls"] == 1 and usage["total_tokens"] == fake.served[0]["total_tokens"]


@pytest.mark.anyio
async def test_retries_are_bounded_by_config_max_retries_and_other_4xx_are_not_retried() -> None:
    def overloaded(prompt: str) -> str:
        raise FakeOpenAIError(502)

    fake = FakeOpenAI(overloaded)
    with serve_fake_openai(fake) as base_url:
        policy = {"model": "fake-model", "base_url": base_url, "config": {"max_retries": 2}}
        endpoint = ChatEndpoint.from_policy(policy, default_max_tokens=8)
        endpoint.backoff.base_seconds = 0.01
        with pytest.raises(LlmPolicyError) as error:
            await endpoint.complete_once(MESSAGES)
    assert error.value.status == 502 and len(fake.requests) == 3

    def bad_request(prompt: str) -> str:
        raise FakeOpenAIError(400, "unknown model")

    fake = FakeOpenAI(bad_request)
    with serve_fake_openai(fake) as base_url:
        endpoint = ChatEndpoint.from_policy({"model": "fake-model", "base_url": base_url}, default_max_tokens=8)
        with pytest.raises(LlmPolicyError) as error:
            await endpoint.complete_once(MESSAGES)
    assert error.value.status == 400 and len(fake.requests) == 1
