"""The proposer backends, one :class:`ProposerBackend` entry each, registered by name in :data:`PROPOSER_BACKENDS`
(the values ``[proposer] backend`` accepts).

An entry owns everything that differs between backends: how it is built from the ``[proposer]`` section, what one
call reserves from the budget, the boundary name under which the cache files its replies and the usage ledger its
usage (the same name for both: :func:`proposer_boundary`), the ``[proposer]`` keys only it reads, its own start-up
warnings, and its preflight check. Adding a backend is one entry and :func:`register_proposer_backend`.

The boundary names are the spec's (SPEC §8): ``proposer.codex`` for ``codex_app_server`` and
``proposer.openai_compatible``; a new backend's defaults to ``proposer.<name>``. The name is hashed into every cache
key, so an entry's boundary never changes once its replies have been cached.

The clients and the preflight checks are imported when a backend is built or checked, not with this module: the
workspace's writer process reads the boundary names here and should not load httpx and both clients to do so.

The section is typed by a small structural protocol rather than the config model itself, so this module does not
depend on the config module (and tests can pass any object with these attributes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from synth_opt.errors import ConfigError
from synth_opt.proposers.base import Proposer
from synth_opt.proposers.reflection import DEFAULT_MAX_FEEDBACK_CHARS, DEFAULT_MAX_PROMPT_TOKENS
from synth_opt.registry import Registry

__all__ = [
    "CODEX_WORKDIR_NAME",
    "PROPOSER_BACKENDS",
    "ProposerBackend",
    "ProposerBackends",
    "ProposerSettings",
    "configured_estimate",
    "no_preflight",
    "no_warnings",
    "proposer_backend",
    "proposer_boundary",
    "register_proposer_backend",
]

CODEX_WORKDIR_NAME = "proposer_workdir"


class ProposerSettings(Protocol):
    """The ``[proposer]`` keys the backends read (read-only, so frozen config models match)."""

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


Builder = Callable[[ProposerSettings, Path], Proposer]
"""Builds the proposer a section asks for, its run-local state under the run directory."""
Reservation = Callable[[ProposerSettings, int | None, float | None], tuple[int, float]]
"""The (tokens, cost) one call reserves, given the configured estimates (``gepa.proposer_estimated_*``)."""
Warnings = Callable[[ProposerSettings], list[tuple[str, str]]]
"""The backend's own start-up warnings for a section: (key, message) for each setting that does nothing with it."""
Preflight = Callable[[ProposerSettings, Path], Awaitable[None]]
"""Fail before spending: checks the section (its ``command`` already resolved) from the config's directory; raises
:class:`ConfigError` saying what to fix."""


def configured_estimate(
    section: ProposerSettings, estimated_tokens: int | None, estimated_cost_usd: float | None
) -> tuple[int, float]:
    """No bound is known: a call reserves the configured estimates."""
    return estimated_tokens or 0, estimated_cost_usd or 0.0


def no_warnings(section: ProposerSettings) -> list[tuple[str, str]]:
    """A backend without warnings of its own."""
    return []


async def no_preflight(section: ProposerSettings, cwd: Path) -> None:
    """A backend with nothing to check before the run."""


@dataclass(frozen=True, slots=True)
class ProposerBackend:
    """One proposer backend.

    ``boundary`` is its name at the cache (hashed into its keys) and in the usage ledger; empty means
    ``proposer.<name>``. ``own_keys`` are the ``[proposer]`` keys only this backend reads: one set with another
    backend is a start-up warning naming the backends that read it. ``warnings`` are its other start-up warnings,
    ``preflight`` its start-up check."""

    name: str
    build: Builder
    reservation: Reservation = configured_estimate
    boundary: str = ""
    own_keys: frozenset[str] = frozenset()
    warnings: Warnings = no_warnings
    preflight: Preflight = no_preflight

    def __post_init__(self) -> None:
        if not self.boundary:
            object.__setattr__(self, "boundary", f"proposer.{self.name}")


