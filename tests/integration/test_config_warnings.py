"""Settings that do nothing are said so at start-up: a ``config.warning`` event (not a decision) and a log line for
each, in a real run (the tiny container, launched; the fake app-server proposer) through the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from synth_opt.config import load_config
from synth_opt.events.model import DECISION_TYPES
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import ConfigWarning, ContainerWarning, SeedScored
from synth_opt.run.setup import CONFIG_WARNING, config_warnings

TINY = Path(__file__).with_name("tiny_container.py")

RUN = f"""
[run]
run_id = "warned"

[container]
command = ["{{python}}", {str(TINY)!r}, "{{port}}"]
startup_timeout_seconds = 20

[dataset]
train_ids = {{count = 6}}
heldout_ids = {{count = 2}}

[proposer]
backend = "codex_app_server"
command = ["{{python}}", "-m", "synth_opt.testing.fake_app_server", "--mode", "ok"]

[gepa]
max_train_rollouts = 20
minibatch_size = 2
use_merge = true
perfect_score = 0.9

[gepa.pipeline]
delta_max = 4
max_in_flight_candidates = 4

[cache]
mode = "off"
"""


def run_cli(path: Path) -> subprocess.CompletedProcess[str]:
    """``synth-opt gepa run`` of ``path`` from its folder, which must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=path.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_settings_that_do_nothing_are_warned_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(RUN, encoding="utf-8")
    done = run_cli(path)
    expected = [
        "gepa.use_merge",  # one target module (the tiny container's "instruction"): a merge has nothing to combine
        "gepa.pipeline.max_in_flight_candidates",  # sync_serial runs one candidate in flight
        "gepa.pipeline.delta_max",
        "gepa.perfect_score",  # skip_perfect_score is off
    ]
    feed = tmp_path / "runs" / "warned" / "events.jsonl"
    events = list(read_feed(feed))
    warnings = [e for e in events if isinstance(e.data, ConfigWarning)]
    assert [w.type for w in warnings] == [CONFIG_WARNING] * len(expected)
    assert [w.data.key for w in warnings if isinstance(w.data, ConfigWarning)] == expected
    assert "single target module (instruction)" in warnings[0].message
    for key in expected:
        assert f"config warning: {key} " in done.stderr, done.stderr[-3000:]
    # the run binds its id to every line logged beneath it
    logged = [line for line in done.stderr.splitlines() if "config warning:" in line]
    assert len(logged) == len(expected) and all("run_id=warned" in line for line in logged), logged
    # said before any work: before the seed is scored, and never a decision
    first_seed = next(i for i, e in enumerate(events) if isinstance(e.data, SeedScored))
    assert all(events.index(w) < first_seed for w in warnings)
    assert CONFIG_WARNING not in DECISION_TYPES
    normalized = (tmp_path / "runs" / "warned" / "events.normalized.jsonl").read_text(encoding="utf-8")
    assert CONFIG_WARNING not in normalized


def test_a_config_that_uses_what_it_sets_gets_no_warning(tmp_path: Path) -> None:
    text = RUN.replace("perfect_score = 0.9", "perfect_score = 0.9\nskip_perfect_score = true")
    text = text.replace(
        "[gepa.pipeline]\n", '[gepa.pipeline]\nmode = "async_pipelined"\nstaleness_policy = "guarded"\n'
    )
    path = tmp_path / "gepa.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert config_warnings(config, ("instruction", "format")) == []
    assert [key for key, _ in config_warnings(config, ("instruction",))] == ["gepa.use_merge"]


def test_the_other_combinations(tmp_path: Path) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(
        """
[container]
url = "http://127.0.0.1:9"
cwd = "app"
startup_timeout_seconds = 5

[dataset]
train_ids = ["a", "b"]

[proposer]
backend = "openai_compatible"
base_url = "http://127.0.0.1:9/v1"
codex_home = "codex"
message_stall_timeout_seconds = 30

[gepa]
max_merge_invocations = 2
rollout_estimated_tokens = 100
max_heldout_rollouts = 4

[gepa.pipeline]
mode = "async_pipelined"
delta_max = 3

[cache]
mode = "off"
namespace = "n"
""",
        encoding="utf-8",
    )
    keys = [key for key, _ in config_warnings(load_config(path), ("m",))]
    assert keys == [
        "gepa.max_merge_invocations",
        "gepa.pipeline.delta_max",
        "gepa.rollout_estimated_tokens",
        "gepa.max_heldout_rollouts",
        "cache.namespace",
        "container.cwd",
        "container.startup_timeout_seconds",
        "proposer.codex_home",
        "proposer.message_stall_timeout_seconds",
    ]


