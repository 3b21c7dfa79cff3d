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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from crafter_cookbook.game import ACTIONS, Episode, render_text
from synth_opt.policies.chat import ChatEndpoint, LlmPolicyError

__all__ = ["LlmEpisode", "LlmPolicyError", "parse_action", "run_llm", "user_message"]

_WORD = re.compile(r"[a-z_]+")


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
    endpoint = ChatEndpoint.from_policy(policy, default_max_tokens=16)
    episode = await anyio.to_thread.run_sync(Episode, seed, max_steps)  # the first reset of a seed takes ~1 s
    result = LlmEpisode(episode)
    prompt_tokens = completion_tokens = 0
    async with endpoint.client(transport) as client:
        while not episode.done and len(result.replies) < max_llm_steps:
            messages = [
                {"role": "system", "content": prompt},
                {"role": "user", "content": user_message(render_text(episode.observe()))},
            ]
            text, call_usage = await endpoint.complete(client, messages)
            prompt_tokens += call_usage["prompt_tokens"]
            completion_tokens += call_usage["completion_tokens"]
            action = parse_action(text)
            if action is None:
                result.invalid += 1
                action = "noop"
            result.replies.append(text[:80])
            result.actions.append(action)
            episode.step(action)
    result.usage = endpoint.usage(prompt_tokens, completion_tokens, calls=len(result.replies))
    return result