class ProposerBackends(Registry[ProposerBackend]):
    """The registry of proposer backends (the values ``[proposer] backend`` accepts)."""

    def __init__(self) -> None:
        super().__init__("proposer backend")

    def readers(self, key: str) -> tuple[str, ...]:
        """The backends whose own ``[proposer]`` key ``key`` is (empty for a key every backend reads)."""
        return tuple(backend.name for backend in self.values() if key in backend.own_keys)


PROPOSER_BACKENDS = ProposerBackends()
"""The registered proposer backends by name (the values ``[proposer] backend`` accepts)."""


def register_proposer_backend(backend: ProposerBackend) -> ProposerBackend:
    """Register ``backend`` under its name; a name already taken by another backend is a ``ValueError``."""
    return PROPOSER_BACKENDS.register(backend)


def proposer_backend(name: str) -> ProposerBackend:
    """The backend registered as ``name``; an unknown name is a :class:`ConfigError` (key ``proposer.backend``)
    listing the known ones."""
    try:
        return PROPOSER_BACKENDS.named(name)
    except ValueError as error:
        raise ConfigError(f"[proposer] backend: {error}", key="proposer.backend") from None


def proposer_boundary(backend: str | None) -> str:
    """The boundary name of ``backend``'s calls, at the cache and in the usage ledger: the registered entry's
    (``proposer.codex`` for ``codex_app_server``); an unregistered name is ``proposer.<name>``, none is
    ``proposer``."""
    entry = PROPOSER_BACKENDS.get(backend) if backend else None
    if entry is not None:
        return entry.boundary
    return f"proposer.{backend}" if backend else "proposer"


