"""The live display, rendered from a scripted event sequence into a recording console."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from synth_opt.config import load_config
from synth_opt.events import Event
from synth_opt.lanes import LaneStats
from synth_opt.pipeline import PipelineStats
from synth_opt.progress import ProgressModel, render_progress
from synth_opt.run import RunView

CONFIG = """
[container]
url = "http://127.0.0.1:9"

[dataset]
train_ids = ["a", "b"]

[proposer]
backend = "codex_app_server"

[gepa]
max_cost_usd = 0.05
max_total_tokens = 1000
proposer_estimated_cost_usd = 0.001
rollout_estimated_cost_usd = 0.001
proposer_estimated_tokens = 10
rollout_estimated_tokens = 10
no_improvement_iterations = 4
"""


def event(n: int, kind: str, message: str = "", lane: str | None = None, **fields: object) -> Event:
    return Event(n, "2026-11-26T00:00:00.000Z", kind, message, dict(fields), lane)


def scripted() -> list[Event]:
    events = [event(1, "run.state", state="searching"), event(2, "seed.scored", mean_score=0.25, candidate_id="s")]
    n = 3
    for index in range(6):
        events.append(event(n, "proposal.planned", index=index))
        n += 1
        for _ in range(4):
            usage = {"total_tokens": 10, "cost_usd": 0.001}
            events.append(event(n, "rollout.completed", lane="rollout", stage=f"p{index}.child", usage=usage))
            n += 1
        accepted = index % 2 == 0
        reason = "improved" if accepted else ("stale" if index == 5 else "not_improved")
        events.append(event(n, "acceptance.decided", "decided", accepted=accepted, reason=reason))
        n += 1
    events.append(event(n, "frontier.updated", members=["s", "c1", "c2"], pool_size=4, best_mean_score=0.625))
    events.append(event(n + 1, "rollout.completed", lane="rollout", stage="heldout", usage={}))
    return events


def test_the_display_shows_budget_lanes_counters_scores_and_cost(tmp_path: Path) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(CONFIG)
    stats = PipelineStats({"rollout": LaneStats("rollout", 8, busy=3, done=24), "propose": LaneStats("propose", 2)})
    view = RunView("demo-run", load_config(path), stats, train_cap=100, heldout_cap=40)
    model = ProgressModel()
    for item in scripted():
        model.apply(item)
    console = Console(record=True, width=120, color_system=None)
    console.print(render_progress(model, view, elapsed=12.0))
    text = console.export_text()
    assert "GEPA demo-run" in text and "state: searching" in text
    assert "24/100" in text and "1/40" in text  # train and heldout budget bars
    assert "ETA" in text
    assert "proposals 6" in text and "accepted 3" in text and "rejected 3" in text
    assert "best 0.6250" in text and "seed 0.2500" in text
    assert "frontier 3" in text and "pool 4" in text
    assert "rejected 3" in text and "stale 1" in text
    assert "best 0.6250 (+0.3750)" in text
    assert "tokens 240 of 1,000" in text and "cost $0.0240 of $0.05" in text
    # the nearest limit: cost at 48% (tokens 24%, train rollouts 24%, no improvement 0 of 4)
    assert "next stop: max_cost_usd (48% used" in text
    rollout_row = next(line for line in text.splitlines() if line.strip().startswith("rollout"))
    assert rollout_row.split()[1:6] == ["0", "3", "8", "24", "2.0"]  # queued, busy, workers, done, per second


def test_the_live_display_reads_the_ledger_when_it_is_not_sent_each_rollout(tmp_path: Path) -> None:
    """The live observer subscribes to DISPLAY_TYPES only: its counts come from budget.updated."""
    from synth_opt.progress import DISPLAY_TYPES

    assert "rollout.completed" not in DISPLAY_TYPES and "budget.updated" in DISPLAY_TYPES
    path = tmp_path / "gepa.toml"
    path.write_text(CONFIG)
    view = RunView("demo-run", load_config(path), PipelineStats(), train_cap=100, heldout_cap=40)
    model = ProgressModel()
    used = {"train_rollouts": 90, "heldout_rollouts": 0, "tokens": 500, "cost_usd": 0.01}
    for item in [e for e in scripted() if e.type in DISPLAY_TYPES]:
        model.apply(item)
    model.apply(event(90, "budget.updated", used=used, train_cap=100, since_improvement=2))
    console = Console(record=True, width=120, color_system=None)
    console.print(render_progress(model, view, elapsed=10.0))
    text = console.export_text()
    assert "90/100" in text and "tokens 500 of 1,000" in text and "cost $0.0100" in text
    assert "next stop: max_total_rollouts (90% used" in text  # the key the search reports (no train cap set)
    assert "forecast" not in text  # none yet
    model.apply(
        event(91, "plan.forecast", proposal_index=5, acceptance_rate=0.5, expected_proposals=8,
              stopping_limit="max_total_rollouts", proposals_by_limit={"max_total_rollouts": 8},
              expected_totals={"train_rollouts": 98, "tokens": 1234, "cost_usd": 0.5})
    )  # fmt: skip
    console = Console(record=True, width=120, color_system=None)
    console.print(render_progress(model, view, elapsed=10.0))
    shown = "forecast: about 8 proposals at 50% accepted so far, then max_total_rollouts (about 1,234 tokens, $0.5000)"
    assert shown in console.export_text()


def test_gepa_run_shows_the_live_display_on_a_terminal_and_exits_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    from tests.integration.test_run_faults import config

    path = config(tmp_path)
    path.write_text(path.read_text().replace("max_train_rollouts = 200", "max_train_rollouts = 1000000"))
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(path)],
        stdin=child,
        stdout=child,
        stderr=child,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(child)
    screen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and b"proposals" not in screen:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                screen += os.read(main, 65536)
        assert b"train rollouts" in screen and b"proposals" in screen, screen[-2000:]
        process.send_signal(signal.SIGINT)
        end = time.monotonic() + 30
        while time.monotonic() < end and process.poll() is None:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    screen += os.read(main, 65536)
                except OSError:
                    break
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main)
    assert b"error[run_cancelled]" in screen
    assert b"Traceback" not in screen


def test_replay_renders_a_recorded_feed_with_the_same_display(tmp_path: Path) -> None:
    import json

    from synth_opt.cli import main

    run_dir = tmp_path / "myrun"
    run_dir.mkdir()
    events = [*scripted(), event(99, "budget.updated", train_cap=100)]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e.to_json()) + "\n" for e in events))
    console = Console(record=True, width=120, color_system=None)
    from synth_opt.events.normalize import read_feed
    from synth_opt.progress import replay_summary

    console.print(replay_summary(read_feed(run_dir / "events.jsonl"), run_id="myrun"))
    text = console.export_text()
    assert "GEPA myrun" in text and "24/100" in text and "accepted 3" in text and "best 0.6250" in text
    assert main(["events", "replay", "--events", str(run_dir / "events.jsonl")]) == 0


def test_the_display_counts_proposals_asked_again_and_duplicates(tmp_path: Path) -> None:
    """``gepa.pipeline.concurrent_edits``: a proposal asked again shows while its second call runs (the
    ``reflection.requested`` of attempt 2), and one that ended with nothing new is counted a duplicate."""
    path = tmp_path / "gepa.toml"
    path.write_text(CONFIG)
    view = RunView("demo-run", load_config(path), PipelineStats({}), train_cap=100, heldout_cap=0)
    model = ProgressModel()
    for item in scripted():
        model.apply(item)

    def counters() -> str:
        console = Console(record=True, width=160, color_system=None)
        console.print(render_progress(model, view, elapsed=1.0))
        return next(line for line in console.export_text().splitlines() if "proposals" in line)

    assert "asked again" not in counters() and "duplicate" not in counters()
    model.apply(event(90, "reflection.requested", proposal_index=6, attempt=2))
    model.apply(event(91, "reflection.requested", proposal_index=7))  # a first call
    assert "asked again 1" in counters() and "duplicate" not in counters()
    model.apply(event(92, "acceptance.decided", accepted=False, reason="duplicate", proposal_index=6))
    assert "asked again 1, duplicate 1" in counters() and "rejected 4" in counters()
