"""`synth-opt workspace status` and the run browser on a run directory this user cannot write (a completed run
copied read-only): the status is read and reported, and the run shown, creating nothing there; when SQLite truly
must write beside the database (a write-ahead log to fold in), and for a repair (which rewrites tables), the error
names the files and says what to do. The reader is a
real process of a user without write permission (``nobody`` through ``setpriv`` when the tests run as root, who
ignores file modes)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..unit.test_repair_damaged_feed import finish_a_run


def _as_reader(*args: str, python: tuple[str, ...] = ("-m", "synth_opt")) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *python, *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: no user to read as that file modes apply to")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")


def _read_only(tree: Path) -> None:
    for folder, _, files in os.walk(tree):
        for name in files:
            os.chmod(Path(folder) / name, 0o444)
    for folder, _, _ in os.walk(tree):
        os.chmod(folder, 0o555)


@pytest.fixture
def root() -> Iterator[Path]:
    """A folder any user may enter (pytest's own tmp_path is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="synth-opt-ro-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path, _, _ in os.walk(folder):
            os.chmod(path, 0o755)
        shutil.rmtree(folder)


def test_status_of_a_read_only_completed_run_is_reported(root: Path) -> None:
    run_dir = finish_a_run(root)
    _read_only(run_dir)
    before = sorted(path.name for path in run_dir.iterdir())

    done = _as_reader("workspace", "status", "--db", str(run_dir / "workspace.sqlite"), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout)["runs"][0]
    assert run["status"] == "completed" and run["events"] > 0
    assert run["invariant_report"]["status"] == "ok" and run["invariant_report"]["persisted"] is False
    assert sorted(path.name for path in run_dir.iterdir()) == before


def test_a_read_only_workspace_with_a_write_ahead_log_says_what_to_do(root: Path) -> None:
    run_dir = finish_a_run(root)
    copy = root / "copy"
    copy.mkdir()
    writer = sqlite3.connect(run_dir / "workspace.sqlite")
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("CREATE TABLE kept_in_the_log (x)")
        writer.commit()
        for name in ("workspace.sqlite", "workspace.sqlite-wal"):  # a copy without the -shm
            shutil.copyfile(run_dir / name, copy / name)
    finally:
        writer.close()
    assert (copy / "workspace.sqlite-wal").stat().st_size > 0
    _read_only(copy)

    done = _as_reader("workspace", "status", "--db", str(copy / "workspace.sqlite"), "--json")
    assert done.returncode == 2, done.stdout[-2000:]
    assert "error[config_error]" in done.stderr and "workspace.sqlite-wal" in done.stderr
    assert f"make {copy} writable" in done.stderr and "copy the run directory" in done.stderr


BROWSE = """
import sys
from pathlib import Path
from synth_opt.view.data import run_detail
detail = run_detail(Path(sys.argv[1]))
print(detail.summary.status, len(detail.nodes))
"""


def test_the_run_browser_reads_a_read_only_completed_run(root: Path) -> None:
    run_dir = finish_a_run(root)
    for side in ("-wal", "-shm"):  # copied without them, as an archive holds it
        (run_dir / f"workspace.sqlite{side}").unlink(missing_ok=True)
    _read_only(run_dir)
    before = sorted(path.name for path in run_dir.iterdir())

    done = _as_reader(str(run_dir), python=("-c", BROWSE))
    assert done.returncode == 0, done.stderr[-2000:]
    status, candidates = done.stdout.split()
    assert status == "completed" and int(candidates) >= 1
    assert sorted(path.name for path in run_dir.iterdir()) == before  # nothing made beside it


def test_repairing_a_read_only_workspace_names_the_file_and_what_to_do(root: Path) -> None:
    run_dir = finish_a_run(root)
    _read_only(run_dir)
    before = sorted(path.name for path in run_dir.iterdir())

    db = run_dir / "workspace.sqlite"
    done = _as_reader("workspace", "repair", "--db", str(db))
    assert done.returncode == 2, done.stdout[-2000:]
    assert f"error[config_error]: cannot repair {db}: {db} and {run_dir} are not writable by this user" in done.stderr
    assert "copy the run directory somewhere writable and repair the copy's workspace.sqlite" in done.stderr
    assert sorted(path.name for path in run_dir.iterdir()) == before  # nothing made beside it
