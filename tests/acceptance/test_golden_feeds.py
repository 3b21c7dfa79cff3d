"""Behaviour kept through refactoring: each cookbook's offline run (its ``gepa.offline.toml``, made smaller) gives a
normalized feed byte-identical to the golden feed in ``tests/golden/``, taken from the code before the
restructuring of the run, the events and the strategies began. A change that alters a decision, its order or a
decision event's fields fails here; a change that only moves code does not.

Write the golden feeds again (only for a change meant to alter decisions, said so in its commit) with
``SYNTH_OPT_WRITE_GOLDEN=1 pytest tests/acceptance/test_golden_feeds.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..cookbook_runs import offline_config
from .test_banking77_cli import DATA

COOKBOOKS = Path(__file__).resolve().parents[2] / "cookbooks"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"

SMALLER: dict[str, dict[str, str]] = {
    "banking77": {
        "train_ids = { count = 4000 }": "train_ids = { count = 400 }",
        "pareto_ids = { count = 150 }": "pareto_ids = { count = 40 }",
        "heldout_ids = { count = 500 }": "heldout_ids = { count = 60 }",
        "max_train_rollouts = 10000": "max_train_rollouts = 600",
        "max_heldout_rollouts = 1000": "max_heldout_rollouts = 120",
        "max_total_rollouts = 11000": "max_total_rollouts = 720",
        "minibatch_size = 50": "minibatch_size = 20",
    },
    "code_review": {
        "max_train_rollouts = 1000": "max_train_rollouts = 300",
        "max_total_rollouts = 1048": "max_total_rollouts = 348",
    },
    "crafter": {
        "config = { max_steps = 200 }": "config = { max_steps = 40 }",
        "max_train_rollouts = 160": "max_train_rollouts = 40",
        "heldout_ids = { count = 20 }": "heldout_ids = { count = 6 }",
        "max_heldout_rollouts = 40": "max_heldout_rollouts = 12",
        "max_total_rollouts = 200": "max_total_rollouts = 52",
    },
    "tblite": {
        "max_train_rollouts = 120": "max_train_rollouts = 80",
        "max_total_rollouts = 146": "max_total_rollouts = 106",
    },
}


# The goldens taken before evaluation reuse existed hold with it off; the ``.reuse`` goldens are the default since.
REUSE = {"off": ("[gepa]\n", "[gepa]\nreuse_evaluations = false\n"), "on": ("[gepa]\n", "[gepa]\n")}


@pytest.mark.slow
@pytest.mark.parametrize("reuse", sorted(REUSE))
@pytest.mark.parametrize("cookbook", sorted(SMALLER))
def test_the_offline_run_s_normalized_feed_equals_the_golden_feed(cookbook: str, reuse: str, tmp_path: Path) -> None:
    # the golden feed names where its data came from ("shared": beside the repository), so the run reads it there
    if cookbook == "banking77" and not (DATA / "train.csv").exists():
        pytest.skip(f"the golden Banking77 feed was taken with the data in {DATA}, which is missing")
    env = {k: v for k, v in os.environ.items() if k != "BANKING77_DATA_DIR"}
    old, new = REUSE[reuse]
    config = offline_config(COOKBOOKS / cookbook, tmp_path, {**SMALLER[cookbook], old: new})
    done = subprocess.run(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(config), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    feed = (tmp_path / "runs" / "latest" / "events.normalized.jsonl").read_bytes()
    golden = GOLDEN / (f"{cookbook}.normalized.jsonl" if reuse == "off" else f"{cookbook}.reuse.normalized.jsonl")
    if os.environ.get("SYNTH_OPT_WRITE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(feed)
    assert golden.exists(), f"{golden} is missing; write it with SYNTH_OPT_WRITE_GOLDEN=1"
    expected = golden.read_bytes()
    if reuse == "off":  # the config names the key the old goldens predate (and so has another digest): else equal
        (config_line, feed), (golden_config, expected) = feed.split(b"\n", 1), expected.split(b"\n", 1)
        mine, theirs = json.loads(config_line)["fields"], json.loads(golden_config)["fields"]
        assert mine["decision_config"]["gepa"].pop("reuse_evaluations") is False
        assert mine["decision_config"] == theirs["decision_config"]
    assert feed == expected, f"the normalized feed of {cookbook}'s offline run differs from {golden}"
