"""The proposer cache boundaries are the spec's (SPEC §8: ``proposer.codex``, ``proposer.openai_compatible``) and
their keys never change: a fixed request is filed under the key the cache gave it before the backend registry
(954580f), so a cache filled then still replays readonly, and a run files its proposer replies under those names."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.cache import CachedProposer, CacheStore
from synth_opt.cache.store import BOUNDARIES, SCHEMA
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.usage import Usage

from .test_cache_replay import SECRET, Unreachable, config_text, fake
from .test_pipeline_fake import LearningProposer

SETTINGS: dict[str, Any] = {"model": "gpt-x", "proposals_per_call": 1, "config": {}}
REQUEST = ReflectionRequest("c0", {"instruction": "answer"}, "instruction", records=())
REPLY = {"raw_text": "raw", "texts": ["answer better"], "usage": Usage(calls=1, total_tokens=9).to_dict()}
FILED_BEFORE_THE_REGISTRY = {
    # (namespace, boundary, key) as 954580f's CachedProposer filed REQUEST with SETTINGS (computed with that commit's
    # src/synth_opt/cache; 2a7896d filed codex's as proposer.codex_app_server / 6322ea6f...)
    "codex_app_server": (
        "ns",
        "proposer.codex",
        "7581daa551229c2af40f290bd56c4ec59a9efe54e004c6f77959abffee14541b",
    ),
    "openai_compatible": (
        "ns",
        "proposer.openai_compatible",
        "16d5529675b57d4fdae0f5c739e34a9468f6f83c403e302d1c85d4e0f63d9c10",
    ),
}


class Fixed:
    backend = "fixed"

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        return ProposerResult(texts=tuple(REPLY["texts"]), usage=Usage(calls=1, total_tokens=9), raw_text="raw")

    async def aclose(self) -> None:
        return None


def filed(path: Path) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(path)
    try:
        return [tuple(row) for row in db.execute("SELECT namespace, boundary, key FROM cache_entries ORDER BY key")]
    finally:
        db.close()


@pytest.mark.anyio
@pytest.mark.parametrize("backend", sorted(FILED_BEFORE_THE_REGISTRY))
async def test_a_proposer_reply_is_filed_under_the_key_it_had_before_the_registry(backend: str, tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "cache.sqlite", mode="readwrite", namespace="ns")
    await CachedProposer(store, backend, SETTINGS, lambda: Fixed()).propose(REQUEST)
    store.close()
    assert filed(tmp_path / "cache.sqlite") == [FILED_BEFORE_THE_REGISTRY[backend]]


@pytest.mark.anyio
async def test_a_cache_file_filled_before_the_registry_replays_readonly(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    old = sqlite3.connect(path)  # the rows as 954580f wrote them
    old.execute(SCHEMA)
    for namespace, boundary, key in FILED_BEFORE_THE_REGISTRY.values():
        old.execute(
            "INSERT INTO cache_entries VALUES (?, ?, ?, ?, ?)",
            (namespace, boundary, key, json.dumps(REPLY, sort_keys=True), "2026-12-01T00:00:00Z"),
        )
    old.commit()
    old.close()

    replay = CacheStore(path, mode="readonly", namespace="ns")
    for backend in FILED_BEFORE_THE_REGISTRY:
        result = await CachedProposer(replay, backend, SETTINGS, lambda: Unreachable()).propose(REQUEST)
        assert result.texts == ("answer better",) and result.usage.total_tokens == 9 and result.raw_text == "raw"
    assert replay.profile()["by_boundary"] == {
        "proposer.codex": {"hits": 1, "misses": 0, "writes": 0},
        "proposer.openai_compatible": {"hits": 1, "misses": 0, "writes": 0},
    }
    replay.close()


@pytest.mark.anyio
async def test_a_codex_run_files_its_replies_and_its_usage_under_proposer_codex(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(config_text("sync_serial"))  # backend = "codex_app_server"
    monkeypatch.setenv("FAKE_POLICY_KEY", SECRET)
    monkeypatch.setenv("SYNTH_OPTIMIZERS_RUN_ID", "codex")
    monkeypatch.setenv("SYNTH_OPTIMIZERS_CACHE_MODE", "readwrite")
    result = await GepaRun(
        load_config(path), container_transport=fake().transport(), proposer=LearningProposer()
    ).execute_async()
    cache = sqlite3.connect(load_config(path).cache_path())
    try:
        boundaries = {row[0] for row in cache.execute("SELECT DISTINCT boundary FROM cache_entries")}
    finally:
        cache.close()
    assert "proposer.codex" in boundaries and boundaries <= set(BOUNDARIES)
    assert result.workspace_db_path is not None
    workspace = sqlite3.connect(result.workspace_db_path)
    try:
        ledger = {row[0] for row in workspace.execute("SELECT DISTINCT boundary FROM usage_ledger")}
    finally:
        workspace.close()
    assert {b for b in ledger if b.startswith("proposer")} == {"proposer.codex"}  # the one name, as the cache's
