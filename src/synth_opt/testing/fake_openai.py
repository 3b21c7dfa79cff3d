"""A fake OpenAI-compatible server that really listens on 127.0.0.1, for tests and offline demos.

``POST /chat/completions`` and ``POST /responses`` answer with whatever ``responder(prompt_text)`` returns.
``/responses`` with ``"stream": true`` answers with Responses-API server-sent events, so the real codex binary
can be pointed at it (``-c model_providers.fake={base_url=..., wire_api="responses"}``). Usage is reported as
word counts (prompt words in, reply words out) and logged in ``served`` for every reply served. Every request is
recorded. A responder may raise :class:`FakeOpenAIError` to make the server answer with an HTTP error (with
headers such as ``Retry-After``), or return a :class:`FakeReply` to end the reply with another ``finish_reason``
(``"length"``: cut short by the token limit). ``refuse_formats`` names the ``response_format`` types the server
refuses with a 400 naming ``response_format``, as servers without structured output do.

    fake = FakeOpenAI(lambda prompt: '{"proposals": ["..."]}')
    with serve_fake_openai(fake) as base_url:
        ...  # base_url is like http://127.0.0.1:PORT/v1
    fake.requests  # what was asked
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["FakeOpenAI", "FakeOpenAIError", "FakeReply", "RecordedRequest", "Responder", "serve_fake_openai"]
JsonObject = dict[str, Any]


class FakeOpenAIError(Exception):
    """Raised by a responder to make the fake answer ``status_code`` with an OpenAI-style error body."""

    def __init__(self, status_code: int, message: str = "fake error", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class FakeReply:
    """A reply text with its ``finish_reason`` (``"length"``: the Responses API answers ``status: "incomplete"``)."""

    text: str
    finish_reason: str = "stop"


Responder = Callable[[str], str | FakeReply]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    path: str
    body: JsonObject
    headers: dict[str, str]
    prompt: str


@dataclass
class FakeOpenAI:
    """The fake's behaviour (``responder``, optional required ``api_key``, the ``models`` its ``GET /models``
    lists, each with ``model_meta`` as its ``meta``, as llama.cpp's server describes its model file) and what it was
    asked."""

    responder: Responder
    api_key: str | None = None
    models: tuple[str, ...] = ("fake-model",)
    model_meta: JsonObject = field(default_factory=dict)
    refuse_formats: frozenset[str] = frozenset()
    requests: list[RecordedRequest] = field(default_factory=list)
    served: list[JsonObject] = field(default_factory=list)  # the usage of every reply served, in order
    _counter: int = field(default=0, init=False, repr=False)

    def app(self) -> Starlette:
        routes = [Route(f"{prefix}/chat/completions", self._chat, methods=["POST"]) for prefix in ("", "/v1")] + [
            Route(f"{prefix}/responses", self._responses, methods=["POST"]) for prefix in ("", "/v1")
        ]
        routes += [Route(f"{prefix}/models", self._models, methods=["GET"]) for prefix in ("", "/v1")]
        return Starlette(routes=routes)

    async def _models(self, request: Request) -> Response:
        """``GET /models``: the models this fake lists (what a start-up check asks)."""
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid api key")
        now = int(time.time())  # like llama.cpp's server: the time of the request, not of the model
        data = [
            {"id": model, "object": "model", "created": now, "owned_by": "fake", "meta": self.model_meta}
            for model in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _chat(self, request: Request) -> Response:
        body, failure = await self._read(request)
        if failure is not None:
            return failure
        prompt = _chat_prompt(body)
        self._record(request, body, prompt)
        if body.get("stream"):
            return _error(400, "the fake serves /chat/completions without streaming only")
        response_format = body.get("response_format")
        refused = self._refused(response_format.get("type") if isinstance(response_format, dict) else None)
        if refused is not None:
            return refused
        try:
            reply = self._reply(prompt)
        except FakeOpenAIError as exc:
            return _error(exc.status_code, exc.message, exc.headers)
        usage = self._serve_usage(prompt, reply.text, chat=True)
        choice = {"index": 0, "message": {"role": "assistant", "content": reply.text}}
        return JSONResponse(
            {
                "id": self._id("chatcmpl"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake-model"),
                "choices": [{**choice, "finish_reason": reply.finish_reason}],
                "usage": usage,
            }
        )

    async def _responses(self, request: Request) -> Response:
        body, failure = await self._read(request)
        if failure is not None:
            return failure
        prompt = _responses_prompt(body)
        self._record(request, body, prompt)
        text_options = body.get("text")
        fmt = text_options.get("format") if isinstance(text_options, dict) else None
        refused = self._refused(fmt.get("type") if isinstance(fmt, dict) else None)
        if refused is not None:
            return refused
        try:
            reply = self._reply(prompt)
        except FakeOpenAIError as exc:
            return _error(exc.status_code, exc.message, exc.headers)
        text = reply.text
        response_id, item_id = self._id("resp"), self._id("msg")
        item = {
            "type": "message",
            "id": item_id,
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        final = {
            "id": response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": body.get("model", "fake-model"),
            "output": [item],
            "usage": self._serve_usage(prompt, text, chat=False),
        }
        if reply.finish_reason == "length":
            final["status"] = "incomplete"
            final["incomplete_details"] = {"reason": "max_output_tokens"}
        if not body.get("stream"):
            return JSONResponse(final)
        return StreamingResponse(_response_events(final, item, text), media_type="text/event-stream")

    async def _read(self, request: Request) -> tuple[JsonObject, Response | None]:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return {}, _error(401, "missing or wrong API key")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return {}, _error(400, "request body is not JSON")
        if not isinstance(body, dict):
            return {}, _error(400, "request body is not a JSON object")
        return body, None

    def _reply(self, prompt: str) -> FakeReply:
        reply = self.responder(prompt)
        return reply if isinstance(reply, FakeReply) else FakeReply(reply)

    def _refused(self, format_type: Any) -> Response | None:
        if format_type is not None and format_type in self.refuse_formats:
            return _error(400, f"response_format type {format_type!r} is not supported by this server")
        return None

    def _serve_usage(self, prompt: str, text: str, *, chat: bool) -> JsonObject:
        usage = _usage(prompt, text, chat=chat)
        self.served.append(usage)
        return usage

    def _record(self, request: Request, body: JsonObject, prompt: str) -> None:
        self.requests.append(RecordedRequest(request.url.path, body, dict(request.headers), prompt))

    def _id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_fake_{self._counter}"


@contextmanager
def serve_fake_openai(responder: Responder | FakeOpenAI) -> Iterator[str]:
    """Serve the fake on a free 127.0.0.1 port in a background thread; yields the base URL (``.../v1``)."""
    fake = responder if isinstance(responder, FakeOpenAI) else FakeOpenAI(responder)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(fake.app(), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


async def _response_events(final: JsonObject, item: JsonObject, text: str) -> AsyncIterator[bytes]:
    """The Responses-API event sequence codex consumes, ending with ``response.completed`` and its usage."""
    created = {**final, "status": "in_progress", "output": [], "usage": None}
    started_item = {**item, "status": "in_progress", "content": []}
    events: list[JsonObject] = [
        {"type": "response.created", "response": created},
        {"type": "response.in_progress", "response": created},
        {"type": "response.output_item.added", "output_index": 0, "item": started_item},
        {
            "type": "response.content_part.added",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []},
        },
        {
            "type": "response.output_text.delta",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "delta": text,
        },
        {
            "type": "response.output_text.done",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "text": text,
        },
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": final},
    ]
    for number, event in enumerate(events):
        payload = json.dumps({**event, "sequence_number": number})
        yield f"event: {event['type']}\ndata: {payload}\n\n".encode()


def _usage(prompt: str, text: str, *, chat: bool) -> JsonObject:
    prompt_tokens, completion_tokens = len(prompt.split()), len(text.split())
    total = prompt_tokens + completion_tokens
    if chat:
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": total}
    return {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": total,
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "fake_error", "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def _text_of(content: Any) -> str:
    """Text of a message's content: a string, or a list of parts (``text``/``input_text``/``output_text``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _chat_prompt(body: JsonObject) -> str:
    messages = body.get("messages")
    users = (
        [m for m in messages if isinstance(m, dict) and m.get("role") == "user"] if isinstance(messages, list) else []
    )
    return _text_of(users[-1].get("content")) if users else ""


def _responses_prompt(body: JsonObject) -> str:
    """The last user message of ``input`` (codex sends environment context first, the prompt last)."""
    given = body.get("input")
    if isinstance(given, str):
        return given
    users = [
        item
        for item in (given if isinstance(given, list) else [])
        if isinstance(item, dict) and item.get("role", "user") == "user" and item.get("type", "message") == "message"
    ]
    return _text_of(users[-1].get("content")) if users else ""
