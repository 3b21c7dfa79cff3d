"""The same benchmarks at two commits, interleaved: best of N runs each, and the ratio of the two.

A refactor should not move the numbers. This script checks out ``--base`` into a temporary git worktree and runs each
probe there and in the current checkout, alternately (base first in odd rounds, current first in even ones), so
both see the same machine load and neither always runs second; each probe runs the benchmark script of its own
tree against its own ``src`` (``PYTHONPATH``), in a fresh process. For each metric it prints the best of the runs on
each side and current / base (for times, base / current), so a ratio below 1 always means the current tree is
slower.

    .venv/bin/python benchmarks/compare_commits.py --base 954580f --repeats 3

Probes: ``engine`` (engine_overhead.py, one run of ``--budget`` rollouts with the workspace on and one with it
off: rollouts/s), ``pipeline`` (pipeline_throughput.py at 5 ms per rollout: rollouts/s of each configuration),
``queue`` (queue_throughput.py: requests/s with 1 and 4 workers) and ``replay`` (replay_speed.py: seconds of the
fresh run and of the readonly replay).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Probe:
    name: str
    argv: Callable[[argparse.Namespace], list[str]]
    parse: Callable[[str], dict[str, float]]
    higher_is_better: bool = True


def _engine_argv(workspace: str) -> Callable[[argparse.Namespace], list[str]]:
    return lambda args: ["benchmarks/engine_overhead.py", "--one", str(args.budget), "--one-workspace", workspace]


def _engine_parse(label: str) -> Callable[[str], dict[str, float]]:
    def parse(out: str) -> dict[str, float]:
        row = json.loads(out.strip().splitlines()[-1])
        return {f"engine rollouts/s, workspace {label}": row["rollouts"] / row["seconds"]}

    return parse


def _pipeline_parse(out: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in out.splitlines():
        match = re.match(
            r"(sync_serial|async_pipelined)\s+(\d+)\s+\d+\s+(small pools|one pool)?\s*\d+\s+[\d.]+\s+([\d.]+)", line
        )
        if match:
            mode, workers, pools, rate = match.groups()
            found[f"pipeline rollouts/s, {mode} {workers} workers{', ' + pools if pools else ''}"] = float(rate)
    return found


def _queue_parse(out: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 8 and fields[0].isdigit():
            found[f"queue requests/s, {fields[0]} workers"] = float(fields[2])
    return found


def _replay_parse(out: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in out.splitlines():
        match = re.match(r"(fresh|readonly replay)\s+\d+\s+\d+\s+([\d.]+)", line)
        if match:
            found[f"replay seconds, {match.group(1)}"] = float(match.group(2))
    return found


PROBES = {
    "engine": [
        Probe("engine-on", _engine_argv("on"), _engine_parse("on")),
        Probe("engine-off", _engine_argv("off"), _engine_parse("off")),
    ],
    "pipeline": [
        Probe(
            "pipeline",
            lambda args: [
                "benchmarks/pipeline_throughput.py",
                "--latency-ms",
                "5",
                "--proposer-ms",
                "0",
                "--train-budget",
                str(args.pipeline_budget),
            ],
            _pipeline_parse,
        )
    ],
    "queue": [
        Probe(
            "queue",
            lambda args: ["benchmarks/queue_throughput.py", "--requests", str(args.requests), "--workers", "1", "4"],
            _queue_parse,
        )
    ],
    "replay": [
        Probe(
            "replay",
            lambda args: ["benchmarks/replay_speed.py", "--latency-ms", "5", "--train-budget", "300"],
            _replay_parse,
            higher_is_better=False,
        )
    ],
}


def run_probe(tree: Path, probe: Probe, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree / 'benchmarks'}"}
    done = subprocess.run(
        [sys.executable, *probe.argv(args)], cwd=tree, env=env, capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise SystemExit(f"{probe.name} failed in {tree} (exit {done.returncode}):\n{done.stderr[-2000:]}")
    metrics = probe.parse(done.stdout)
    if not metrics:
        raise SystemExit(f"{probe.name} printed nothing this script reads in {tree}:\n{done.stdout[-2000:]}")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the commit to compare against (e.g. the one before a refactor)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probes", nargs="+", choices=sorted(PROBES), default=["engine", "pipeline", "queue"])
    parser.add_argument("--budget", type=int, default=10000, help="engine probe train budget")
    parser.add_argument("--pipeline-budget", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=3000, help="queue probe requests (fewer: noisier)")
    parser.add_argument("--tolerance", type=float, default=0.10)
    args = parser.parse_args()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_tree), args.base], cwd=ROOT, check=True)
        try:
            shared = ROOT.parent / "shared"
            if shared.exists():
                (base_tree.parent / "shared").symlink_to(shared)
            results: dict[str, dict[str, list[float]]] = {"base": {}, "current": {}}
            better: dict[str, bool] = {}
            for repeat in range(args.repeats):
                for name in args.probes:
                    for probe in PROBES[name]:
                        sides = (("base", base_tree), ("current", ROOT))
                        for side, tree in sides if repeat % 2 == 0 else sides[::-1]:  # neither always goes first
                            for metric, value in run_probe(tree, probe, args).items():
                                results[side].setdefault(metric, []).append(value)
                                better[metric] = probe.higher_is_better
                print(f"round {repeat + 1} of {args.repeats} done", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=False)
    print(f"base {args.base} against current {head.stdout.strip()} (working tree), best of {args.repeats} each")
    print(f"{'metric':<60} {'base':>10} {'current':>10} {'ratio':>7}  within {args.tolerance:.0%}")
    worst = 1.0
    for metric, values in results["base"].items():
        now = results["current"].get(metric, [])
        if not now:
            print(f"{metric:<60} {'-':>10} {'missing':>10}")
            continue
        pick = max if better[metric] else min
        base_best, now_best = pick(values), pick(now)
        ratio = now_best / base_best if better[metric] else base_best / now_best
        worst = min(worst, ratio)
        ok = "yes" if ratio >= 1 - args.tolerance else "NO"
        print(f"{metric:<60} {base_best:>10.2f} {now_best:>10.2f} {ratio:>7.3f}  {ok}")
    print(f"worst ratio {worst:.3f} (below 1: the current tree is slower)")


if __name__ == "__main__":
    main()
