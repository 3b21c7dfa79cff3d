"""A cache filled before the proposer backend registry, when codex's replies were filed under ``proposer.codex``
(the key hashed with that name), still serves a readonly replay of the same config: same decisions, no live call."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.cache import boundaries
from synth_opt.events.compare import compare_feeds
from synth_opt.proposers.backends import ProposerBackend

from .test_cache_replay import SECRET, Unreachable, config_text, fake
from .test_pipeline_fake import LearningProposer


def old_codex_backend(name: str) -> ProposerBackend:
    """The cache's view of codex before the registry: boundary ``proposer.codex``, no aliases."""
    assert name == "codex_app_server"
    return ProposerBackend("codex", lambda section, run_dir: LearningProposer())


@pytest.mark.anyio
async def test_a_cache_written_under_proposer_codex_replays_readonly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(config_text("sync_serial"))
    monkeypatch.setenv("FAKE_POLICY_KEY", SECRET)
    monkeypatch.setenv("SYNTH_OPTIMIZERS_RUN_ID", "old-cache")
    monkeypatch.setenv("SYNTH_OPTIMIZERS_CACHE_MODE", "readwrite")
    with monkeypatch.context() as old:
        old.setattr(boundaries, "proposer_backend", old_codex_backend)
        container = fake()
        fresh = await GepaRun(
            load_config(path), container_transport=container.transport(), proposer=LearningProposer()
        ).execute_async()
    cache = sqlite3.connect(load_config(path).cache_path())
    try:
        filed = dict(cache.execute("SELECT boundary, count(*) FROM cache_entries GROUP BY boundary").fetchall())
    finally:
        cache.close()
    assert filed.get("proposer.codex", 0) > 0 and "proposer.codex_app_server" not in filed

    monkeypatch.setenv("SYNTH_OPTIMIZERS_RUN_ID", "replay")
    monkeypatch.setenv("SYNTH_OPTIMIZERS_CACHE_MODE", "readonly")
    replay = await GepaRun(
        load_config(path), container_transport=Unreachable.transport(), proposer=Unreachable()
    ).execute_async()
    comparison = compare_feeds(Path(fresh.normalized_event_feed_path), Path(replay.normalized_event_feed_path))
    assert comparison.equal, comparison
    assert replay.best_candidate_id == fresh.best_candidate_id
