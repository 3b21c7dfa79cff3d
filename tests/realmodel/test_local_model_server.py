"""The local real-model server answers the OpenAI routes synth_opt uses, and records exactly the usage it reported.

Each call goes through the recording proxy (``local_model.base_url``); the usage in the HTTP answer must equal the
usage recorded for that call, in memory and in the usage log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from synth_opt.testing.local_model import LocalModelServer, ServedCall, read_usage_log

MAX_TOKENS = 16
QUESTION = "What is the capital of France? Answer in one word."


def _client(server: LocalModelServer, key: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {key if key is not None else server.api_key}"},
        timeout=60,
    )


def _events(text: str) -> list[dict[str, Any]]:
    """The JSON payloads of a server-sent-event stream, ``[DONE]`` left out."""
    events = []
    for line in text.splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            events.append(json.loads(line[5:]))
    return events


def _only_call(calls: list[ServedCall], path: str) -> ServedCall:
    assert [call.path for call in calls] == [path]
    return calls[0]


def test_chat_completion_usage_is_recorded_as_served(
    local_model: LocalModelServer, served_calls: Callable[[], list[ServedCall]]
) -> None:
    with _client(local_model) as client:
        answer = client.post(
            "/chat/completions",
            json={
                "model": local_model.model,
                "messages": [{"role": "user", "content": QUESTION}],
                "max_tokens": MAX_TOKENS,
                "temperature": 0,
            },
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["choices"][0]["message"]["content"].strip()
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= MAX_TOKENS
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    call = _only_call(served_calls(), "/v1/chat/completions")
    assert (call.status, call.stream, call.response_id) == (200, False, body["id"])
    assert call.usage == usage
    assert call.timings is not None and call.timings["predicted_n"] == usage["completion_tokens"]
    assert read_usage_log(local_model.usage_log)[-1] == call


def test_streamed_chat_completion_usage_is_recorded_as_served(
    local_model: LocalModelServer, served_calls: Callable[[], list[ServedCall]]
) -> None:
    with _client(local_model) as client:
        answer = client.post(
            "/chat/completions",
            json={
                "model": local_model.model,
                "messages": [{"role": "user", "content": QUESTION}],
                "max_tokens": MAX_TOKENS,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
    assert answer.status_code == 200, answer.text
    events = _events(answer.text)
    text = "".join((choice.get("delta") or {}).get("content") or "" for e in events for choice in e["choices"])
    assert text.strip()
    usages = [event["usage"] for event in events if event.get("usage")]
    assert usages, "no chunk carried usage"
    assert 0 < usages[-1]["completion_tokens"] <= MAX_TOKENS

    call = _only_call(served_calls(), "/v1/chat/completions")
    assert (call.status, call.stream) == (200, True)
    assert call.usage == usages[-1]


def test_responses_route_works_and_its_usage_is_recorded(
    local_model: LocalModelServer, served_calls: Callable[[], list[ServedCall]]
) -> None:
    """``/v1/responses``, which codex uses, plain and streamed (codex streams)."""
    request = {"model": local_model.model, "input": QUESTION, "max_output_tokens": MAX_TOKENS, "temperature": 0}
    with _client(local_model) as client:
        plain = client.post("/responses", json=request)
        streamed = client.post("/responses", json={**request, "stream": True})
    assert plain.status_code == 200, plain.text
    body = plain.json()
    texts = [part["text"] for item in body["output"] if item["type"] == "message" for part in item["content"]]
    assert "".join(texts).strip()
    assert 0 < body["usage"]["output_tokens"] <= MAX_TOKENS
    assert body["usage"]["input_tokens"] > 0

    assert streamed.status_code == 200, streamed.text
    completed = [event for event in _events(streamed.text) if event.get("type") == "response.completed"]
    assert len(completed) == 1
    streamed_usage = completed[0]["response"]["usage"]

    calls = served_calls()
    assert [(call.path, call.stream) for call in calls] == [("/v1/responses", False), ("/v1/responses", True)]
    assert calls[0].usage == body["usage"]
    assert calls[1].usage == streamed_usage


def test_requests_need_the_api_key(local_model: LocalModelServer) -> None:
    with _client(local_model, key="sk-wrong") as client:
        refused = client.get("/models")
    assert refused.status_code == 401
    with _client(local_model) as client:
        models = client.get("/models")
    assert models.status_code == 200
    assert local_model.model in [entry["id"] for entry in models.json()["data"]]
