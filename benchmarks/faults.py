"""What each fault costs: time to a clear failure or to recovery, degraded rollouts, and whether the result equals an
uninterrupted run's.

Every scenario runs the same small config against ``synth_opt.testing.fault_container`` launched as the run's
container (a real process on loopback; the fault is injected by count, so runs are reproducible) with an
in-process proposer (the word task's rule, 20 ms a call), cache off. The baseline is the same config against a
fault-free container; "equal" compares normalized feeds (the run's decisions) with the baseline's. Two more
scenarios SIGKILL the optimizer process itself (``--child`` runs one run in a process of its own) and re-run the
config: once before its first checkpoint, once mid-search.

    .venv/bin/python benchmarks/faults.py [--only http500 refused ...]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from _common import LatencyProposer
from synth_opt import GepaRun, SynthOptimizerError, load_config
from synth_opt.events.compare import compare_feeds
from synth_opt.testing.fault_container import command

AFTER = 60  # rollouts answered normally before a fault (the seed's 8 and several proposals)


@dataclass(frozen=True)
class Scenario:
    name: str
    argv: list[str]
    timeout_seconds: float = 5.0
    outage_seconds: float = 20.0


SCENARIOS = [
    Scenario("http500 x6", command("http500", after=AFTER, count=6)),
    Scenario("reset x6", command("reset", after=AFTER, count=6)),
    Scenario("refused 3 s", command("refused", after=AFTER, refuse_seconds=3)),
    Scenario("hang x4 (timeout 1 s)", command("hang", after=AFTER, count=4), timeout_seconds=1.0),
    Scenario("slow body x3 (timeout 1 s)", command("slow_body", after=AFTER, count=3), timeout_seconds=1.0),
    Scenario("malformed x2", command("malformed", after=AFTER, count=2)),
    Scenario("wrong id x2", command("wrong_id", after=AFTER, count=2)),
    Scenario("one row always 500", command("http500", row="t3")),
    Scenario("http500 forever (outage 5 s)", command("http500", after=AFTER), outage_seconds=5.0),
    Scenario("refused forever (outage 5 s)", command("refused", after=AFTER), outage_seconds=5.0),
    Scenario("container dies", command("die", after=AFTER), outage_seconds=5.0),
]


def write_config(folder: Path, scenario: Scenario) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gepa.toml"
    path.write_text(
        f"""
[run]
run_id = "faults"
seed = 1

[container]
command = {json.dumps(scenario.argv)}
request_timeout_seconds = {scenario.timeout_seconds}
outage_timeout_seconds = {scenario.outage_seconds}

[dataset]
train_ids = {{count = 12}}
heldout_ids = {{count = 4}}
pareto_ids = {{count = 8}}

[proposer]
backend = "codex_app_server"

[gepa]
max_train_rollouts = 150
minibatch_size = 3

[gepa.pipeline]
mode = "async_pipelined"
max_in_flight_candidates = 4

[cache]
mode = "off"
"""
    )
    return path


def degraded_rollouts(feed: Path) -> int:
    return sum(json.loads(line)["type"] == "rollout.degraded" for line in feed.read_text().splitlines() if line)


async def run_once(config: Path) -> tuple[str, float]:
    run = GepaRun(load_config(config), proposer=LatencyProposer(0.02))
    started = time.perf_counter()
    try:
        await run.execute_async()
        outcome = "completed"
    except SynthOptimizerError as error:
        outcome = f"{error.error_code}: {' '.join(error.message.split())[:60]}"
    return outcome, time.perf_counter() - started


def row(name: str, outcome: str, seconds: float, degraded: int | str, equal: str) -> str:
    return f"| {name} | {outcome} | {seconds:.1f} | {degraded} | {equal} |"


def equal_to(baseline: Path, run_dir: Path) -> str:
    """``yes`` when the run's decisions equal the fault-free run's; for a run that failed, whether the decisions
    it committed before failing are the fault-free run's first ones (nothing was decided from the fault)."""
    normalized = run_dir / "events.normalized.jsonl"
    if not normalized.exists():
        return "no result"
    if json.loads((run_dir / "result_manifest.json").read_text())["status"] == "completed":
        return "yes" if compare_feeds(baseline, normalized).equal else "no"
    mine, theirs = decisions(normalized), decisions(baseline)
    prefix = mine == theirs[: len(mine)]
    return f"failed after {len(mine)} decisions: {'the fault-free run' if prefix else 'NOT the fault-free run'}'s first"


def decisions(normalized: Path) -> list[Any]:
    lines = [json.loads(line) for line in normalized.read_text().splitlines()]
    return [line["fields"] for line in lines if line["type"] == "acceptance.decided"]


def kill_and_resume(folder: Path, baseline: Path, name: str, when: Callable[[list[dict[str, Any]]], bool]) -> str:
    """Run the fault-free config in its own process, SIGKILL it once ``when(events)`` holds, run it again."""
    config = write_config(folder, Scenario(name, command()))
    feed = folder / "runs" / "faults" / "events.jsonl"
    child = subprocess.Popen([sys.executable, __file__, "--child", str(config)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        events = [json.loads(line) for line in feed.read_text().splitlines()[:-1]] if feed.exists() else []
        if when(events):
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    started = time.perf_counter()
    again = subprocess.run([sys.executable, __file__, "--child", str(config)], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    outcome = "completed" if again.returncode == 0 else again.stderr.strip().splitlines()[-1][:90]
    registry = [json.loads(line) for line in (folder / "runs" / "run_registry.jsonl").read_text().splitlines()]
    how = "resumed" if any(line["status"] == "resumed" for line in registry) else "started over"
    return row(name, f"{outcome} ({how})", seconds, degraded_rollouts(feed), equal_to(baseline, feed.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="scenario name prefixes to run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        outcome, _ = anyio.run(run_once, Path(args.child))
        sys.exit(0 if outcome == "completed" else 1)

    with tempfile.TemporaryDirectory(prefix="synth-opt-faults-") as tmp:
        root = Path(tmp)
        base_config = write_config(root / "baseline", Scenario("baseline", command()))
        outcome, seconds = anyio.run(run_once, base_config)
        baseline = root / "baseline" / "runs" / "faults" / "events.normalized.jsonl"
        print("| scenario | outcome | seconds | degraded rollouts | decisions equal the fault-free run |")
        print("|---|---|---|---|---|")
        print(row("no fault", outcome, seconds, 0, "-"))
        for n, scenario in enumerate(SCENARIOS):
            if args.only and not any(scenario.name.startswith(prefix) for prefix in args.only):
                continue
            config = write_config(root / f"s{n}", scenario)
            outcome, seconds = anyio.run(run_once, config)
            run_dir = config.parent / "runs" / "faults"
            print(
                row(
                    scenario.name,
                    outcome,
                    seconds,
                    degraded_rollouts(run_dir / "events.jsonl"),
                    equal_to(baseline, run_dir),
                ),
                flush=True,
            )
        if not args.only or any("kill".startswith(prefix) for prefix in args.only):
            print(
                kill_and_resume(
                    root / "k1",
                    baseline,
                    "optimizer SIGKILLed before its first checkpoint",
                    lambda events: len(events) >= 5,
                ),
                flush=True,
            )
            print(
                kill_and_resume(
                    root / "k2",
                    baseline,
                    "optimizer SIGKILLed mid-search",
                    lambda events: sum(e["type"] == "acceptance.decided" for e in events) >= 6,
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
