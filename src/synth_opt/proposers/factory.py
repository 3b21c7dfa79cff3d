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
from synth_opt.proposers.codex import DEFAULT_COMMAND, CodexAppServerProposer
from synth_opt.proposers.openai_compat import OpenAICompatibleProposer

__all__ = ["CODEX_WORKDIR_NAME", "ProposerSettings", "build_proposer"]

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
    def cost_per_million_input_tokens(self) -> float: ...
    @property
    def cost_per_million_output_tokens(self) -> float: ...


def build_proposer(section: ProposerSettings, *, run_dir: Path) -> Proposer:
    """The proposer ``section`` asks for, its run-local state (``CODEX_HOME``, workdir) under ``run_dir``.

    For ``codex_app_server``, ``config`` holds codex ``-c`` overrides. For ``openai_compatible`` it holds
    ``wire_api`` ("chat" or "responses"), ``json_mode`` (bool), and any other key is sent in the request body
    (e.g. ``temperature``).
    """
    if section.backend == "codex_app_server":
        return CodexAppServerProposer(
            section.command or DEFAULT_COMMAND,
            codex_home=section.codex_home or run_dir / "codex_home",
            workdir=run_dir / CODEX_WORKDIR_NAME,
            model=section.model,
            config_overrides=section.config,
            timeout_seconds=section.timeout_seconds,
            message_stall_timeout_seconds=section.message_stall_timeout_seconds,
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
        return OpenAICompatibleProposer(
            section.base_url,
            model=section.model,
            api_key_env=section.api_key_env,
            timeout_seconds=section.timeout_seconds,
            wire_api=wire_api,
            json_mode=json_mode,
            extra_body=options,
            cost_per_million_input_tokens=section.cost_per_million_input_tokens,
            cost_per_million_output_tokens=section.cost_per_million_output_tokens,
        )
    raise ConfigError(
        f"[proposer] backend must be 'codex_app_server' or 'openai_compatible', not {section.backend!r}",
        key="proposer.backend",
    )
