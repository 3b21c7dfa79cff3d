"""Two `synth-opt gepa accept` of one config at once, through real processes: the second fails with
``run_locked`` naming the first, and leaves the first one's shared cache alone, so the first still passes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .test_run_faults import config


def _accept(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "synth_opt", "gepa", "accept", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=path.parent,
    )


def test_a_second_accept_of_a_config_is_refused_and_the_first_passes(tmp_path: Path) -> None:
    path = config(tmp_path)
    first = _accept(path)
    feed = tmp_path / "runs" / "faults-fresh" / "events.jsonl"
    deadline = time.monotonic() + 60
    while first.poll() is None and time.monotonic() < deadline:
        if feed.exists() and b"rollout.completed" in feed.read_bytes():  # the fresh run is filling the cache
            break
        time.sleep(0.01)
    second = _accept(path)
    _, err2 = second.communicate(timeout=120)
    out1, err1 = first.communicate(timeout=300)

    assert second.returncode == 2, err2[-2000:]
    assert "error[run_locked]" in err2 and f"pid {first.pid}" in err2
    assert first.returncode == 0, (out1 + err1)[-2000:]
    assert "fresh vs cached: identical" in out1 and out1.strip().endswith("acceptance passed")
