"""``synth-opt gepa plan``: the demo config's forecast as a person reads it, without launching or writing anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cookbook_runs import offline_config

BANKING77 = Path(__file__).resolve().parents[2] / "cookbooks" / "banking77"


def plan(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synth_opt", "gepa", "plan", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_demo_configs_plan(tmp_path: Path) -> None:
    config = offline_config(BANKING77, tmp_path, {})
    done = plan(config, "--acceptance-rate", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "plan for gepa.toml: nothing launched, nothing spent"
    assert "  seed scoring: 150 rollouts on the pareto rows" in lines
    assert "  proposals: 39 in the worst case (every one accepted), 39 expected at 100% accepted " in done.stdout
    assert "  stops first: max_train_rollouts after 39 proposals" in lines
    assert any(line.startswith("  tokens: unknown") for line in lines)  # the offline config sets no estimates
    assert not (tmp_path / "runs").exists()  # nothing written, no run directory
    half = json.loads(plan(config, "--json").stdout)
    assert half["acceptance_rate"] == 0.5 and half["expected_proposals"] > half["worst_case_proposals"] == 39


def test_a_bad_acceptance_rate_is_a_usage_error(tmp_path: Path) -> None:
    done = plan(offline_config(BANKING77, tmp_path, {}), "--acceptance-rate", "1.5")
    assert done.returncode == 2 and "--acceptance-rate 1.5: give a share between 0 and 1" in done.stderr
    done = plan(offline_config(BANKING77, tmp_path, {}, name="probe.toml"), "--probe", "0")
    assert done.returncode == 2 and "--probe 0: give the number of seed rollouts to measure" in done.stderr


def test_a_probe_measures_before_it_forecasts(tmp_path: Path) -> None:
    done = plan(offline_config(BANKING77, tmp_path, {}), "--probe", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].endswith("the container launched and 2 rollouts and one proposer call spent to measure")
    assert lines[1].startswith("  measured (--probe 2): 2 seed rollouts")
    tokens = next(line for line in lines if line.startswith("  tokens: "))
    assert "unknown" not in tokens and "expected" in tokens  # measured, so known
    assert not (tmp_path / "runs").exists()  # the probe writes no run
