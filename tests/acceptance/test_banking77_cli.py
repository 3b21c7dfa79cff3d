"""`synth-opt gepa run` on the Banking77 cookbook through real processes: the container as a subprocess, the
offline proposer through the codex app-server client, the CLI itself as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synth_opt.container.launch import process_group_alive
from synth_opt.events import Event
from synth_opt.events.compare import compare_feeds
from synth_opt.events.types import (
    AcceptanceDecided,
    ContainerLaunched,
    PlanForecast,
    ProposalCreated,
    ProposerCalled,
    RunState,
)

from ..cookbook_runs import assert_planned, offline_config, run_accept

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbooks" / "banking77"
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "banking77"

pytestmark = pytest.mark.skipif(
    not (DATA / "train.csv").exists() and not os.environ.get("BANKING77_DATA_DIR"),
    reason="the Banking77 data is not beside the repository (../shared/data/banking77) nor in BANKING77_DATA_DIR",
)


def small_config(folder: Path, *, budget: int = 1500, cache: str = "readwrite") -> Path:
    return offline_config(
        COOKBOOK,
        folder,
        {
            "train_ids = { count = 4000 }": "train_ids = { count = 600 }",
            "pareto_ids = { count = 150 }": "pareto_ids = { count = 60 }",
            "heldout_ids = { count = 500 }": "heldout_ids = { count = 100 }",
            "max_train_rollouts = 10000": f"max_train_rollouts = {budget}",
            "max_heldout_rollouts = 1000": "max_heldout_rollouts = 200",
            "max_total_rollouts = 11000": f"max_total_rollouts = {budget + 200}",
            "minibatch_size = 50": "minibatch_size = 20",
            'mode = "off"': f'mode = "{cache}"',
        },
    )


def run_cli(
    config: Path, *extra: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(config), "--no-progress", *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config.parent,
        env={**os.environ, **(env or {})},
    )


def events(run_dir: Path) -> list[Event]:
    """The typed events of the feed's complete lines (a line still being written, or torn by a kill, is left out)."""
    lines = (run_dir / "events.jsonl").read_text().splitlines(keepends=True)
    return [Event.from_json(json.loads(line)) for line in lines if line.endswith("\n") and line.strip()]


def test_the_offline_banking77_run_improves_heldout_accuracy(tmp_path: Path) -> None:
    config = small_config(tmp_path, cache="off")
    done = run_cli(config)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "heldout" in done.stdout and "Traceback" not in done.stderr
    manifest = json.loads((tmp_path / "runs" / "latest" / "result_manifest.json").read_text())
    for key in (
        "best_candidate",
        "manifest_path",
        "event_feed_path",
        "normalized_event_feed_path",
        "cache_profile_path",
        "candidate_registry_path",
        "frontier_path",
        "run_registry_path",
        "workspace_db_path",
        "artifact_refs",
        "cost_usd",
        "usage",
        "state_history",
        "seed_train_score",
        "seed_heldout_score",
        "best_train_score",
        "best_heldout_score",
        "rollouts_used",
        "stop_reason",
    ):
        assert key in manifest, key
    assert manifest["best_heldout_score"] > manifest["seed_heldout_score"]
    report = manifest["heldout_report"]  # the improvement, row by row (on this small budget: within the noise)
    assert report["n"] == 100 and report["wins"] + report["ties"] + report["losses"] == 100
    assert report["ci95_low"] <= report["mean_diff"] <= report["ci95_high"] and 0 < report["p_value"] <= 1
    noise = "the interval includes 0: on these 100 rows the difference may be noise"
    assert (noise in done.stdout) == (report["ci95_low"] <= 0 <= report["ci95_high"])
    assert abs(report["mean_diff"] - (manifest["best_heldout_score"] - manifest["seed_heldout_score"])) < 1e-9
    assert "heldout best - seed" in done.stdout and f"of {report['n']} rows, sign test p = " in done.stdout
    with sqlite3.connect(manifest["workspace_db_path"]) as db:  # the workspace keeps the manifest, report and all
        (stored,) = db.execute("SELECT manifest_json FROM manifests").fetchone()
    assert json.loads(stored)["heldout_report"] == report
    assert manifest["rollouts_used"]["train"] <= 1500 and manifest["rollouts_used"]["heldout"] <= 200
    assert_planned(config, manifest)  # gepa plan forecast this run's use
    forecasts = [e.data for e in events(Path(manifest["manifest_path"]).parent) if isinstance(e.data, PlanForecast)]
    assert [f.proposal_index for f in forecasts] == list(range(manifest["proposals"]))  # one after each commit
    assert forecasts[-1].expected_proposals == manifest["proposals"]  # by the end, the rates are the run's own
    assert abs(forecasts[0].expected_proposals - manifest["proposals"]) <= 1  # and from the first commit on
    train = manifest["rollouts_used"]["train"]
    assert forecasts[-1].expected_totals["train_rollouts"] == train
    assert abs(forecasts[0].expected_totals["train_rollouts"] - train) <= 0.05 * train
    tokens = manifest["usage"]["total"]["total_tokens"]  # the offline proposer's; the keyword policy uses none
    assert forecasts[-1].expected_totals["tokens"] == tokens
    with sqlite3.connect(manifest["workspace_db_path"]) as db:  # the workspace holds the same forecasts
        stored = db.execute("SELECT count(*) FROM event_stream_events WHERE type = 'plan.forecast'").fetchone()[0]
    assert stored == len(forecasts)
    assert manifest["stop_reason"] == "max_train_rollouts"
    assert {entry["state"] for entry in manifest["state_history"]} >= {"created", "searching", "completed"}
    run_dir = Path(manifest["manifest_path"]).parent
    launched = [e.data for e in events(run_dir) if isinstance(e.data, ContainerLaunched)]
    assert launched and not process_group_alive(launched[0].pid)
    assert any(isinstance(e.data, ProposerCalled) for e in events(run_dir)), "the offline proposer answered via codex"


