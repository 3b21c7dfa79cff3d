"""`synth-opt gepa accept`: fresh, cached and readonly runs of one config through real processes."""

from __future__ import annotations

import json
from pathlib import Path

from ..cookbook_runs import run_accept
from .test_run_faults import config


def test_accept_runs_three_times_and_compares_the_feeds(tmp_path: Path) -> None:
    done = run_accept(config(tmp_path), timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fresh vs cached: identical" in done.stdout and "fresh vs readonly: identical" in done.stdout
    assert done.stdout.strip().endswith("acceptance passed")
    runs = tmp_path / "runs"
    profiles = {
        label: json.loads((runs / f"faults-{label}" / "cache_profile.json").read_text())
        for label in ("fresh", "cached", "readonly")
    }
    assert profiles["fresh"]["writes"] > 0
    assert profiles["cached"]["misses"] == 0 and profiles["cached"]["hits"] > 0
    assert profiles["readonly"]["mode"] == "readonly"
    assert profiles["readonly"]["misses"] == 0 and profiles["readonly"]["hits"] == profiles["cached"]["hits"]
    assert "container.launched" not in (runs / "faults-readonly" / "events.jsonl").read_text()
