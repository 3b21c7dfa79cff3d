"""Reduced copies of a cookbook's offline config that run from a test's folder, and the CLI call that accepts one."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def offline_config(cookbook: Path, folder: Path, changes: Mapping[str, str], *, name: str = "gepa.toml") -> Path:
    """``cookbook/gepa.offline.toml`` written to ``folder/name``: runs go to ``folder/runs``, the container and
    the offline proposer are named by absolute path, then ``changes`` apply (old text -> new text; every old text
    must be in the file, so a cookbook edit that drops one fails the test instead of silently running more)."""
    text = (cookbook / "gepa.offline.toml").read_text()
    replacements = {
        'output_dir = "../../runs"': 'output_dir = "runs"',
        '"./container.py"': json.dumps(str(cookbook / "container.py")),
        '"./offline_proposer.py"': json.dumps(str(cookbook / "offline_proposer.py")),
        'cwd = "."': f"cwd = {json.dumps(str(cookbook))}",
        **changes,
    }
    for old, new in replacements.items():
        assert old in text, f"{cookbook / 'gepa.offline.toml'} no longer holds {old!r}"
        text = text.replace(old, new)
    path = folder / name
    path.write_text(text)
    return path


def run_accept(config: Path, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`synth-opt gepa accept`: fresh, cached and readonly runs of the config, compared (from its folder)."""
    return subprocess.run(
        [sys.executable, "-m", "synth_opt", "gepa", "accept", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config.parent,
    )


def assert_planned(config: Path, manifest: Mapping[str, Any]) -> None:
    """``synth-opt gepa plan --probe 3`` of ``config``, at the acceptance rate the run had, forecast what the run
    used: its proposals (exactly, or one more or fewer), its live train rollouts within 3% (or 2 rollouts), and its
    tokens between 0.4x and 1.5x (the probe measures a call on the seed; a candidate that grows makes later calls
    larger: measured 0.50-1.02x of the runs' tokens on the four cookbooks)."""
    proposals, accepted = int(manifest["proposals"]), int(manifest["accepted"])
    rate = accepted / proposals if proposals else 0.0
    plan_command = ["gepa", "plan", "--config", str(config), "--json", "--acceptance-rate", repr(rate), "--probe", "3"]
    done = subprocess.run(
        [sys.executable, "-m", "synth_opt", *plan_command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=config.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    plan = json.loads(done.stdout)
    used = int(manifest["rollouts_used"]["train"])
    assert abs(plan["expected_proposals"] - proposals) <= 1, (plan, proposals)
    assert plan["worst_case_proposals"] <= proposals
    assert abs(plan["expected_train_rollouts"] - used) <= max(2, 0.03 * used), (plan, used)
    tokens = int(manifest["usage"]["total"]["total_tokens"])
    assert plan["probe"]["rollouts"] == 3 and plan["expected_tokens"] is not None
    assert 0.4 * tokens <= plan["expected_tokens"] <= 1.5 * tokens, (plan["expected_tokens"], tokens)
