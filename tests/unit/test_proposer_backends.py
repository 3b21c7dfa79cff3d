"""The proposer backend registry: the built-in entries and their boundary names (the spec's), an unknown name, a
backend registered here (accepted by the config, built by the factory, its reservation, start-up warnings and
preflight used), and one boundary name for the cache and the usage ledger."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from synth_opt import ConfigError, load_config
from synth_opt.cache import CachedProposer, CacheStore
from synth_opt.cache.store import BOUNDARIES
from synth_opt.proposers.backends import (
    PROPOSER_BACKENDS,
    ProposerBackend,
    ProposerSettings,
    proposer_backend,
    proposer_boundary,
    register_proposer_backend,
)
from synth_opt.proposers.base import Proposer, ProposerResult
from synth_opt.proposers.factory import build_proposer, proposer_call_reservation
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.run.setup import config_warnings, preflight_proposer
from synth_opt.usage import Usage


def test_the_built_in_backends_and_their_boundaries() -> None:
    assert list(PROPOSER_BACKENDS) == ["codex_app_server", "openai_compatible", "offline"]
    codex, openai, offline = PROPOSER_BACKENDS.values()
    assert codex.boundary == "proposer.codex" and openai.boundary == "proposer.openai_compatible"  # SPEC §8
    assert offline.boundary == "proposer.offline" and not offline.own_keys
    assert {codex.boundary, openai.boundary, offline.boundary} <= set(BOUNDARIES)
    assert codex.own_keys == {"command", "codex_home", "message_stall_timeout_seconds"} and not openai.own_keys
    assert PROPOSER_BACKENDS.readers("codex_home") == ("codex_app_server",) and PROPOSER_BACKENDS.readers("model") == ()


def test_a_boundary_is_proposer_and_the_name_unless_the_entry_names_one() -> None:
    assert ProposerBackend("echo", build_echo).boundary == "proposer.echo"
    assert ProposerBackend("echo", build_echo, boundary="proposer.echoes").boundary == "proposer.echoes"
    assert proposer_boundary("codex_app_server") == "proposer.codex"
    assert proposer_boundary("openai_compatible") == "proposer.openai_compatible"
    assert proposer_boundary("claude") == "proposer.claude" and proposer_boundary(None) == "proposer"


def test_an_unknown_backend_names_the_known_ones(tmp_path: Path) -> None:
    known = "codex_app_server, openai_compatible, offline"
    with pytest.raises(ConfigError, match=f"unknown proposer backend 'claude'; use one of {known}"):
        proposer_backend("claude")
    with pytest.raises(ConfigError, match="codex_app_server, openai_compatible, offline") as raised:
        build_proposer(Section(backend="claude"), run_dir=tmp_path)
    assert raised.value.detail.get("key") == "proposer.backend"
    with pytest.raises(ConfigError, match=r"proposer\.backend: unknown proposer backend 'claude'; use one of"):
        load_config(write(tmp_path, "claude"))


@dataclass
class Echo:
    """A proposer that proposes its parent's text with a suffix."""

    suffix: str
    backend: str = "echo"

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        text = request.candidate[request.target_module] + self.suffix
        return ProposerResult(texts=(text,), usage=Usage(calls=1, total_tokens=7))

    async def aclose(self) -> None:
        return None


def build_echo(section: ProposerSettings, run_dir: Path) -> Proposer:
    return Echo(suffix=str(section.config.get("suffix", "!")))


def echo_reservation(section: ProposerSettings, tokens: int | None, cost: float | None) -> tuple[int, float]:
    return 100 + (tokens or 0), 0.25


def echo_warnings(section: ProposerSettings) -> list[tuple[str, str]]:
    return [("proposer.model", "does nothing with echo")] if section.model else []


PREFLIGHTS: list[tuple[list[str], Path]] = []


async def echo_preflight(section: ProposerSettings, cwd: Path) -> None:
    PREFLIGHTS.append((list(section.command or ()), cwd))


ECHO = ProposerBackend(
    "echo", build_echo, reservation=echo_reservation, warnings=echo_warnings, preflight=echo_preflight
)


@pytest.fixture
def echo() -> Iterator[ProposerBackend]:
    register_proposer_backend(ECHO)
    try:
        yield ECHO
    finally:
        del PROPOSER_BACKENDS[ECHO.name]


def write(tmp_path: Path, backend: str, extra: str = "") -> Path:
    path = tmp_path / "gepa.toml"
    path.write_text(
        f'[container]\nurl = "http://127.0.0.1:9"\n\n[dataset]\ntrain_ids = ["a"]\n\n'
        f'[proposer]\nbackend = "{backend}"\n{extra}',
        encoding="utf-8",
    )
    return path


def request() -> ReflectionRequest:
    return ReflectionRequest("c0", {"instruction": "answer"}, "instruction", records=())


@pytest.mark.anyio
async def test_a_registered_backend_is_built_from_the_config(echo: ProposerBackend, tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "echo", 'config = {suffix = " now"}\n'))
    assert config.proposer.backend == "echo"
    proposer = build_proposer(config.proposer, run_dir=tmp_path)
    assert isinstance(proposer, Echo)
    assert (await proposer.propose(request())).texts == ("answer now",)
    reserved = proposer_call_reservation(config.proposer, estimated_tokens=20, estimated_cost_usd=None)
    assert reserved == (120, 0.25)
    with pytest.raises(ValueError, match="already registered"):
        register_proposer_backend(ProposerBackend("echo", build_echo))


def test_the_cache_and_the_usage_ledger_use_the_one_boundary_name(echo: ProposerBackend, tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "cache.sqlite", mode="off", namespace="ns")
    for backend in PROPOSER_BACKENDS.values():
        cached = CachedProposer(store, backend.name, {}, lambda: Echo("!"))
        assert cached.boundary == backend.boundary == proposer_boundary(backend.name)
    assert CachedProposer(store, "echo", {}, lambda: Echo("!")).boundary == "proposer.echo"
    with pytest.raises(ConfigError, match="use one of codex_app_server, openai_compatible, offline, echo"):
        CachedProposer(store, "claude", {}, lambda: Echo("!"))


def test_a_registered_backend_warns_of_the_keys_only_others_read_and_of_its_own(
    echo: ProposerBackend, tmp_path: Path
) -> None:
    given = 'codex_home = "codex"\nmessage_stall_timeout_seconds = 30\nmodel = "m"\n'
    found = config_warnings(load_config(write(tmp_path, "echo", given)), ("instruction",))
    assert [w for w in found if w[0].startswith("proposer.")] == [
        ("proposer.codex_home", 'is used only with backend = "codex_app_server"'),
        ("proposer.message_stall_timeout_seconds", 'is used only with backend = "codex_app_server"'),
        ("proposer.model", "does nothing with echo"),
    ]


@pytest.mark.anyio
async def test_the_preflight_is_the_backends_with_the_command_resolved(echo: ProposerBackend, tmp_path: Path) -> None:
    PREFLIGHTS.clear()
    config = load_config(write(tmp_path, "echo", 'command = ["{python}", "-V"]\n'))
    await preflight_proposer(config)
    assert PREFLIGHTS == [([sys.executable, "-V"], tmp_path)]
    await ProposerBackend("quiet", build_echo).preflight(config.proposer, tmp_path)  # none: nothing checked


@dataclass
class Section:
    """A ``[proposer]`` section without the config model."""

    backend: str
    command: list[str] | None = None
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    codex_home: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: float = 30.0
    message_stall_timeout_seconds: float = 10.0
    cost_per_million_input_tokens: float | None = None
    cost_per_million_output_tokens: float | None = None
