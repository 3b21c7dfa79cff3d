"""The ``openai_compatible`` proposer: one POST to a chat-completions or Responses endpoint per call.

Works with vLLM, llama.cpp server, ollama or OpenAI itself. Failures are of three kinds:

- nothing served (connection refused or reset, HTTP 429, 500, 502, 503 or 504, no reply within
  ``timeout_seconds``): the connection errors and statuses are retried up to ``max_retries`` times with bounded,
  jittered backoff that honours ``Retry-After`` (:mod:`synth_opt.proposers.retry`; nothing served, nothing billed),
  then a :class:`~synth_opt.errors.ProposerUnavailableError`;
- served but unusable (no parseable proposal, a reply cut short by the token limit, a body that is no completion):
  a :class:`~synth_opt.errors.ProposerReplyError` carrying the reply and the call's usage (the server's, or an
  estimate at 4 characters a token where it reported none);
- refused (any other 4xx: a bad key, model or request, which would fail again): a
  :class:`~synth_opt.errors.ProposerError`.

The server is asked for JSON (``response_format``: ``json_schema`` with the reply schema, falling back to
``json_object`` and then to nothing when the server answers 400 or 422 naming the format; the fallback is kept for
the proposer's later calls). The prompt is bounded to ``max_prompt_tokens`` (:func:`fit_request`). The API key is
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

from synth_opt.errors import ConfigError, ProposerError, ProposerReplyError, ProposerUnavailableError
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.pricing import TokenPrices
from synth_opt.proposers.reflection import (
    BASE_INSTRUCTIONS,
    CHARS_PER_TOKEN,
    DEFAULT_MAX_FEEDBACK_CHARS,
    DEFAULT_MAX_PROMPT_TOKENS,
    REPLY_SCHEMA,
    ReflectionRequest,
    fit_request,
    parse_reply,
    render_prompt,
)
from synth_opt.proposers.retry import RETRY_STATUSES, Backoff, is_retryable_error, retry_after_seconds
from synth_opt.texts import without_lone_surrogates
from synth_opt.urls import join_path
from synth_opt.usage import Usage, usage_problem

__all__ = ["RESPONSE_FORMATS", "OpenAICompatibleProposer", "ResponseFormat", "WireApi"]

WireApi = Literal["chat", "responses"]
ResponseFormat = Literal["json_schema", "json_object", "none"]
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = ("json_schema", "json_object", "none")
SOURCE = "openai-compatible proposer"
DEFAULT_MAX_REPLY_BYTES = 8 * 1024 * 1024  # proposer.max_reply_bytes
# the counts Usage.from_reply reads from a reply's usage block
_REPORTED_COUNTS = ("prompt_tokens", "input_tokens", "completion_tokens", "output_tokens", "total_tokens")
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "text.format", "structured output")


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
        response_format: ResponseFormat | None = None,
        max_retries: int = 3,
        retry_base_seconds: float = 0.5,
        max_feedback_chars: int = DEFAULT_MAX_FEEDBACK_CHARS,
        max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
        extra_body: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        cost_per_million_input_tokens: float | None = None,
        cost_per_million_output_tokens: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        """``api_key_env`` names the variable holding the key (None: send no Authorization header).
        ``max_reply_bytes``: a reply body larger than this is a failed proposal, read no further.

        ``extra_body`` is merged into every request body (e.g. ``temperature``, ``max_tokens``).
        ``response_format`` (default ``json_schema``; ``json_object`` when only the older ``json_mode`` is set)
        is the first JSON mode asked for.
        """
        if wire_api not in ("chat", "responses"):
            raise ConfigError(f"[proposer] wire_api must be 'chat' or 'responses', not {wire_api!r}")
        if response_format is None:
            response_format = "json_object" if json_mode else "json_schema"
        if response_format not in RESPONSE_FORMATS:
            raise ConfigError(
                f"[proposer] response_format must be one of {', '.join(RESPONSE_FORMATS)}, not {response_format!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.wire_api: WireApi = wire_api
        self.url = join_path(self.base_url, "chat/completions" if wire_api == "chat" else "responses")
        self.timeout_seconds = timeout_seconds
        self.response_format: ResponseFormat = response_format
        self.max_retries = max_retries
        self.max_reply_bytes = max_reply_bytes
        self.max_feedback_chars = max_feedback_chars
        self.max_prompt_tokens = max_prompt_tokens
        self.extra_body = dict(extra_body or {})
        self.prices = TokenPrices(cost_per_million_input_tokens, cost_per_million_output_tokens)
        self._backoff = Backoff.for_url(self.url, base_seconds=retry_base_seconds)
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

    def prompt(self, request: ReflectionRequest) -> str:
        """The prompt this proposer sends for ``request`` (bounded to ``max_prompt_tokens``)."""
        fitted = fit_request(
            request, max_feedback_chars=self.max_feedback_chars, max_prompt_tokens=self.max_prompt_tokens
        )
        return render_prompt(fitted)

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        started = time.monotonic()
        prompt = self.prompt(request)
        data, raw = await self._exchange(prompt)
        if data is None:
            raise ProposerReplyError(
                f"{SOURCE}: POST {self.url} answered a body that is not a JSON object: {' '.join(raw.split())[:200]!r}",
                raw_reply=raw,
                usage=self._usage(None, prompt, raw),
                url=self.url,
            )
        text, cut_short = _chat_text(data) if self.wire_api == "chat" else _responses_text(data)
        usage = self._usage(data.get("usage"), prompt, text or "")
        if cut_short:
            raise ProposerReplyError(
                f"{SOURCE}: the reply was cut short by the token limit (finish_reason = length) after "
                f"{usage.completion_tokens} output tokens; raise max_tokens in [proposer] config or ask for fewer "
                f"proposals_per_call. Reply began: {' '.join((text or '').split())[:120]!r}",
                raw_reply=text or "",
                usage=usage,
                finish_reason="length",
            )
        if text is None:
            raise ProposerReplyError(
                f"{SOURCE}: the reply from {self.url} carries no assistant text: {json.dumps(data)[:200]}",
                raw_reply=json.dumps(data)[:100_000],
                usage=usage,
            )
        try:
            texts = parse_reply(text, wanted=request.proposals, source=SOURCE, module=request.target_module)
        except ProposerReplyError as exc:
            exc.usage = usage
            raise
        return ProposerResult(
            texts=tuple(texts), usage=usage, raw_text=text, duration_seconds=time.monotonic() - started
        )

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _body(self, prompt: str, response_format: ResponseFormat) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.model:
            body["model"] = self.model
        if self.wire_api == "chat":
            body["messages"] = [
                {"role": "system", "content": BASE_INSTRUCTIONS},
                {"role": "user", "content": prompt},
            ]
            if response_format == "json_schema":
                schema = {"name": "proposals", "schema": REPLY_SCHEMA, "strict": True}
                body["response_format"] = {"type": "json_schema", "json_schema": schema}
            elif response_format == "json_object":
                body["response_format"] = {"type": "json_object"}
        else:
            body["instructions"] = BASE_INSTRUCTIONS
            body["input"] = prompt
            if response_format == "json_schema":
                fmt = {"type": "json_schema", "name": "proposals", "schema": REPLY_SCHEMA, "strict": True}
                body["text"] = {"format": fmt}
            elif response_format == "json_object":
                body["text"] = {"format": {"type": "json_object"}}
        body.update(self.extra_body)
        return body

    async def _exchange(self, prompt: str) -> tuple[dict[str, Any] | None, str]:
        """POST the prompt (retrying what served nothing, falling back to a JSON mode the server accepts); the
        reply as an object (None when it is not one) and its text."""
        while True:
            sent = self.response_format
            response = await self._post(self._body(prompt, sent))
            if response.is_success:
                break
            if response.status_code in (400, 422) and sent != "none" and _names_format(response):
                # step down from the format this call sent (a concurrent call may have stepped down already),
                # never below what another call found the server accepts: the same format for every call
                following = RESPONSE_FORMATS[RESPONSE_FORMATS.index(sent) + 1]
                if RESPONSE_FORMATS.index(following) > RESPONSE_FORMATS.index(self.response_format):
                    self.response_format = following  # kept: the server will refuse the better one again
                continue
            preview = " ".join(response.text.split())[:300]
            if response.is_redirect:
                where = response.headers.get("location") or "no Location header"
                preview = f"a redirect to {where}; set [proposer] base_url to the address it leads to"
            raise ProposerError(
                f"{SOURCE}: POST {self.url} answered HTTP {response.status_code}: {preview}",
                url=self.url,
                status=response.status_code,
            )
        try:
            data = without_lone_surrogates(response.json(), response.content)
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
            return None, response.text
        return (data if isinstance(data, dict) else None), response.text

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        """One POST, retried while nothing is served; the last reply (any status outside the retried ones). The
        whole call, its retries and their waits included, ends within ``timeout_seconds``: a wait that would pass it
        (a long ``Retry-After``) ends the call as served nothing, an outage."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport, timeout=httpx.Timeout(self.timeout_seconds), headers=self._headers
            )
        ends = anyio.current_time() + self.timeout_seconds
        attempt = 0
        while True:
            why: str
            retry_after: float | None = None
            with anyio.move_on_after(max(0.0, ends - anyio.current_time())) as deadline:
                try:
                    response = await self._bounded_post(body)
                except httpx.HTTPError as exc:
                    if not is_retryable_error(exc):
                        if isinstance(exc, httpx.TimeoutException):
                            raise self._timeout_error() from exc
                        raise ProposerError(
                            f"{SOURCE}: POST {self.url} failed: {type(exc).__name__}: {exc}", url=self.url
                        ) from exc
                    why = f"{type(exc).__name__}: {exc}"
                    status = None
                else:
                    status = response.status_code
                    if response.is_success:
                        status = _error_in_body(response)  # some gateways answer 200 with an upstream error
                    if status not in RETRY_STATUSES:
                        return response
                    why = f"HTTP {status}: {' '.join(response.text.split())[:200]}"
                    retry_after = retry_after_seconds(response)
            if deadline.cancelled_caught:
                raise self._timeout_error()
            wait = self._backoff.delay(attempt, retry_after)
            if attempt >= self.max_retries or anyio.current_time() + wait >= ends:
                limit = (
                    f"max_retries = {self.max_retries}"
                    if attempt >= self.max_retries
                    else f"the next try, {wait:g} s later, would pass timeout_seconds = {self.timeout_seconds:g}"
                )
                raise ProposerUnavailableError(
                    f"{SOURCE}: POST {self.url} served nothing after {attempt + 1} attempt(s) ({limit}); "
                    f"last: {why}. Is the server running?",
                    url=self.url,
                    status=status,
                    attempts=attempt + 1,
                )
            await anyio.sleep(wait)
            attempt += 1

    async def _bounded_post(self, body: dict[str, Any]) -> httpx.Response:
        """POST ``body`` and read the reply, at most ``max_reply_bytes`` of it (decoded): more is a failed proposal
        (the server served something, so it is no outage), and what was read is its raw reply's start."""
        assert self._client is not None
        async with self._client.stream("POST", self.url, json=body) as streamed:
            chunks: list[bytes] = []
            size = 0
            async for chunk in streamed.aiter_bytes():
                size += len(chunk)
                if size > self.max_reply_bytes:
                    start = b"".join(chunks)[:2000].decode("utf-8", errors="replace")
                    raise ProposerReplyError(
                        f"{SOURCE}: POST {self.url} answered more than {self.max_reply_bytes} bytes "
                        "(proposer.max_reply_bytes); the proposal fails without reading the rest",
                        raw_reply=start,
                        url=self.url,
                    )
                chunks.append(chunk)
        return httpx.Response(
            streamed.status_code, headers=streamed.headers, content=b"".join(chunks), request=streamed.request
        )

    def _timeout_error(self) -> ProposerUnavailableError:
        return ProposerUnavailableError(
            f"{SOURCE}: POST {self.url} exceeded timeout_seconds={self.timeout_seconds:g}; raise "
            "[proposer] timeout_seconds if the model is slow",
            url=self.url,
            timeout="timeout_seconds",
        )

    def _usage(self, reported: Any, prompt: str, text: str) -> Usage:
        """The call's usage: what the server reported, else an estimate at 4 characters a token. A reported usage
        no ledger can count (negative, not finite, beyond what one reply may report) fails the proposal, charged
        at the estimate."""
        counts = Usage.from_reply(reported)
        problem = usage_problem(reported, _REPORTED_COUNTS) if isinstance(reported, dict) else None
        if problem is not None or (counts.total_tokens == counts.prompt_tokens == counts.completion_tokens == 0):
            prompt_chars = len(BASE_INSTRUCTIONS) + len(prompt)
            estimate = self.prices.usage(
                prompt_tokens=-(-prompt_chars // CHARS_PER_TOKEN),
                completion_tokens=-(-len(text) // CHARS_PER_TOKEN),
            )
            if problem is not None:
                raise ProposerReplyError(
                    f"{SOURCE}: POST {self.url} reported {problem}; the call is counted at an estimate of "
                    f"{CHARS_PER_TOKEN} characters a token",
                    raw_reply=text[:100_000],
                    usage=estimate,
                    url=self.url,
                )
            return estimate
        return self.prices.usage(
            prompt_tokens=counts.prompt_tokens,
            completion_tokens=counts.completion_tokens,
            total_tokens=counts.total_tokens,
        )


def _names_format(response: httpx.Response) -> bool:
    text = response.text.lower()
    return any(word in text for word in _FORMAT_WORDS)


def _error_in_body(response: httpx.Response) -> int:
    """The status of an upstream error a 2xx reply carries instead of a completion (``{"error": {"code": 503}}``,
    no ``choices`` or ``output``); the reply's own status otherwise."""
    content = response.content
    if len(content) > 65536 or b'"error"' not in content or not content.lstrip().startswith(b"{"):
        return response.status_code  # (a completion is not parsed twice)
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return response.status_code
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or "choices" in data or "output" in data:
        return response.status_code
    code = error.get("code", error.get("status"))
    return code if isinstance(code, int) and not isinstance(code, bool) else response.status_code


def _chat_text(data: dict[str, Any]) -> tuple[str | None, bool]:
    """The assistant text of a chat completion and whether it was cut short by the token limit."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None, False
    cut_short = choices[0].get("finish_reason") == "length"
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content, cut_short
    if isinstance(content, list):  # content parts
        text = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        return text or None, cut_short
    return None, cut_short


def _responses_text(data: dict[str, Any]) -> tuple[str | None, bool]:
    """The output text of a Responses-API reply and whether it stopped at ``max_output_tokens``."""
    details = data.get("incomplete_details")
    cut_short = data.get("status") == "incomplete" and (
        not isinstance(details, dict) or details.get("reason") in (None, "max_output_tokens")
    )
    if isinstance(data.get("output_text"), str):  # SDK convenience field some servers include
        return str(data["output_text"]), cut_short
    parts: list[str] = []
    output = data.get("output")
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        content = item.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") in ("output_text", "text"):
                parts.append(str(part.get("text", "")))
    return ("".join(parts) if parts else None), cut_short
