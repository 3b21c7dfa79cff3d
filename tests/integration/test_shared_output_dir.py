"""Runs started at once in one output folder share its ``latest`` link, run registry and request cache: each
completes, the registry holds every run's lines, and ``latest`` is always a whole link to one of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from synth_opt.run.artifacts import RunArtifacts

from .test_kill_resume import DRIVER, lines, write_config

RACE = """
import sys
from pathlib import Path
from types import SimpleNamespace
from synth_opt.run.artifacts import RunArtifacts
out, run_id = Path(sys.argv[1]), sys.argv[2]
(out / run_id).mkdir(exist_ok=True)
for _ in range(300):
    RunArtifacts.point_latest(SimpleNamespace(output_dir=out, run_id=run_id))
"""


def test_processes_pointing_latest_at_once_never_find_it_half_made(tmp_path: Path) -> None:
    racers = [
        subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path), f"r{i}"], stderr=subprocess.PIPE, text=True)
        for i in range(6)
    ]
    errors = [racer.communicate(timeout=120)[1] for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), errors
    latest = tmp_path / "latest"
    assert latest.is_symlink() and latest.resolve().parent == tmp_path.resolve()
    assert latest.resolve().name in {f"r{i}" for i in range(6)}
    assert not list(tmp_path.glob(".latest-*"))  # no link left half-renamed


def test_two_runs_in_one_output_folder_at_once_both_complete(tmp_path: Path) -> None:
    first = write_config(tmp_path, "async_pipelined", "rebase", "readwrite")
    second = tmp_path / "second.toml"
    second.write_text(first.read_text().replace('run_id = "kill"', 'run_id = "other"').replace("seed = 5", "seed = 6"))
    (tmp_path / "variant").write_text("reuse")
    runs = [
        subprocess.Popen(
            [sys.executable, str(DRIVER), str(path), "reuse"], cwd=tmp_path, stderr=subprocess.PIPE, text=True
        )
        for path in (first, second)
    ]
    errors = [run.communicate(timeout=180)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    for run_id in ("kill", "other"):
        manifest = json.loads((tmp_path / "runs" / run_id / "result_manifest.json").read_text())
        assert manifest["status"] == "completed"
    registry = lines(tmp_path / "runs" / "run_registry.jsonl")
    assert sorted((line["run_id"], line["status"]) for line in registry) == [
        ("kill", "completed"),
        ("kill", "started"),
        ("other", "completed"),
        ("other", "started"),
    ]
    assert (tmp_path / "runs" / "latest").resolve().name in {"kill", "other"}


def test_a_file_or_folder_of_someone_else_named_latest_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    (out / "r1").mkdir(parents=True)
    (out / "latest").write_text("my notes\n")
    RunArtifacts.point_latest(SimpleNamespace(output_dir=out, run_id="r1"))  # type: ignore[arg-type]
    assert (out / "latest").read_text() == "my notes\n"
    (out / "latest").unlink()
    (out / "latest").mkdir()
    (out / "latest" / "kept.txt").write_text("kept\n")
    RunArtifacts.point_latest(SimpleNamespace(output_dir=out, run_id="r1"))  # type: ignore[arg-type]
    assert (out / "latest" / "kept.txt").read_text() == "kept\n" and not (out / "latest").is_symlink()
    assert sorted(p.name for p in out.iterdir()) == ["latest", "r1"]  # no temporary link left behind
