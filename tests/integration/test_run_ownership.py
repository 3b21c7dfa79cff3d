"""One owner per run directory, and what a re-run finds there: a lock held for the run's life, ``--fresh`` that
deletes only an unlocked run directory, a run that committed nothing started over, and a checkpoint that survives
a lost or repaired workspace. The runs are real processes (``kill_driver.py``) killed from outside."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from synth_opt import (
    GepaRun,
    RunLockedError,
    RunStateError,
    load_config,
    repair_workspace,
    workspace_submit_run_request,
)
from synth_opt.dir_lock import RunDirLock
from synth_opt.events.compare import compare_feeds
from synth_opt.service.worker import run_next

from .kill_driver import FirstWordProposer
from .test_kill_resume import finish, line_count, lines, start, write_config


def run_dir(config: Path) -> Path:
    return config.parent / "runs" / "kill"


def started(config: Path, *, until: Any) -> subprocess.Popen[bytes]:
    """A run in its own process, once ``until(events)`` holds for its feed."""
    process = start(config)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if until(lines(run_dir(config) / "events.jsonl")):
            return process
        time.sleep(0.005)
    process.kill()
    process.wait()
    raise AssertionError("the run ended before the point the test waits for")


def sigkill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def checkpointed(events: list[dict[str, Any]]) -> bool:
    return sum(e["type"] == "acceptance.decided" for e in events) >= 3 and any(
        e["type"] == "checkpoint.written" and e["fields"]["commits"] >= 1 for e in events
    )


@pytest.mark.slow
def test_a_second_run_of_a_live_run_directory_is_refused_naming_the_holder(tmp_path: Path) -> None:
    config = write_config(tmp_path / "a", "sync_serial", "full", "off")
    first = started(config, until=lambda events: len(events) > 10)
    try:
        with pytest.raises(RunLockedError) as caught:
            GepaRun(load_config(config)).execute()
        assert caught.value.error_code == "run_locked" and isinstance(caught.value, RunStateError)
        assert f"pid {first.pid}" in caught.value.message
        with pytest.raises(RunLockedError):  # --fresh does not delete a live run either
            GepaRun(load_config(config), fresh=True).execute()
        cli = subprocess.run(
            [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(config), "--fresh", "--no-progress"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 2, cli.stderr
        assert "error[run_locked]" in cli.stderr and str(first.pid) in cli.stderr
    finally:
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err  # the live run was not disturbed
    manifest = json.loads((run_dir(config) / "result_manifest.json").read_text())
    assert manifest["status"] == "completed"


def test_fresh_refuses_a_directory_that_is_not_a_run_directory(tmp_path: Path) -> None:
    config = write_config(tmp_path / "a", "sync_serial", "full", "off")
    precious = run_dir(config) / "precious.txt"
    precious.parent.mkdir(parents=True)
    precious.write_text("not a run")
    with pytest.raises(RunStateError) as caught:
        GepaRun(load_config(config), proposer=FirstWordProposer(), fresh=True).execute()
    assert "not a synth_opt run directory" in caught.value.message
    assert precious.read_text() == "not a run"
    assert sorted(p.name for p in precious.parent.iterdir()) == ["precious.txt"]  # no run.lock left behind


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path: Path) -> None:
    config = write_config(tmp_path / "a", "sync_serial", "full", "off")
    sigkill(started(config, until=lambda events: len(events) >= 3))
    assert not any(e["type"] == "checkpoint.written" for e in lines(run_dir(config) / "events.jsonl"))
    finish(config)
    registry = lines(config.parent / "runs" / "run_registry.jsonl")
    assert [line["status"] for line in registry] == ["started", "started", "completed"]
    whole = write_config(tmp_path / "whole", "sync_serial", "full", "off")
    finish(whole)
    comparison = compare_feeds(run_dir(whole) / "events.normalized.jsonl", run_dir(config) / "events.normalized.jsonl")
    assert comparison.equal, comparison


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["workspace_deleted", "workspace_repaired"])
def test_the_checkpoint_survives_a_lost_or_repaired_workspace(tmp_path: Path, damage: str) -> None:
    config = write_config(tmp_path / "a", "async_pipelined", "rebase", "off")
    folder = run_dir(config)
    # (its writer, a process of its own, may not have made the workspace yet by the first checkpoint)
    sigkill(started(config, until=lambda events: checkpointed(events) and (folder / "workspace.sqlite").exists()))
    assert (folder / "checkpoint.json").is_file()
    if damage == "workspace_deleted":
        for suffix in ("", "-wal", "-shm"):
            (folder / f"workspace.sqlite{suffix}").unlink(missing_ok=True)
    else:
        repair_workspace(folder / "workspace.sqlite")
    before = line_count(folder / "events.jsonl")
    finish(config)
    registry = lines(config.parent / "runs" / "run_registry.jsonl")
    assert [line["status"] for line in registry] == ["started", "resumed", "completed"]
    assert registry[1]["commits"] > 1
    assert line_count(folder / "events.jsonl") > before
    whole = write_config(tmp_path / "whole", "async_pipelined", "rebase", "off")
    finish(whole)
    comparison = compare_feeds(run_dir(whole) / "events.normalized.jsonl", folder / "events.normalized.jsonl")
    assert comparison.equal, comparison


def test_a_service_worker_fails_a_request_whose_run_directory_is_held(tmp_path: Path) -> None:
    config = write_config(tmp_path / "a", "sync_serial", "full", "off")
    db = tmp_path / "service.sqlite"
    request = workspace_submit_run_request(db, config)
    with RunDirLock(run_dir(config)):  # another live owner (the lock is per open file, so this process counts)
        final = anyio.run(functools.partial(run_next, db, worker_id="w", lease_seconds=30))
    assert final is not None and final.request_id == request["request_id"]
    assert final.status == "failed" and final.error is not None
    assert final.error["code"] == "run_locked" and str(os.getpid()) in final.error["message"]
    assert not (run_dir(config) / "events.jsonl").exists()  # it changed nothing there
