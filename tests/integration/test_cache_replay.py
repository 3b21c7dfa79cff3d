"""Fresh, cached and readonly runs of one config: identical normalized feeds, and the cache's failure modes."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from synth_opt import CacheMissError, GepaRun, load_config
from synth_opt.container.kept import STORED_CHARS
from synth_opt.events.compare import compare_feeds
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import RolloutCompleted, RolloutDegraded
from synth_opt.testing import FakeContainer

from .test_pipeline_fake import LearningProposer, keyword_score, rows

SECRET = "sk-test-abcdefghijklmnopqrstuvwxyz0123456789"


def config_text(mode: str) -> str:
    in_flight = 1 if mode == "sync_serial" else 4
    return f"""
[container]
url = "http://fake-container.test"

[dataset]
train_ids = {{count = 12}}
heldout_ids = {{count = 10}}
pareto_ids = {{count = 8}}

[policy]
type = "keyword"
api_key_env = "FAKE_POLICY_KEY"

[proposer]
backend = "codex_app_server"

[gepa]
max_train_rollouts = 150
minibatch_size = 3

[gepa.pipeline]
mode = "{mode}"
max_in_flight_candidates = {in_flight}

[gepa.pipeline.workers]
rollout = 3
"""


def fake() -> FakeContainer:
    return FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 10)},
        score=keyword_score,
        seed_candidate={"instruction": "answer w0"},
    )


class Unreachable:
    """A transport and a proposer that fail the test if anything calls them."""

    backend = "unreachable"

    async def propose(self, request: Any) -> Any:
        raise AssertionError("a readonly run called the proposer")

    async def aclose(self) -> None:
        return None

    @staticmethod
    def transport() -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            raise AssertionError(f"a readonly run called the container: {request.url}")

        return httpx.MockTransport(handle)


async def three_runs(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch, container_factory: Callable[[], FakeContainer] = fake
) -> list[Any]:
    path = tmp_path / "gepa.toml"
    path.write_text(config_text(mode))
    monkeypatch.setenv("FAKE_POLICY_KEY", SECRET)
    results = []
    containers = []
    for run_id, cache_mode in (("fresh", "readwrite"), ("cached", "readwrite"), ("replay", "readonly")):
        monkeypatch.setenv("SYNTH_OPTIMIZERS_RUN_ID", f"{mode}-{run_id}")
        monkeypatch.setenv("SYNTH_OPTIMIZERS_CACHE_MODE", cache_mode)
        config = load_config(path)
        if cache_mode == "readonly":
            run = GepaRun(config, container_transport=Unreachable.transport(), proposer=Unreachable())
        else:
            container = container_factory()
            containers.append(container)
            run = GepaRun(config, container_transport=container.transport(), proposer=LearningProposer())
        results.append(await run.execute_async())
    fresh_container, cached_container = containers
    assert fresh_container.rollouts_served == results[0].rollouts_used["total"] > 0
    assert cached_container.rollouts_served == 0, "the cached run served every rollout from the cache"
    return results


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync_serial", "async_pipelined"])
async def test_fresh_cached_and_readonly_runs_make_identical_decisions(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh, cached, replay = await three_runs(tmp_path, mode, monkeypatch)
    assert len({fresh.manifest_path, cached.manifest_path, replay.manifest_path}) == 3
    for other in (cached, replay):
        comparison = compare_feeds(Path(fresh.normalized_event_feed_path), Path(other.normalized_event_feed_path))
        assert comparison.equal, comparison
        assert other.best_candidate_id == fresh.best_candidate_id
        assert other.rollouts_used == fresh.rollouts_used
        assert other.best_heldout_score == fresh.best_heldout_score
    assert comparison.left_lines > 50
    profile = json.loads(Path(cached.cache_profile_path).read_text())
    assert profile["misses"] == 0 and profile["hits"] == profile["lookups"] > 0 and profile["writes"] == 0
    assert json.loads(Path(replay.cache_profile_path).read_text())["mode"] == "readonly"
    fresh_profile = json.loads(Path(fresh.cache_profile_path).read_text())
    assert fresh_profile["misses"] == fresh_profile["writes"] > 0
    assert cached.overrides_applied["SYNTH_OPTIMIZERS_CACHE_MODE"] == "readwrite"
    for result in (fresh, cached):
        profile = json.loads(Path(result.cache_profile_path).read_text())
        assert result.workspace_db_path is not None
        db = sqlite3.connect(result.workspace_db_path)
        try:
            actions = dict(db.execute("SELECT action, count(*) FROM cache_accesses GROUP BY action").fetchall())
            by_boundary = {
                row[0]: row[1:]
                for row in db.execute("SELECT boundary, hits, misses, writes FROM cache_profiles").fetchall()
            }
        finally:
            db.close()
        assert actions.get("hit", 0) == profile["hits"] and actions.get("miss", 0) == profile["misses"]
        assert actions.get("write", 0) == profile["writes"]
        for boundary, counts in profile["by_boundary"].items():
            assert by_boundary[boundary] == (counts["hits"], counts["misses"], counts["writes"])


def long_replies() -> FakeContainer:
    """Feedback and a trace of about 200 kB a rollout, different for every row."""
    return FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 10)},
        score=keyword_score,
        seed_candidate={"instruction": "answer w0"},
        feedback=lambda candidate, row, reward: f"expected {row['answer']}. " + f"{row['answer']} missing. " * 12_000,
        rewrite_reply=lambda reply: {**reply, "trace": {"steps": [f"{reply['task_id']} {i}" for i in range(16_000)]}},
    )


@pytest.mark.anyio
async def test_long_replies_are_cached_as_the_run_keeps_them_and_replay_identically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache holds what the run keeps of a long feedback and trace (``container.kept``), with the whole
    length, sha256 and trace digest beside it: a cached and a readonly run make the fresh run's decisions, with the
    same rollout lines (feedback, ``cut``, ``trace_digest``), and the cache does not grow by the whole replies."""
    fresh, cached, replay = await three_runs(tmp_path, "async_pipelined", monkeypatch, long_replies)
    for other in (cached, replay):
        comparison = compare_feeds(Path(fresh.normalized_event_feed_path), Path(other.normalized_event_feed_path))
        assert comparison.equal, comparison
    completed = [e.data for e in read_feed(Path(replay.event_feed_path)) if isinstance(e.data, RolloutCompleted)]
    assert completed and all(set(line.cut) == {"feedback", "output"} for line in completed)  # type: ignore[arg-type]
    whole = json.dumps({"steps": [f"{completed[0].task_id} {i}" for i in range(16_000)]}, separators=(",", ":"))
    assert completed[0].trace_digest == hashlib.sha256(whole.encode()).hexdigest()[:16]  # the whole trace's
    entries = fresh.rollouts_used["total"]
    cache = Path(fresh.cache_profile_path).parent.parent / "cache.sqlite"
    assert cache.stat().st_size < entries * 3 * STORED_CHARS  # (whole: about 400 kB an entry)


