"""Building the configured proposer from the ``[proposer]`` config section.

The section is typed by a small structural protocol rather than the config model itself, so this module does
not depend on the config module (and tests can pass any object with these attributes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from synth_opt.errors import ConfigError
from synth_opt.proposers.base import Proposer
from synth_opt.proposers.codex import DEFAULT_COMMAND, CodexAppServerProposer, provider_overrides
from synth_opt.proposers.openai_compat import OpenAICompatibleProposer
from synth_opt.proposers.reflection import DEFAULT_MAX_FEEDBACK_CHARS, DEFAULT_MAX_PROMPT_TOKENS

__all__ = ["CODEX_WORKDIR_NAME", "ProposerSettings", "build_proposer", "proposer_call_reservation"]

CODEX_WORKDIR_NAME = "proposer_workdir"


class ProposerSettings(Protocol):
    """The ``[proposer]`` keys this factory reads (read-only, so frozen config models match)."""

    @property
    def backend(self) -> str: ...
    @property
    def command(self) -> Sequence[str] | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def api_key_env(self) -> str | None: ...
    @property
    def codex_home(self) -> Path | None: ...
    @property
    def config(self) -> Mapping[str, Any]: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def message_stall_timeout_seconds(self) -> float: ...
    @property
    def cost_per_million_input_tokens(self) -> float | None: ...
    @property
    def cost_per_million_output_tokens(self) -> float | None: ...


def build_proposer(section: ProposerSettings, *, run_dir: Path) -> Proposer:
    """The proposer ``section`` asks for, its run-local state (``CODEX_HOME``, workdir) under ``run_dir``.

    For ``codex_app_server``, ``config`` holds codex ``-c`` overrides; a ``base_url`` (with ``api_key_env``)
    becomes a run-local model provider unless ``config`` sets ``model_provider`` (:func:`provider_overrides`).
    For ``openai_compatible`` it holds ``wire_api`` ("chat" or "responses"), ``json_mode`` (bool, superseded by
    ``[proposer] response_format``), and any other key is sent in the request body (e.g. ``temperature``,
    ``max_tokens``). ``max_retries``, ``response_format``, ``max_feedback_chars`` and ``max_prompt_tokens`` are
    read when the section has them.
    """
    max_feedback_chars = int(getattr(section, "max_feedback_chars", DEFAULT_MAX_FEEDBACK_CHARS))
    max_prompt_tokens = int(getattr(section, "max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS))
    if section.backend == "codex_app_server":
        return CodexAppServerProposer(
            section.command or DEFAULT_COMMAND,
            codex_home=section.codex_home or run_dir / "codex_home",
            workdir=run_dir / CODEX_WORKDIR_NAME,
            model=section.model,
            config_overrides=provider_overrides(
                section.config, base_url=section.base_url, api_key_env=section.api_key_env
            ),
            timeout_seconds=section.timeout_seconds,
            message_stall_timeout_seconds=section.message_stall_timeout_seconds,
            max_feedback_chars=max_feedback_chars,
            max_prompt_tokens=max_prompt_tokens,
            cost_per_million_input_tokens=section.cost_per_million_input_tokens,
            cost_per_million_output_tokens=section.cost_per_million_output_tokens,
        )
    if section.backend == "openai_compatible":
        if not section.base_url:
            raise ConfigError("[proposer] base_url is required when backend = 'openai_compatible'")
        options = dict(section.config)
        wire_api = options.pop("wire_api", "chat")
        json_mode = options.pop("json_mode", False)
        if wire_api not in ("chat", "responses"):
            raise ConfigError(f"[proposer] config.wire_api must be 'chat' or 'responses', not {wire_api!r}")
        if not isinstance(json_mode, bool):
            raise ConfigError("[proposer] config.json_mode must be true or false")
        response_format = getattr(section, "response_format", None)
        if response_format is None and json_mode:
            response_format = "json_object"
        return OpenAICompatibleProposer(
            section.base_url,
            model=section.model,
            api_key_env=section.api_key_env,
            timeout_seconds=section.timeout_seconds,
            wire_api=wire_api,
            response_format=response_format,
            max_retries=int(getattr(section, "max_retries", 3)),
            max_feedback_chars=max_feedback_chars,
            max_prompt_tokens=max_prompt_tokens,
            extra_body=options,
            cost_per_million_input_tokens=section.cost_per_million_input_tokens,
            cost_per_million_output_tokens=section.cost_per_million_output_tokens,
        )
    raise ConfigError(
        f"[proposer] backend must be 'codex_app_server' or 'openai_compatible', not {section.backend!r}",
        key="proposer.backend",
    )


_OUTPUT_LIMIT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def proposer_call_reservation(
    section: ProposerSettings, *, estimated_tokens: int | None, estimated_cost_usd: float | None
) -> tuple[int, float]:
    """The tokens and cost the budget reserves for one proposer call when a proposal is planned.

    ``openai_compatible``: the prompt is cut to ``max_prompt_tokens``, so a call uses at most that plus its output
    limit (``max_tokens``, ``max_completion_tokens`` or ``max_output_tokens`` in ``[proposer] config``; without
    one, ``gepa.proposer_estimated_tokens`` stands for the output); with known prices the cost is that many tokens
    at those prices. ``codex_app_server``: codex adds its own instructions and tool calls to a turn, so no bound
    is known and the reservation is the configured estimate. Never below the configured estimates when the bound
    is unknown; never depending on timing."""
    tokens, cost = estimated_tokens or 0, estimated_cost_usd or 0.0
    if section.backend != "openai_compatible":
        return tokens, cost
    limits = [section.config.get(key) for key in _OUTPUT_LIMIT_KEYS]
    configured = [int(v) for v in limits if isinstance(v, int | float) and not isinstance(v, bool) and v > 0]
    max_output = configured[0] if configured else estimated_tokens
    if max_output is None:
        return tokens, cost
    max_prompt = int(getattr(section, "max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS))
    prices = (section.cost_per_million_input_tokens, section.cost_per_million_output_tokens)
    if any(price is not None for price in prices):  # known prices (0 is free); unset ones: the estimate
        cost = (max_prompt * (prices[0] or 0.0) + max_output * (prices[1] or 0.0)) / 1e6
    return max_prompt + max_output, cost
