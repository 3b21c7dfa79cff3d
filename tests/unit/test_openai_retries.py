"""The openai_compatible proposer against a real HTTP server on loopback: what served nothing is retried with
bounded backoff (honouring Retry-After) and not billed, then is an outage; other 4xx are not retried; the server is
asked for JSON with a fallback when it refuses; a reply cut short by the token limit is a failed proposal."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

from synth_opt.errors import ProposerError, ProposerReplyError, ProposerUnavailableError
from synth_opt.proposers.factory import build_proposer
from synth_opt.proposers.openai_compat import OpenAICompatibleProposer, WireApi
from synth_opt.proposers.reflection import REPLY_SCHEMA, ReflectionRequest, ReflectiveRecord
from synth_opt.proposers.retry import Backoff
from synth_opt.testing.fake_openai import FakeOpenAI, FakeOpenAIError, FakeReply, serve_fake_openai

from .test_openai_compat import _Section

if TYPE_CHECKING:
    from synth_opt.proposers.openai_compat import ResponseFormat

GOOD = json.dumps({"proposals": ["Answer briefly and check the sum."]})


def _request() -> ReflectionRequest:
    return ReflectionRequest(
        candidate_id="cand-0",
        candidate={"system_prompt": "Answer briefly."},
        target_module="system_prompt",
        records=(ReflectiveRecord(task_id="t1", task={"q": "2+2"}, output="5", reward=0.0, feedback="wrong"),),
    )


def _proposer(
    url: str,
    *,
    max_retries: int = 3,
    wire_api: WireApi = "chat",
    response_format: ResponseFormat | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> OpenAICompatibleProposer:
    return OpenAICompatibleProposer(
        url,
        model="fake-model",
        api_key_env=None,
        timeout_seconds=10,
        wire_api=wire_api,
        response_format=response_format,
        max_retries=max_retries,
        retry_base_seconds=0.01,
        cost_per_million_input_tokens=1.0,
        cost_per_million_output_tokens=1.0,
        transport=transport,
    )


def _failing_first(failures: list[FakeOpenAIError]) -> Callable[[str], str]:
    pending = list(failures)

    def respond(prompt: str) -> str:
        if pending:
            raise pending.pop(0)
        return GOOD

    return respond


@pytest.mark.anyio
@pytest.mark.parametrize("wire_api", ["chat", "responses"])
async def test_transient_statuses_are_retried_and_only_the_served_reply_is_billed(wire_api: WireApi) -> None:
    fake = FakeOpenAI(_failing_first([FakeOpenAIError(status) for status in (429, 500, 502)]))
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url, wire_api=wire_api)
        result = await proposer.propose(_request())
        await proposer.aclose()
    assert result.texts == ("Answer briefly and check the sum.",)
    assert len(fake.requests) == 4
    assert len(fake.served) == 1
    served = fake.served[0]
    assert result.usage.calls == 1
    assert result.usage.total_tokens == served["total_tokens"]


@pytest.mark.anyio
async def test_503_and_504_are_retried_too() -> None:
    fake = FakeOpenAI(_failing_first([FakeOpenAIError(503), FakeOpenAIError(504)]))
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url)
        await proposer.propose(_request())
        await proposer.aclose()
    assert len(fake.requests) == 3


@pytest.mark.anyio
async def test_retry_after_is_honoured() -> None:
    fake = FakeOpenAI(_failing_first([FakeOpenAIError(429, "slow down", headers={"Retry-After": "1"})]))
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url)
        started = time.monotonic()
        await proposer.propose(_request())
        elapsed = time.monotonic() - started
        await proposer.aclose()
    assert len(fake.requests) == 2
    assert elapsed >= 1.0


@pytest.mark.anyio
async def test_after_max_retries_the_proposer_is_unavailable() -> None:
    def overloaded(prompt: str) -> str:
        raise FakeOpenAIError(503, "overloaded")

    fake = FakeOpenAI(overloaded)
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url, max_retries=2)
        with pytest.raises(ProposerUnavailableError) as caught:
            await proposer.propose(_request())
        await proposer.aclose()
    assert len(fake.requests) == 3  # one try and two retries
    assert "503" in caught.value.message and "max_retries = 2" in caught.value.message
    assert fake.served == []


@pytest.mark.anyio
async def test_a_retry_after_longer_than_the_call_s_timeout_ends_the_call_at_once() -> None:
    """timeout_seconds bounds the whole call: a server asking to be called again in a day is an outage now."""

    def busy(prompt: str) -> str:
        raise FakeOpenAIError(429, "come back tomorrow", headers={"Retry-After": "99999999999"})

    fake = FakeOpenAI(busy)
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url)  # timeout_seconds = 10
        with pytest.raises(ProposerUnavailableError) as caught:
            await proposer.propose(_request())
        await proposer.aclose()
    assert len(fake.requests) == 1  # no wait for a retry that could not finish in time
    assert "would pass timeout_seconds = 10" in caught.value.message and "429" in caught.value.message


@pytest.mark.anyio
async def test_a_refused_connection_is_retried_then_unavailable() -> None:
    with serve_fake_openai(lambda prompt: GOOD) as url:
        pass  # the port is closed again
    proposer = _proposer(url, max_retries=2)
    with pytest.raises(ProposerUnavailableError, match=r"after 3 attempt\(s\)"):
        await proposer.propose(_request())
    await proposer.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 404])
async def test_other_client_errors_are_not_retried(status: int) -> None:
    fake = FakeOpenAI(_failing_first([FakeOpenAIError(status, "bad model")]))
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url)
        with pytest.raises(ProposerError) as caught:
            await proposer.propose(_request())
        await proposer.aclose()
    assert not isinstance(caught.value, ProposerUnavailableError | ProposerReplyError)
    assert len(fake.requests) == 1 and str(status) in caught.value.message


def test_backoff_is_bounded_jittered_and_reproducible() -> None:
    first, second = Backoff(seed=7), Backoff(seed=7)
    delays = [first.delay(attempt) for attempt in range(8)]
    assert delays == [second.delay(attempt) for attempt in range(8)]
    assert all(0 < delay <= 8.0 for delay in delays)
    assert len(set(delays)) == len(delays)
    assert Backoff(seed=7).delay(0, retry_after=3.0) == 3.0
    assert Backoff(seed=7).delay(0, retry_after=10_000.0) == 60.0


@pytest.mark.anyio
@pytest.mark.parametrize("wire_api", ["chat", "responses"])
async def test_the_server_is_asked_for_the_reply_schema(wire_api: WireApi) -> None:
    fake = FakeOpenAI(lambda prompt: GOOD)
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url, wire_api=wire_api)
        await proposer.propose(_request())
        await proposer.aclose()
    body = fake.requests[0].body
    if wire_api == "chat":
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"] == REPLY_SCHEMA
    else:
        assert body["text"]["format"]["type"] == "json_schema"
        assert body["text"]["format"]["schema"] == REPLY_SCHEMA


@pytest.mark.anyio
@pytest.mark.parametrize("wire_api", ["chat", "responses"])
async def test_a_refused_json_schema_falls_back_to_json_object_and_stays_there(wire_api: WireApi) -> None:
    fake = FakeOpenAI(lambda prompt: GOOD, refuse_formats=frozenset({"json_schema"}))
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url, wire_api=wire_api)
        await proposer.propose(_request())
        await proposer.propose(_request())
        await proposer.aclose()

    def kind(body: dict[str, Any]) -> str:
        return str(body["response_format"]["type"] if wire_api == "chat" else body["text"]["format"]["type"])

    assert [kind(request.body) for request in fake.requests] == ["json_schema", "json_object", "json_object"]


@pytest.mark.anyio
async def test_concurrent_calls_refused_json_schema_all_settle_on_json_object() -> None:
    """Two calls refused at once step down from what each sent, so neither skips json_object (the JSON mode
    must not depend on which call was refused first)."""
    fake = FakeOpenAI(lambda prompt: GOOD, refuse_formats=frozenset({"json_schema"}))
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url)
        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(proposer.propose, _request())
        await proposer.aclose()
    kinds = [request.body.get("response_format", {}).get("type") for request in fake.requests]
    assert set(kinds) == {"json_schema", "json_object"} and proposer.response_format == "json_object", kinds


@pytest.mark.anyio
async def test_a_server_without_any_json_mode_gets_plain_requests() -> None:
    fake = FakeOpenAI(lambda prompt: GOOD, refuse_formats=frozenset({"json_schema", "json_object"}))
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url)
        result = await proposer.propose(_request())
        await proposer.aclose()
    assert result.texts == ("Answer briefly and check the sum.",)
    assert "response_format" not in fake.requests[-1].body and len(fake.requests) == 3


@pytest.mark.anyio
@pytest.mark.parametrize("wire_api", ["chat", "responses"])
async def test_a_reply_cut_short_by_the_token_limit_is_a_failed_proposal_with_its_usage(wire_api: WireApi) -> None:
    cut = '{"proposals": ["Answer briefly and chec'
    fake = FakeOpenAI(lambda prompt: FakeReply(cut, finish_reason="length"))
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url, wire_api=wire_api)
        with pytest.raises(ProposerReplyError) as caught:
            await proposer.propose(_request())
        await proposer.aclose()
    assert "cut short by the token limit" in caught.value.message
    assert caught.value.raw_reply == cut
    assert caught.value.usage.total_tokens == fake.served[0]["total_tokens"] > 0
    assert len(fake.requests) == 1  # a served reply is never retried


@pytest.mark.anyio
async def test_an_unparseable_reply_is_a_failed_proposal_with_its_usage() -> None:
    fake = FakeOpenAI(lambda prompt: "The prompt looks fine to me.")
    with serve_fake_openai(fake) as url:
        proposer = _proposer(url)
        with pytest.raises(ProposerReplyError) as caught:
            await proposer.propose(_request())
        await proposer.aclose()
    assert caught.value.raw_reply == "The prompt looks fine to me."
    assert caught.value.usage.total_tokens == fake.served[0]["total_tokens"]


@pytest.mark.anyio
async def test_the_factory_plumbs_max_retries_and_response_format(tmp_path: Path) -> None:
    def overloaded(prompt: str) -> str:
        raise FakeOpenAIError(502)

    fake = FakeOpenAI(overloaded)
    with serve_fake_openai(fake) as url:
        section = _Section(base_url=url)
        section.max_retries = 1  # type: ignore[attr-defined]
        section.response_format = "json_object"  # type: ignore[attr-defined]
        proposer = build_proposer(section, run_dir=tmp_path)
        with pytest.raises(ProposerUnavailableError):
            await proposer.propose(_request())
        await proposer.aclose()
    assert len(fake.requests) == 2
    assert fake.requests[0].body["response_format"] == {"type": "json_object"}


@pytest.mark.anyio
async def test_a_200_carrying_an_upstream_503_is_retried_like_the_503() -> None:
    replies = [
        httpx.Response(200, json={"error": {"message": "upstream overloaded", "code": 503}}),
        httpx.Response(200, json={"choices": [{"message": {"content": GOOD}, "finish_reason": "stop"}]}),
    ]
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return replies.pop(0)

    proposer = _proposer("http://fake.invalid/v1", transport=httpx.MockTransport(handle))
    result = await proposer.propose(_request())
    await proposer.aclose()
    assert result.texts == ("Answer briefly and check the sum.",) and len(seen) == 2


@pytest.mark.anyio
async def test_a_redirect_names_where_it_leads() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"Location": "https://models.example/v1/chat/completions"})

    proposer = _proposer("http://fake.invalid/v1", transport=httpx.MockTransport(handle))
    with pytest.raises(ProposerError) as raised:
        await proposer.propose(_request())
    await proposer.aclose()
    message = raised.value.message
    assert "HTTP 307: a redirect to https://models.example/v1/chat/completions" in message, message
    assert "set [proposer] base_url" in message
