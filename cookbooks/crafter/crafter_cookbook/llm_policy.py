"""The ``llm`` policy: a model picks one crafter action per step from the text observation.

Each step is one chat-completions call to an OpenAI-compatible endpoint (``policy.base_url``, ``policy.model``,
the key read from the variable ``policy.api_key_env`` names): the candidate text as the system prompt, the text
observation (:func:`crafter_cookbook.game.render_text`) and the list of action names as the user message. The
first action name in the reply is played (a reply naming none plays ``noop`` and is counted as invalid). At most
``policy.config.max_llm_steps`` calls are made; the episode ends there or at its length, whichever comes first.
Usage is summed over the calls and priced with ``policy.config.input_cost_per_million`` /
``output_cost_per_million``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from crafter_cookbook.game import ACTIONS, Episode, render_text

__all__ = ["LlmEpisode", "LlmPolicyError", "parse_action", "run_llm", "user_message"]

_WORD = re.compile(r"[a-z_]+")


class LlmPolicyError(Exception):
    """The LLM policy could not run (``status`` is the HTTP status the container should answer with)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def parse_action(text: str) -> str | None:
    """The first crafter action name in a reply (whole words only), or None."""
    for word in _WORD.findall(text.lower()):
        if word in ACTIONS:
            return str(word)
    return None


def user_message(observation_text: str) -> str:
    return f"{observation_text}\n\nReply with exactly one action name, one of: {', '.join(ACTIONS)}."


@dataclass
class LlmEpisode:
    episode: Episode
    actions: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    invalid: int = 0
    usage: dict[str, Any] = field(default_factory=dict)


async def run_llm(
    prompt: str,
    seed: int,
    policy: Mapping[str, Any],
    *,
    max_steps: int,
    max_llm_steps: int,
    transport: Any = None,
) -> LlmEpisode:
    import httpx

    base_url = str(policy.get("base_url") or "https://api.openai.com/v1").rstrip("/")
    model = policy.get("model")
    if not model:
        raise LlmPolicyError("policy.model is required for the llm policy", status=400)
    headers = {"content-type": "application/json"}
    key_env = policy.get("api_key_env")
    if key_env:
        key = os.environ.get(str(key_env), "")
        if not key:
            raise LlmPolicyError(f"policy.api_key_env names {key_env}, which is not set in the container", status=400)
        headers["authorization"] = f"Bearer {key}"
    config = policy.get("config") or {}
    max_tokens = int(policy.get("max_tokens") or 16)
    temperature = float(policy.get("temperature") or 0.0)
    episode = await anyio.to_thread.run_sync(Episode, seed, max_steps)  # the first reset of a seed takes ~1 s
    result = LlmEpisode(episode)
    prompt_tokens = completion_tokens = 0
    timeout = float(config.get("timeout_seconds", 60.0))
    async with httpx.AsyncClient(timeout=timeout, transport=transport) as client:
        while not episode.done and len(result.replies) < max_llm_steps:
            body = {
                "model": model,
                "messages": [
                    {"role": "system", "content": prompt},
                    {"role": "user", "content": user_message(render_text(episode.observe()))},
                ],
                "max_tokens": max_tokens,
                "temperature": temperature,
            }
            try:
                response = await client.post(f"{base_url}/chat/completions", json=body, headers=headers)
            except httpx.HTTPError as exc:
                raise LlmPolicyError(f"LLM endpoint {base_url} unreachable: {exc}", status=502) from exc
            if response.status_code >= 400:
                retryable = response.status_code in {408, 425, 429} or response.status_code >= 500
                status = (response.status_code if response.status_code < 500 else 502) if retryable else 400
                raise LlmPolicyError(
                    f"LLM endpoint {base_url} answered {response.status_code}: {response.text[:200]}", status=status
                )
            try:
                data = response.json()
                text = data["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise LlmPolicyError(f"LLM endpoint {base_url} sent no chat completion: {exc}", status=502) from exc
            raw_usage = data.get("usage") or {}
            prompt_tokens += int(raw_usage.get("prompt_tokens") or 0)
            completion_tokens += int(raw_usage.get("completion_tokens") or 0)
            action = parse_action(text)
            if action is None:
                result.invalid += 1
                action = "noop"
            result.replies.append(text[:80])
            result.actions.append(action)
            episode.step(action)
    cost = (
        prompt_tokens * float(config.get("input_cost_per_million", 0.0))
        + completion_tokens * float(config.get("output_cost_per_million", 0.0))
    ) / 1_000_000
    result.usage = {
        "calls": len(result.replies),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cost_usd": cost,
    }
    return result
