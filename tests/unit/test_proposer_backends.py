"""The proposer backend registry: the built-in entries, an unknown name, a backend registered here (accepted by the
config, built by the factory, its reservation used), one boundary name for the cache and the usage ledger, and a
cache written under codex's old boundary name still served."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from synth_opt import ConfigError, load_config
from synth_opt.cache import CachedProposer, CacheStore
from synth_opt.errors import CacheMissError
from synth_opt.proposers.backends import (
    PROPOSER_BACKENDS,
    ProposerBackend,
    ProposerSettings,
    proposer_backend,
    register_proposer_backend,
)
from synth_opt.proposers.base import Proposer, ProposerResult
from synth_opt.proposers.factory import build_proposer, proposer_call_reservation
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.usage import Usage
from synth_opt.workspace.project_io import proposer_boundary


def test_the_built_in_backends_and_their_boundaries() -> None:
    assert list(PROPOSER_BACKENDS) == ["codex_app_server", "openai_compatible"]
    codex, openai = PROPOSER_BACKENDS.values()
    assert codex.boundary == "proposer.codex_app_server" and codex.legacy_cache_boundaries == ("proposer.codex",)
    assert openai.boundary == "proposer.openai_compatible" and openai.legacy_cache_boundaries == ()


def test_an_unknown_backend_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown proposer backend 'claude'; use one of codex_app_server, openai"):
        proposer_backend("claude")
    with pytest.raises(ConfigError, match="codex_app_server, openai_compatible") as raised:
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


ECHO = ProposerBackend("echo", build_echo, reservation=echo_reservation)


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
    with pytest.raises(ConfigError, match="use one of codex_app_server, openai_compatible, echo"):
        CachedProposer(store, "claude", {}, lambda: Echo("!"))


class Unreachable:
    backend = "codex_app_server"

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        raise AssertionError("a readonly replay called the proposer")

    async def aclose(self) -> None:
        return None


def old_codex_entry(store: CacheStore, key_request: Any, value: Any) -> None:
    """What the cache wrote before the registry: codex's replies under ``proposer.codex`` (the key hashed with it)."""
    store.put("proposer.codex", key_request, value)


@pytest.mark.anyio
async def test_a_cache_written_under_codex_old_boundary_name_still_serves_a_readonly_replay(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    settings: dict[str, Any] = {"model": None, "proposals_per_call": 1, "config": {}}
    key_request = {"backend": "codex_app_server", "settings": settings, "request": request().to_json()}
    served = {"texts": ["answer better"], "usage": Usage(calls=1, total_tokens=9).to_dict(), "raw_text": "raw"}
    writer = CacheStore(path, mode="readwrite", namespace="ns")
    old_codex_entry(writer, key_request, served)
    writer.close()

    replay = CacheStore(path, mode="readonly", namespace="ns")
    proposer = CachedProposer(replay, "codex_app_server", settings, lambda: Unreachable())
    result = await proposer.propose(request())
    assert result.texts == ("answer better",) and result.usage.total_tokens == 9 and result.raw_text == "raw"
    profile = replay.profile()
    assert profile["by_boundary"] == {"proposer.codex_app_server": {"hits": 1, "misses": 0, "writes": 0}}
    other = ReflectionRequest("c0", {"instruction": "other"}, "instruction", records=())
    with pytest.raises(CacheMissError, match=r"proposer\.codex_app_server"):  # a miss names the boundary it has now
        await proposer.propose(other)
    replay.close()


@pytest.mark.anyio
async def test_new_entries_are_written_under_the_new_name_and_preferred(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    settings: dict[str, Any] = {"model": None}
    key_request = {"backend": "codex_app_server", "settings": settings, "request": request().to_json()}
    store = CacheStore(path, mode="readwrite", namespace="ns")
    old_codex_entry(store, key_request, {"texts": ["old"], "usage": Usage().to_dict()})
    assert (await CachedProposer(store, "codex_app_server", settings, lambda: Unreachable()).propose(request())).texts
    assert store.counts[("proposer.codex_app_server", "write")] == 0  # served from the old entry: nothing written
    store.put("proposer.codex_app_server", key_request, {"texts": ["new"], "usage": Usage().to_dict()})
    result = await CachedProposer(store, "codex_app_server", settings, lambda: Unreachable()).propose(request())
    assert result.texts == ("new",)
    store.close()


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