def test_the_three_run_acceptance_passes_for_the_banking77_cookbook(tmp_path: Path) -> None:
    """`synth-opt gepa accept` on a reduced copy of the offline config: fresh, cached and readonly runs give
    identical normalized feeds, the cached run is all hits and the readonly one starts no container."""
    done = run_accept(small_config(tmp_path, budget=400))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "fresh vs cached: identical" in done.stdout and "fresh vs readonly: identical" in done.stdout
    assert done.stdout.strip().endswith("acceptance passed")


def test_a_rebasing_pipelined_run_replays_exactly_and_carries_edits_onto_newer_candidates(tmp_path: Path) -> None:
    """`gepa accept` on the real container and offline proposer processes with 4 candidates in flight and
    ``staleness_policy = "rebase"``: fresh, cached and readonly runs agree, stale accepted edits were carried onto
    newer candidates, and heldout accuracy still goes up."""
    config = small_config(tmp_path, budget=1500)
    text = config.read_text().replace(
        '[gepa.pipeline]\nmode = "sync_serial"',
        '[gepa.pipeline]\nmode = "async_pipelined"\nmax_in_flight_candidates = 4\nstaleness_policy = "rebase"\n'
        "[gepa.pipeline.workers]\npropose = 2\nrollout = 8",
    )
    assert "rebase" in text
    config.write_text(text)
    done = run_accept(config)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "fresh vs readonly: identical" in done.stdout
    (run_dir,) = (tmp_path / "runs").glob("*-fresh")
    fresh = json.loads((run_dir / "result_manifest.json").read_text())
    outcomes = [e.data.rebase for e in events(run_dir) if isinstance(e.data, ProposalCreated)]
    assert "rebased" in outcomes, outcomes
    registry = json.loads((run_dir / "candidate_registry.json").read_text())["candidates"]
    carried = [entry for entry in registry.values() if entry["status"] == "rebased"]
    assert carried
    for entry in carried:  # what the pool got instead: this proposal's merged candidate, or one it already held
        assert registry[entry["rebased_to"]]["status"] in ("accepted", "seed")
    assert any(registry[entry["rebased_to"]]["proposal_index"] == entry["proposal_index"] for entry in carried)
    assert fresh["best_heldout_score"] > fresh["seed_heldout_score"]


def test_a_sigkilled_run_resumes_to_the_same_result_as_an_uninterrupted_one(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    env = {"SYNTH_OPTIMIZERS_RUN_ID": "interrupted"}
    process = subprocess.Popen(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(config), "--no-progress"],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_dir = tmp_path / "runs" / "interrupted"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            feed = run_dir / "events.jsonl"
            if feed.exists() and sum(isinstance(e.data, AcceptanceDecided) for e in events(run_dir)) >= 4:
                break
            time.sleep(0.05)
        time.sleep(0.7)  # let a throttled checkpoint reach the workspace
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    for event in events(run_dir):  # a SIGKILL leaves the container running: stop it as an operator would
        if isinstance(event.data, ContainerLaunched):
            try:
                os.killpg(event.data.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert not (run_dir / "result_manifest.json").exists()
    decided_before = sum(isinstance(e.data, AcceptanceDecided) for e in events(run_dir))

    resumed = run_cli(config, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    states = [e.data.state for e in events(run_dir) if isinstance(e.data, RunState)]
    assert "resumed" in states and states[-1] == "completed"

    whole = run_cli(config, env={"SYNTH_OPTIMIZERS_RUN_ID": "uninterrupted"})
    assert whole.returncode == 0, whole.stderr[-2000:]
    left = tmp_path / "runs" / "uninterrupted"
    comparison = compare_feeds(left / "events.normalized.jsonl", run_dir / "events.normalized.jsonl")
    assert comparison.equal, comparison
    first = json.loads((left / "result_manifest.json").read_text())
    second = json.loads((run_dir / "result_manifest.json").read_text())
    assert first["best_candidate_id"] == second["best_candidate_id"]
    assert first["rollouts_used"] == second["rollouts_used"]
    assert second["proposals"] > decided_before >= 4