@pytest.mark.anyio
async def test_a_task_failure_is_cached_and_replayed_as_the_same_degraded_rollout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(config_text("async_pipelined").replace('api_key_env = "FAKE_POLICY_KEY"\n', ""))
    broken = fake()
    broken.fail_first("POST /rollout", 3, 400)  # served, and unusable: a task failure (never retried)
    fresh = await GepaRun(
        load_config(path), container_transport=broken.transport(), proposer=LearningProposer()
    ).execute_async()
    monkeypatch.setenv("SYNTH_OPTIMIZERS_CACHE_MODE", "readonly")
    monkeypatch.setenv("SYNTH_OPTIMIZERS_RUN_ID", "replay")
    replay = await GepaRun(
        load_config(path), container_transport=Unreachable.transport(), proposer=Unreachable()
    ).execute_async()

    def degraded(feed: str) -> list[str]:
        return [e.data.rollout_id for e in read_feed(Path(feed)) if isinstance(e.data, RolloutDegraded)]

    assert len(degraded(fresh.event_feed_path)) == 3
    assert len(degraded(replay.event_feed_path)) == 3
    comparison = compare_feeds(Path(fresh.normalized_event_feed_path), Path(replay.normalized_event_feed_path))
    assert comparison.equal, comparison


@pytest.mark.anyio
async def test_the_api_key_reaches_no_cache_row_event_or_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = await three_runs(tmp_path, "sync_serial", monkeypatch)
    cache = tmp_path / "runs" / "cache.sqlite"
    with sqlite3.connect(cache) as db:
        dump = "\n".join(db.iterdump())
    db.close()
    assert SECRET not in dump
    for result in results:
        for path in (p for p in Path(result.manifest_path).parent.rglob("*") if p.is_file()):
            assert SECRET not in path.read_text(errors="replace"), path


@pytest.mark.anyio
async def test_readonly_with_a_changed_config_is_a_cache_miss_naming_the_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await three_runs(tmp_path, "sync_serial", monkeypatch)
    path = tmp_path / "gepa.toml"
    path.write_text(config_text("sync_serial").replace("minibatch_size = 3", "minibatch_size = 4"))
    monkeypatch.setenv("SYNTH_OPTIMIZERS_RUN_ID", "changed")
    config = load_config(path)
    assert config.cache.mode == "readonly"
    with pytest.raises(CacheMissError, match="boundary container"):
        await GepaRun(config, container_transport=Unreachable.transport(), proposer=Unreachable()).execute_async()


def test_a_corrupt_cache_is_a_one_line_cache_corrupt_error(tmp_path: Path) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(config_text("sync_serial"))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "cache.sqlite").write_bytes(b"this is not a sqlite database at all" * 100)
    done = subprocess.run(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error[cache_corrupt]: ") and "cache.sqlite" in last
    assert "Traceback" not in done.stderr


def test_the_api_key_reaches_no_log_line_or_output_of_the_cli(tmp_path: Path) -> None:
    from .test_run_faults import config

    path = config(tmp_path)
    text = path.read_text().replace("max_train_rollouts = 200", "max_train_rollouts = 40")
    path.write_text(text.replace("[proposer]", '[policy]\napi_key_env = "FAKE_POLICY_KEY"\n\n[proposer]'))
    env = {**os.environ, "FAKE_POLICY_KEY": SECRET}
    for extra in (["--log-format", "json", "--log-level", "debug"], []):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "synth_opt",
                "gepa",
                "run",
                "--config",
                str(path),
                "--no-progress",
                "--fresh",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stderr.count("\n") > 10, "log lines were written"
        assert SECRET not in done.stderr and SECRET not in done.stdout
    for file in (tmp_path / "runs").rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file
