"""A full disk is loud: a run whose files cannot grow (``RLIMIT_FSIZE`` in a real process) fails at once naming the
file and the OS error, claims nothing it did not store, and resumes once there is room again. So does a run that
finds a folder where one of its files belongs."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from synth_opt import GepaResult
from synth_opt.cli import render_summary
from synth_opt.events.compare import compare_feeds

from .test_kill_resume import DRIVER, finish, lines, write_config

LIMIT_BYTES = 60_000  # events.jsonl reaches it mid-search (a whole run writes about 150 kB)


def small_files() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))


@pytest.mark.slow
def test_a_run_that_cannot_write_its_feed_fails_naming_the_file_and_resumes_later(tmp_path: Path) -> None:
    config = write_config(tmp_path / "a", "async_pipelined", "rebase", "off")
    run_dir = config.parent / "runs" / "kill"
    failed = subprocess.run(
        [sys.executable, str(DRIVER), str(config)],
        cwd=config.parent,
        preexec_fn=small_files,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error[run_failed]: could not write") and "events.jsonl: File too large" in last, last
    manifest = run_dir / "result_manifest.json"
    assert not manifest.exists() or json.loads(manifest.read_text())["status"] == "failed"
    stored = json.loads((run_dir / "checkpoint.json").read_text())
    announced = [e["fields"]["commits"] for e in lines(run_dir / "events.jsonl") if e["type"] == "checkpoint.written"]
    assert announced and max(announced) <= stored["commits"]  # no event claims a checkpoint that was not stored
    assert not any(
        e["type"] == "run.state" and e["fields"]["state"] == "completed" for e in lines(run_dir / "events.jsonl")
    )

    finish(config)  # room again: the same config resumes from the last durable checkpoint
    registry = lines(config.parent / "runs" / "run_registry.jsonl")
    assert [line["status"] for line in registry][-2:] == ["resumed", "completed"]
    assert json.loads(manifest.read_text())["status"] == "completed"
    result = GepaResult.from_manifest(manifest)  # what the lost tail cost is on record, and in the summary
    discarded = result.usage["discarded"]
    assert discarded["rollouts"] > 0
    assert f"discarded (paid, then thrown away): {discarded['rollouts']} rollouts done again" in render_summary(result)
    whole = write_config(tmp_path / "whole", "async_pipelined", "rebase", "off")
    finish(whole)
    comparison = compare_feeds(
        whole.parent / "runs" / "kill" / "events.normalized.jsonl", run_dir / "events.normalized.jsonl"
    )
    assert comparison.equal, comparison


@pytest.mark.parametrize("blocked", ["run_registry.jsonl", "kill/events.jsonl"])
def test_a_folder_where_a_run_file_belongs_is_named_with_what_to_do(tmp_path: Path, blocked: str) -> None:
    config = write_config(tmp_path / "a", "sync_serial", "full", "off")
    (config.parent / "runs" / blocked).mkdir(parents=True)
    failed = subprocess.run(
        [sys.executable, str(DRIVER), str(config)], cwd=config.parent, capture_output=True, text=True, timeout=120
    )
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error[run_failed]: ") and f"{blocked}: Is a directory" in last, failed.stderr[-2000:]
    assert "unexpectedly" not in last and "fix it" in last
    (config.parent / "runs" / blocked).rmdir()
    finish(config)  # the folder gone, the same config runs (or resumes) to the end
