"""The ``openai_compatible`` proposer: one POST to a chat-completions or Responses endpoint per call.

Works with vLLM, llama.cpp server, ollama or OpenAI itself. No automatic retries: a proposer call costs money,
so a failed call surfaces as a :class:`~synth_opt.errors.ProposerError` and the caller decides. The API key is
read from the environment variable the config names and is never put in a message, a log line or a repr.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any, Literal

import anyio
import httpx

from synth_opt.errors import ConfigError, ProposerError
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.pricing import TokenPrices
from synth_opt.proposers.reflection import BASE_INSTRUCTIONS, ReflectionRequest, parse_reply, render_prompt
from synth_opt.usage import Usage

__all__ = ["OpenAICompatibleProposer", "WireApi"]

WireApi = Literal["chat", "responses"]
SOURCE = "openai-compatible proposer"


class OpenAICompatibleProposer:
    """Proposer backed by an OpenAI-compatible HTTP endpoint."""

    backend = "openai_compatible"

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None,
        api_key_env: str | None,
        timeout_seconds: float,
        wire_api: WireApi = "chat",
        json_mode: bool = False,
        extra_body: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        cost_per_million_input_tokens: float = 0.0,
        cost_per_million_output_tokens: float = 0.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``api_key_env`` names the variable holding the key (None: send no Authorization header).

        ``extra_body`` is merged into every request body (e.g. ``temperature``); ``json_mode`` asks for a JSON
        object reply where the server supports it.
        """
        if wire_api not in ("chat", "responses"):
            raise ConfigError(f"[proposer] wire_api must be 'chat' or 'responses', not {wire_api!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.wire_api: WireApi = wire_api
        self.url = f"{self.base_url}/chat/completions" if wire_api == "chat" else f"{self.base_url}/responses"
        self.timeout_seconds = timeout_seconds
        self.json_mode = json_mode
        self.extra_body = dict(extra_body or {})
        self.prices = TokenPrices(cost_per_million_input_tokens, cost_per_million_output_tokens)
        self._headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = (os.environ if env is None else env).get(api_key_env)
            if not key:
                raise ProposerError(
                    f"the proposer API key variable {api_key_env} is not set; export it or change "
                    "[proposer] api_key_env",
                    api_key_env=api_key_env,
                )
            self._headers["Authorization"] = f"Bearer {key}"
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"OpenAICompatibleProposer(url={self.url!r}, model={self.model!r})"

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        started = time.monotonic()
        with anyio.move_on_after(self.timeout_seconds) as deadline:
            data = await self._post(self._body(render_prompt(request)))
        if deadline.cancelled_caught:
            raise self._timeout_error()
        text = _chat_text(data) if self.wire_api == "chat" else _responses_text(data)
        if text is None:
            raise ProposerError(
                f"{SOURCE}: the reply from {self.url} carries no assistant text: {json.dumps(data)[:200]}"
            )
        return ProposerResult(
            texts=tuple(parse_reply(text, wanted=request.proposals, source=SOURCE)),
            usage=self._usage(data.get("usage")),
            raw_text=text,
            duration_seconds=time.monotonic() - started,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _body(self, prompt: str) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.model:
            body["model"] = self.model
        if self.wire_api == "chat":
            body["messages"] = [
                {"role": "system", "content": BASE_INSTRUCTIONS},
                {"role": "user", "content": prompt},
            ]
            if self.json_mode:
                body["response_format"] = {"type": "json_object"}
        else:
            body["instructions"] = BASE_INSTRUCTIONS
            body["input"] = prompt
            if self.json_mode:
                body["text"] = {"format": {"type": "json_object"}}
        body.update(self.extra_body)
        return body

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport, timeout=httpx.Timeout(self.timeout_seconds), headers=self._headers
            )
        try:
            response = await self._client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise self._timeout_error() from exc
        except httpx.HTTPError as exc:
            raise ProposerError(
                f"{SOURCE}: POST {self.url} failed: {type(exc).__name__}: {exc}. Is the server running?",
                url=self.url,
            ) from exc
        if not response.is_success:
            preview = " ".join(response.text.split())[:300]
            raise ProposerError(
                f"{SOURCE}: POST {self.url} answered HTTP {response.status_code}: {preview}",
                url=self.url,
                status=response.status_code,
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise ProposerError(f"{SOURCE}: POST {self.url} answered a body that is not JSON") from exc
        if not isinstance(data, dict):
            raise ProposerError(f"{SOURCE}: POST {self.url} answered JSON that is not an object")
        return data

    def _timeout_error(self) -> ProposerError:
        return ProposerError(
            f"{SOURCE}: POST {self.url} exceeded timeout_seconds={self.timeout_seconds:g}; raise "
            "[proposer] timeout_seconds if the model is slow",
            url=self.url,
            timeout="timeout_seconds",
        )

    def _usage(self, reported: Any) -> Usage:
        counts = Usage.from_reply(reported)
        return self.prices.usage(
            prompt_tokens=counts.prompt_tokens,
            completion_tokens=counts.completion_tokens,
            total_tokens=counts.total_tokens,
        )


def _chat_text(data: dict[str, Any]) -> str | None:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict)) or None
    return None


def _responses_text(data: dict[str, Any]) -> str | None:
    if isinstance(data.get("output_text"), str):  # SDK convenience field some servers include
        return str(data["output_text"])
    parts: list[str] = []
    output = data.get("output")
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        content = item.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") in ("output_text", "text"):
                parts.append(str(part.get("text", "")))
    return "".join(parts) if parts else None
