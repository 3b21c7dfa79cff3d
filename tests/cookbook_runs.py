"""Reduced copies of a cookbook's offline config that run from a test's folder, and the CLI call that accepts one."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


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
