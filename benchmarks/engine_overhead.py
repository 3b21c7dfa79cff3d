"""Engine overhead: rollouts/s and peak memory against a zero-latency in-process container.

The container is :class:`synth_opt.testing.FakeContainer` plugged in through ``GepaRun(container_transport=...)``
(an ``httpx.MockTransport``: the real client code path, no sockets), with an in-process proposer of zero latency
(``GepaRun(proposer=...)``). The run writes the events and artifacts it writes by default, with the workspace
database on and off (``GepaRun(workspace=False)``). Each run is a fresh subprocess so its peak RSS is its own.

    .venv/bin/python benchmarks/engine_overhead.py --budgets 2000 10000 20000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from _common import LatencyProposer, write_config
from synth_opt import GepaRun, load_config
from synth_opt.progress import live_observer
from synth_opt.testing import FakeContainer

WORDS = [f"w{i}" for i in range(40)]


def score(candidate: dict[str, str], row: dict[str, Any]) -> float:
    return 1.0 if row["answer"] in candidate["instruction"].split() else 0.0


def one(budget: int, workspace: bool, display: bool = False) -> dict[str, Any]:
    rows = {
        "train": [{"task_id": f"train-{i}", "answer": WORDS[i % 40]} for i in range(200)],
        "test": [{"task_id": f"test-{i}", "answer": WORDS[(i * 7) % 40]} for i in range(50)],
    }
    fake = FakeContainer(rows=rows, score=score, seed_candidate={"instruction": "answer w0"})
    with tempfile.TemporaryDirectory() as tmp:
        path = write_config(
            Path(tmp),
            "overhead",
            url="http://in-process.test",
            mode="sync_serial",
            rollout_workers=1,
            in_flight=1,
            train_budget=budget,
        )
        started = time.perf_counter()
        cpu_started = _cpu_seconds()
        result = GepaRun(
            load_config(path),
            container_transport=fake.transport(),
            proposer=LatencyProposer(0.0),
            workspace=workspace,
            observer=live_observer(Console(file=open(os.devnull, "w"), force_terminal=True, width=120))
            if display
            else None,
        ).execute()
        seconds = time.perf_counter() - started
        cpu_seconds = _cpu_seconds() - cpu_started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "workspace": workspace,
        "budget": budget,
        "rollouts": fake.rollouts_served,
        "proposals": result.proposals,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_rss_mb": peak_kib / 1024,
    }


def _cpu_seconds() -> float:
    """CPU time of this process (the engine and its display; the workspace writer is a child process)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=int, nargs="+", default=[2000, 10000, 20000])
    parser.add_argument("--workspace", choices=("on", "off", "both"), default="both")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--one-workspace", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--one-display", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--display", action="store_true", help="compare the live display on and off instead")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.one_workspace == "on", args.one_display)))
        return
    if args.display:
        compare_display(args.budgets[0], args.repeats)
        return
    modes = ["off", "on"] if args.workspace == "both" else [args.workspace]
    print(
        f"{'workspace':>9} {'budget':>7} {'rollouts':>8} {'proposals':>9} {'seconds':>8} {'rollouts/s':>10} "
        f"{'ms/proposal':>11} {'peak RSS MB':>11}"
    )
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for budget in args.budgets:
        for mode in modes:  # interleaved, so both see the same machine load
            command = [sys.executable, __file__, "--one", str(budget), "--one-workspace", mode]
            row = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split("\n")[-2])
            per_proposal = 1000 * row["seconds"] / max(row["proposals"], 1)
            first.setdefault(mode, per_proposal)
            last[mode] = per_proposal
            print(
                f"{mode:>9} {row['budget']:>7} {row['rollouts']:>8} {row['proposals']:>9} {row['seconds']:>8.2f} "
                f"{row['rollouts'] / row['seconds']:>10.0f} {per_proposal:>11.2f} {row['peak_rss_mb']:>11.1f}"
            )
    for mode in modes:
        ratio = last[mode] / first[mode]
        print(f"workspace {mode}: ms/proposal at the largest budget is {ratio:.2f}x that at the smallest")


def _discarding_terminal() -> Console:
    return Console(file=open(os.devnull, "w"), force_terminal=True, width=120)


def compare_display(budget: int, repeats: int) -> None:
    """The live display (rendering to a terminal that discards its output) against none, interleaved runs. Wall
    time is what the target is about; the engine process's CPU time is printed beside it because it is far less
    disturbed by other load on a shared machine."""
    seconds: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(repeats):
        for mode in ("off", "on"):
            command = [sys.executable, __file__, "--one", str(budget), "--one-workspace", "on"]
            command += ["--one-display"] if mode == "on" else []
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            seconds[mode].append(row["seconds"])
            cpu[mode].append(row["cpu_seconds"])
    print(f"budget {budget}, {repeats} interleaved runs each, workspace on")
    for label, values in (("wall", seconds), ("engine CPU", cpu)):
        off, on = statistics.median(values["off"]), statistics.median(values["on"])
        print(f"{label:>10} display off: median {off:.2f} s  ({', '.join(f'{x:.2f}' for x in values['off'])})")
        print(f"{label:>10} display on:  median {on:.2f} s  ({', '.join(f'{x:.2f}' for x in values['on'])})")
        print(f"{label:>10} display on / off = {on / off:.3f}")


if __name__ == "__main__":
    main()