def test_codex_uses_a_base_url_unless_its_config_chooses_a_provider(tmp_path: Path) -> None:
    def warnings(proposer: str) -> list[tuple[str, str]]:
        path = tmp_path / "gepa.toml"
        path.write_text(
            '[container]\nurl = "http://127.0.0.1:9"\n\n[dataset]\ntrain_ids = ["a"]\n\n'
            f'[proposer]\nbackend = "codex_app_server"\n{proposer}\n',
            encoding="utf-8",
        )
        return [(key, message) for key, message in config_warnings(load_config(path), ("m",)) if "proposer" in key]

    local = 'base_url = "http://127.0.0.1:8080/v1"\napi_key_env = "LOCAL_KEY"'
    assert warnings(local) == []  # a run-local model provider for codex
    chosen = warnings(local + '\nconfig = { model_provider = "mine" }')
    assert [key for key, _ in chosen] == ["proposer.base_url", "proposer.api_key_env"]
    assert all("model_provider" in message for _, message in chosen)
    assert [key for key, _ in warnings('api_key_env = "LOCAL_KEY"')] == ["proposer.api_key_env"]


def test_a_count_the_container_cannot_fill_is_said_for_every_role(tmp_path: Path) -> None:
    """``{count = N}`` past what the container lists is not an error (the run uses what there is), but it is said,
    for the pareto and minibatch rows as for the train and heldout rows."""
    text = RUN.replace("train_ids = {count = 6}", "train_ids = {count = 50}\npareto_ids = {count = 40}")
    text = text.replace("heldout_ids = {count = 2}", "heldout_ids = {count = 30}\nminibatch_ids = {count = 20}")
    path = tmp_path / "gepa.toml"
    path.write_text(text, encoding="utf-8")
    run_cli(path)
    feed = read_feed(tmp_path / "runs" / "warned" / "events.jsonl")
    said = [event.message for event in feed if isinstance(event.data, ContainerWarning)]
    assert said == [
        "dataset.train_ids asks for 50 ids but the container lists only 6",
        "dataset.pareto_ids asks for 40 ids but the container lists only 6",
        "dataset.minibatch_ids asks for 20 ids but the container lists only 6",
        "dataset.heldout_ids asks for 30 ids but the container lists only 4",
    ]


def test_a_budget_that_buys_no_proposal_is_said_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "gepa.toml"
    text = '[container]\nurl = "http://127.0.0.1:9"\n[dataset]\ntrain_ids = {count = 10}\n'
    text += '[proposer]\nbackend = "offline"\n[gepa]\n'
    path.write_text(text + "max_train_rollouts = 60\nminibatch_size = 30\n", encoding="utf-8")
    warnings = dict(config_warnings(load_config(path), ("m",)))
    assert "gepa.max_train_rollouts" in warnings, warnings
    message = warnings["gepa.max_train_rollouts"]
    assert "buys no proposal: the seed's scoring takes 10 rollouts" in message and "synth-opt gepa plan" in message
    path.write_text(text + "max_train_rollouts = 200\nminibatch_size = 3\n", encoding="utf-8")
    assert "gepa.max_train_rollouts" not in dict(config_warnings(load_config(path), ("m",)))


def test_a_misspelt_environment_override_is_said_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(RUN, encoding="utf-8")
    monkeypatch.setenv("SYNTH_OPTIMIZERS_CACHE_MDOE", "off")
    monkeypatch.setenv("SYNTH_OPTIMIZERS_CACHE_MODE", "off")  # a real one: no warning
    warnings = dict(config_warnings(load_config(path), ("m",)))
    assert warnings["SYNTH_OPTIMIZERS_CACHE_MDOE"].startswith(
        "is set but overrides nothing (did you mean SYNTH_OPTIMIZERS_CACHE_MODE?)"
    )
    assert "SYNTH_OPTIMIZERS_CACHE_MODE" not in warnings