def _prompt_limits(section: ProposerSettings) -> tuple[int, int]:
    max_feedback_chars = int(getattr(section, "max_feedback_chars", DEFAULT_MAX_FEEDBACK_CHARS))
    max_prompt_tokens = int(getattr(section, "max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS))
    return max_feedback_chars, max_prompt_tokens


def _build_codex(section: ProposerSettings, run_dir: Path) -> Proposer:
    """``config`` holds codex ``-c`` overrides; a ``base_url`` (with ``api_key_env``) becomes a run-local model
    provider unless ``config`` sets ``model_provider`` (:func:`provider_overrides`)."""
    from synth_opt.proposers.codex import DEFAULT_COMMAND, CodexAppServerProposer, provider_overrides

    max_feedback_chars, max_prompt_tokens = _prompt_limits(section)
    return CodexAppServerProposer(
        section.command or DEFAULT_COMMAND,
        codex_home=section.codex_home or run_dir / "codex_home",
        workdir=run_dir / CODEX_WORKDIR_NAME,
        model=section.model,
        config_overrides=provider_overrides(section.config, base_url=section.base_url, api_key_env=section.api_key_env),
        timeout_seconds=section.timeout_seconds,
        message_stall_timeout_seconds=section.message_stall_timeout_seconds,
        max_feedback_chars=max_feedback_chars,
        max_prompt_tokens=max_prompt_tokens,
        cost_per_million_input_tokens=section.cost_per_million_input_tokens,
        cost_per_million_output_tokens=section.cost_per_million_output_tokens,
    )


def _build_openai_compatible(section: ProposerSettings, run_dir: Path) -> Proposer:
    """``config`` holds ``wire_api`` ("chat" or "responses"), ``json_mode`` (bool, superseded by ``[proposer]
    response_format``), and any other key is sent in the request body (e.g. ``temperature``, ``max_tokens``)."""
    from synth_opt.proposers.openai_compat import DEFAULT_MAX_REPLY_BYTES, OpenAICompatibleProposer

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
    max_feedback_chars, max_prompt_tokens = _prompt_limits(section)
    return OpenAICompatibleProposer(
        section.base_url,
        model=section.model,
        api_key_env=section.api_key_env,
        timeout_seconds=section.timeout_seconds,
        wire_api=wire_api,
        response_format=response_format,
        max_retries=int(getattr(section, "max_retries", 3)),
        max_reply_bytes=int(getattr(section, "max_reply_bytes", DEFAULT_MAX_REPLY_BYTES)),
        max_feedback_chars=max_feedback_chars,
        max_prompt_tokens=max_prompt_tokens,
        extra_body=options,
        cost_per_million_input_tokens=section.cost_per_million_input_tokens,
        cost_per_million_output_tokens=section.cost_per_million_output_tokens,
    )


_OUTPUT_LIMIT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def _bounded_reservation(
    section: ProposerSettings, estimated_tokens: int | None, estimated_cost_usd: float | None
) -> tuple[int, float]:
    """The prompt is cut to ``max_prompt_tokens``, so a call uses at most that plus its output limit
    (``max_tokens``, ``max_completion_tokens`` or ``max_output_tokens`` in ``[proposer] config``; without one,
    ``gepa.proposer_estimated_tokens`` stands for the output); with known prices the cost is that many tokens at
    those prices."""
    tokens, cost = configured_estimate(section, estimated_tokens, estimated_cost_usd)
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


def _codex_warnings(section: ProposerSettings) -> list[tuple[str, str]]:
    """``base_url`` and ``api_key_env`` do nothing when ``config`` chooses codex's own ``model_provider``, and
    ``api_key_env`` does nothing without ``base_url`` (codex reads its own credentials)."""
    if "model_provider" in section.config:  # codex's own provider: base_url and its key are not used
        unused = [key for key in ("base_url", "api_key_env") if getattr(section, key) is not None]
        return [
            (f"proposer.{key}", "does nothing: proposer.config sets codex's model_provider, which codex uses instead")
            for key in unused
        ]
    if section.base_url is None and section.api_key_env is not None:
        return [
            (
                "proposer.api_key_env",
                "does nothing with codex_app_server without proposer.base_url (codex reads its own credentials)",
            )
        ]
    return []


async def _codex_preflight(section: ProposerSettings, cwd: Path) -> None:
    """The app-server command runs; a ``base_url`` that is codex's provider (no ``model_provider`` in ``config``)
    answers."""
    from synth_opt.proposers.codex import DEFAULT_COMMAND
    from synth_opt.proposers.preflight import check_codex_command, check_openai_endpoint

    await check_codex_command(DEFAULT_COMMAND if section.command is None else section.command, cwd=cwd)
    if section.base_url and "model_provider" not in section.config:  # codex's provider is this endpoint
        await check_openai_endpoint(section.base_url, api_key_env=section.api_key_env)


async def _openai_preflight(section: ProposerSettings, cwd: Path) -> None:
    """``base_url`` is set and answers, with the key when one is named."""
    from synth_opt.proposers.preflight import check_openai_endpoint

    await check_openai_endpoint(section.base_url, api_key_env=section.api_key_env)


CODEX_APP_SERVER = register_proposer_backend(
    # codex adds its own instructions and tool calls to a turn, so no bound is known: the configured estimate.
    ProposerBackend(
        "codex_app_server",
        _build_codex,
        boundary="proposer.codex",  # SPEC §8; hashed into its cache keys
        own_keys=frozenset({"command", "codex_home", "message_stall_timeout_seconds"}),
        warnings=_codex_warnings,
        preflight=_codex_preflight,
    )
)
OPENAI_COMPATIBLE = register_proposer_backend(
    ProposerBackend(
        "openai_compatible",
        _build_openai_compatible,
        reservation=_bounded_reservation,
        boundary="proposer.openai_compatible",
        preflight=_openai_preflight,
    )
)


def _build_offline(section: ProposerSettings, run_dir: Path) -> Proposer:
    from synth_opt.proposers.offline import FeedbackNotesProposer

    return FeedbackNotesProposer()


def _free_reservation(
    section: ProposerSettings, estimated_tokens: int | None, estimated_cost_usd: float | None
) -> tuple[int, float]:
    """A call of the offline rule uses no tokens and costs nothing."""
    return 0, 0.0


OFFLINE = register_proposer_backend(
    # the feedback-notes rule (synth_opt.proposers.offline): in this process, deterministic and free
    ProposerBackend("offline", _build_offline, reservation=_free_reservation)
)
