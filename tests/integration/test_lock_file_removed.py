"""A live run's ``run.lock`` deleted (someone "clearing a stale lock") leaves the directory owned by that run: a
second run, with or without ``--fresh``, is refused naming the holder's PID, and the first run ends undisturbed.
The runs are real processes (``kill_driver.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from synth_opt import GepaRun, RunLockedError, load_config
from synth_opt.dir_lock import LOCK_FILE, RunDirLock

from .kill_driver import FirstWordProposer
from .test_kill_resume import write_config
from .test_run_ownership import run_dir, started


def _holder(folder: Path) -> subprocess.Popen[str]:
    """A process that takes the lock of ``folder`` and holds it until killed."""
    code = "import sys, time; from pathlib import Path; from synth_opt.dir_lock import RunDirLock\n"
    code += "RunDirLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(120)"
    process = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    process.stdout.close()
    return process


def test_a_lock_whose_file_was_deleted_still_holds_and_names_its_holder(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    holder = _holder(folder)
    try:
        (folder / LOCK_FILE).unlink()
        with pytest.raises(RunLockedError) as caught:
            RunDirLock(folder).acquire()
        assert f"pid {holder.pid}" in caught.value.message
        assert not (folder / LOCK_FILE).exists(), "the refused process made no lock file of its own"
    finally:
        holder.kill()
        holder.wait()
    with RunDirLock(folder) as lock:  # the kernel released the holder's lock with it
        assert lock.held and (folder / LOCK_FILE).read_text().strip().isdigit()


@pytest.mark.slow
def test_deleting_a_live_runs_lock_file_does_not_let_a_second_run_in(tmp_path: Path) -> None:
    config = write_config(tmp_path / "a", "sync_serial", "full", "off")
    first = started(config, until=lambda events: len(events) > 10)
    try:
        (run_dir(config) / LOCK_FILE).unlink()
        with pytest.raises(RunLockedError) as caught:
            GepaRun(load_config(config), proposer=FirstWordProposer()).execute()
        assert f"pid {first.pid}" in caught.value.message
        with pytest.raises(RunLockedError):
            GepaRun(load_config(config), proposer=FirstWordProposer(), fresh=True).execute()
        assert (run_dir(config) / "events.jsonl").exists(), "--fresh deleted nothing"
    finally:
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    manifest = json.loads((run_dir(config) / "result_manifest.json").read_text())
    assert manifest["status"] == "completed"
    registry = (config.parent / "runs" / "run_registry.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in registry] == ["started", "completed"]
