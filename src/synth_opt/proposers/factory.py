"""Building the configured proposer from the ``[proposer]`` config section, through its registered backend
(:mod:`synth_opt.proposers.backends`)."""

from __future__ import annotations

from pathlib import Path

from synth_opt.proposers.backends import CODEX_WORKDIR_NAME, ProposerSettings, proposer_backend
from synth_opt.proposers.base import Proposer

__all__ = ["CODEX_WORKDIR_NAME", "ProposerSettings", "build_proposer", "proposer_call_reservation"]


def build_proposer(section: ProposerSettings, *, run_dir: Path) -> Proposer:
    """The proposer ``section`` asks for, its run-local state (``CODEX_HOME``, workdir) under ``run_dir``; an
    unregistered backend is a :class:`~synth_opt.errors.ConfigError` naming the registered ones.

    ``max_retries``, ``response_format``, ``max_feedback_chars`` and ``max_prompt_tokens`` are read when the section
    has them; what ``config`` holds depends on the backend (see each builder in
    :mod:`~synth_opt.proposers.backends`)."""
    return proposer_backend(section.backend).build(section, run_dir)


def proposer_call_reservation(
    section: ProposerSettings, *, estimated_tokens: int | None, estimated_cost_usd: float | None
) -> tuple[int, float]:
    """The tokens and cost the budget reserves for one proposer call when a proposal is planned: the backend's
    bound where it knows one (``openai_compatible``: the prompt cut plus the output limit, at known prices), else
    the configured estimates (``codex_app_server``: codex adds its own instructions and tool calls to a turn).
    Never below the configured estimates when the bound is unknown; never depending on timing."""
    return proposer_backend(section.backend).reservation(section, estimated_tokens, estimated_cost_usd)
