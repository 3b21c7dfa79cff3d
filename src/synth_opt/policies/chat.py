"""The chat-completions call of an ``llm`` policy in a task container, with usage and cost accounting.

A container's ``llm`` policy reads the run's ``[policy]`` table (``model``, ``base_url``, ``api_key_env``,
``max_tokens``, ``temperature`` and, in ``config``, ``timeout_seconds``, ``input_cost_per_million`` and
``output_cost_per_million``) and sends the candidate and the task to an OpenAI-compatible endpoint.
:meth:`ChatEndpoint.from_policy` reads that table; :meth:`ChatEndpoint.complete` makes one call on an open client
(for episodes of several calls) and :meth:`ChatEndpoint.complete_once` opens a client for a single call.

HTTP 429, 500, 502, 503 and 504 and connection errors (nothing served, nothing billed) are retried up to
``max_retries`` times (``config.max_retries``, default 3) with bounded backoff, jittered from a generator seeded by
the endpoint's URL, that honours ``Retry-After`` (:mod:`synth_opt.proposers.retry`); other statuses are not.

Every failure is a :class:`LlmPolicyError` whose ``status`` is the HTTP status the container should answer with:
400 for a bad policy table, a missing key or an error the endpoint will repeat (a bad key, model or request), 422
for a ``config`` that is not a table, the endpoint's own status for 408, 425 and 429, and 502 for the rest (the
endpoint unreachable, a server error, a reply that is no chat completion), so the optimizer knows what to retry.

The API key is read only from the environment variable ``api_key_env`` names, and never appears in a message, a
log line or a repr.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import httpx

from synth_opt.proposers.retry import RETRY_STATUSES, Backoff, is_retryable_error, retry_after_seconds
from synth_opt.urls import join_path

__all__ = ["DEFAULT_BASE_URL", "ChatEndpoint", "LlmPolicyError"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class LlmPolicyError(Exception):
    """The LLM policy could not run (``status`` is the HTTP status the container should answer with)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ChatEndpoint:
    """An OpenAI-compatible chat-completions endpoint with the settings of every call and its token prices."""

    def __init__(
        self,
        model: Any,
        *,
        base_url: str | None = None,
        api_key_env: str | None = None,
        max_tokens: int,
        temperature: float = 0.0,
        timeout_seconds: float = 60.0,
        input_cost_per_million: float = 0.0,
        output_cost_per_million: float = 0.0,
        max_retries: int = 3,
        retry_base_seconds: float = 0.5,
    ) -> None:
        """Raises :class:`LlmPolicyError` (400) without a model, or when ``api_key_env`` names an unset variable."""
        if not model:
            raise LlmPolicyError("policy.model is required for the llm policy", status=400)
        self.model = model
        self.base_url = str(base_url or DEFAULT_BASE_URL).rstrip("/")
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout_seconds = timeout_seconds
        self.input_cost_per_million = input_cost_per_million
        self.output_cost_per_million = output_cost_per_million
        self.max_retries = max_retries
        self.backoff = Backoff.for_url(self.base_url, base_seconds=retry_base_seconds)
        self._headers = _headers(api_key_env)

    @classmethod
    def from_policy(cls, policy: Mapping[str, Any], *, default_max_tokens: int) -> ChatEndpoint:
        """The endpoint the ``[policy]`` table describes; ``max_tokens`` defaults to ``default_max_tokens``.

        Checks, in order: ``model`` is set (400), the ``api_key_env`` variable is set (400), ``config`` is a table
        (422).
        """
        key_env = policy.get("api_key_env")
        endpoint = cls(
            policy.get("model"),
            base_url=policy.get("base_url"),
            api_key_env=str(key_env) if key_env else None,
            max_tokens=int(policy.get("max_tokens") or default_max_tokens),
            temperature=float(policy.get("temperature") or 0.0),
        )
        config = policy.get("config") or {}
        if not isinstance(config, Mapping):
            raise LlmPolicyError("policy.config must be a table", status=422)
        endpoint.timeout_seconds = float(config.get("timeout_seconds", 60.0))
        endpoint.input_cost_per_million = float(config.get("input_cost_per_million", 0.0))
        endpoint.output_cost_per_million = float(config.get("output_cost_per_million", 0.0))
        endpoint.max_retries = max(0, int(config.get("max_retries", 3)))
        return endpoint

    def __repr__(self) -> str:
        return f"ChatEndpoint(base_url={self.base_url!r}, model={self.model!r})"

    def client(self, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        """A client with this endpoint's timeout (``transport``: for tests, e.g. an ``httpx.MockTransport``)."""
        return httpx.AsyncClient(timeout=self.timeout_seconds, transport=transport)

    def usage(self, prompt_tokens: int, completion_tokens: int, *, calls: int = 1) -> dict[str, Any]:
        """The usage of ``calls`` calls that used these tokens in all: ``calls``, the token counts, ``cost_usd``."""
        cost = (
            prompt_tokens * self.input_cost_per_million + completion_tokens * self.output_cost_per_million
        ) / 1_000_000
        return {
            "calls": calls,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cost_usd": cost,
        }

    async def complete(
        self, client: httpx.AsyncClient, messages: Sequence[Mapping[str, str]]
    ) -> tuple[str, dict[str, Any]]:
        """One call on an open client: the reply text and the call's usage (see :meth:`usage`). What served
        nothing (429, 500, 502, 503, 504, a connection error) is retried up to ``max_retries`` times."""
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                response = await client.post(
                    f"{self.base_url}/chat/completions", json=self._body(messages), headers=self._headers
                )
            except httpx.HTTPError as exc:
                if not is_retryable_error(exc) or attempt >= self.max_retries:
                    raise self._unreachable(exc) from exc
            else:
                if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
                    return self._read(response)
                retry_after = retry_after_seconds(response)
            await anyio.sleep(self.backoff.delay(attempt, retry_after))
            attempt += 1

    async def complete_once(
        self, messages: Sequence[Mapping[str, str]], *, transport: httpx.AsyncBaseTransport | None = None
    ) -> tuple[str, dict[str, Any]]:
        """One call on a client of its own: the reply text and the call's usage (see :meth:`usage`)."""
        try:
            async with self.client(transport) as client:
                return await self.complete(client, messages)
        except httpx.HTTPError as exc:  # opening or closing the client
            raise self._unreachable(exc) from exc

    async def served_model(self, *, transport: httpx.AsyncBaseTransport | None = None) -> dict[str, Any]:
        """The endpoint's ``GET /models`` entry for :attr:`model`, with the key when there is one: what a container's
        start-up check reports as its policy's model (:mod:`synth_opt.policies.check`). Raises
        :class:`LlmPolicyError` when the endpoint does not answer (after the retries of :meth:`complete`), refuses,
        or does not list the model (the message names the models it lists)."""
        url = join_path(self.base_url, "models")
        attempt = 0
        try:
            async with self.client(transport) as client:
                while True:
                    retry_after: float | None = None
                    try:
                        response = await client.get(url, headers=self._headers)
                    except httpx.HTTPError as exc:
                        if not is_retryable_error(exc) or attempt >= self.max_retries:
                            raise self._unreachable(exc) from exc
                    else:
                        if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
                            break
                        retry_after = retry_after_seconds(response)
                    await anyio.sleep(self.backoff.delay(attempt, retry_after))
                    attempt += 1
        except httpx.HTTPError as exc:  # opening or closing the client
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise LlmPolicyError(
                f"LLM endpoint {self.base_url} answered GET /models with {response.status_code}: {response.text[:200]}",
                status=502 if response.status_code >= 500 else 400,
            )
        try:
            entries = [entry for entry in response.json()["data"] if isinstance(entry, dict)]
        except (ValueError, KeyError, TypeError) as exc:
            raise LlmPolicyError(
                f"LLM endpoint {self.base_url} sent no model list at GET /models: {exc}", status=502
            ) from exc
        for entry in entries:
            if entry.get("id") == self.model:
                return entry
        listed = ", ".join(repr(str(entry.get("id"))) for entry in entries[:10]) or "none"
        raise LlmPolicyError(
            f"LLM endpoint {self.base_url} does not serve model {self.model!r} (GET /models lists {listed}); set "
            "policy.model to one it serves",
            status=400,
        )

    def _body(self, messages: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [dict(message) for message in messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def _unreachable(self, exc: httpx.HTTPError) -> LlmPolicyError:
        return LlmPolicyError(f"LLM endpoint {self.base_url} unreachable: {exc}", status=502)

    def _read(self, response: httpx.Response) -> tuple[str, dict[str, Any]]:
        if response.status_code >= 400:
            # worth retrying (timeouts, rate limits, server errors) or not (a bad key, model or request)
            retryable = response.status_code in {408, 425, 429} or response.status_code >= 500
            status = (response.status_code if response.status_code < 500 else 502) if retryable else 400
            raise LlmPolicyError(
                f"LLM endpoint {self.base_url} answered {response.status_code}: {response.text[:200]}", status=status
            )
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LlmPolicyError(f"LLM endpoint {self.base_url} sent no chat completion: {exc}", status=502) from exc
        raw_usage = data.get("usage") or {}
        prompt_tokens = int(raw_usage.get("prompt_tokens") or 0)
        completion_tokens = int(raw_usage.get("completion_tokens") or 0)
        return str(text), self.usage(prompt_tokens, completion_tokens)


def _headers(api_key_env: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if api_key_env:
        key = os.environ.get(api_key_env, "")
        if not key:
            raise LlmPolicyError(
                f"policy.api_key_env names {api_key_env}, which is not set in the container", status=400
            )
        headers["authorization"] = f"Bearer {key}"
    return headers
