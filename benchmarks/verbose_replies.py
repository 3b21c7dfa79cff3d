"""What a run keeps of verbose rollout replies: its event feed, workspace and request cache on disk, its memory.

A container may log a long transcript per rollout, in its feedback or its trace. This script serves the word task
with ``--pad-kb`` kB more of each per rollout (``latency_container.py --pad-kb``) and runs ``synth-opt gepa run``
on it (the built-in ``offline`` proposer, ``async_pipelined`` with its defaults, the cache on) in a process of its
own, then measures the run directory: ``events.jsonl``, ``workspace.sqlite``, ``cache.sqlite``, and the optimizer
process's peak RSS. With ``--base REV`` it does the same with the synth_opt of another commit (checked out into a
temporary git worktree, put first on ``PYTHONPATH``), against the same container, side by side: the same
decisions, and what each keeps.

    .venv-bench/bin/python benchmarks/verbose_replies.py --pad-kb 1024 --budget 300 --base 84ec194
    .venv-bench/bin/python benchmarks/verbose_replies.py --pad-kb 64 --budget 2000 --no-reuse --base 776c14e
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import anyio

from _common import standing_container

ROOT = Path(__file__).resolve().parents[1]

# runs the CLI in this process and reports its peak RSS (kB on Linux) on the last line of stderr
_MEASURED = (
    "import resource, runpy, sys\n"
    "sys.argv = ['synth-opt', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('synth_opt', run_name='__main__', alter_sys=True)\n"
    "except SystemExit as stop:\n"
    "    code = stop.code\n"
    "else:\n"
    "    code = 0\n"
    "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def config(folder: Path, url: str, budget: int, *, reuse: bool = True) -> Path:
    path = folder / "verbose.toml"
    path.write_text(
        f"""
[run]
run_id = "verbose"
output_dir = "{folder / "runs"}"

[container]
url = "{url}"

[dataset]
train_ids = {{count = 200}}
pareto_ids = {{count = 20}}
heldout_ids = []

[proposer]
backend = "offline"

[gepa]
max_train_rollouts = {budget}
minibatch_size = 3
reuse_evaluations = {str(reuse).lower()}

[gepa.pipeline]
mode = "async_pipelined"

[cache]
mode = "readwrite"
path = "{folder / "cache.sqlite"}"
"""
    )
    return path


def run_side(src: Path, folder: Path, url: str, budget: int, reuse: bool) -> dict[str, float]:
    """One run with the synth_opt in ``src``: what it decided and what it kept."""
    folder.mkdir(parents=True)
    path = config(folder, url, budget, reuse=reuse)
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, "gepa", "run", "--config", str(path), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the run with {src} failed:\n{done.stderr[-3000:]}")
    rss_kb = int(done.stderr.strip().splitlines()[-1].split()[1])
    run_dir = folder / "runs" / "verbose"
    manifest = json.loads((run_dir / "result_manifest.json").read_text())
    mb = 1024 * 1024
    return {
        "rollouts": manifest["rollouts_used"]["total"],
        "proposals": manifest["proposals"],
        "best": manifest["best_train_score"],
        "feed MB": (run_dir / "events.jsonl").stat().st_size / mb,
        "workspace MB": (run_dir / "workspace.sqlite").stat().st_size / mb,
        "cache MB": (folder / "cache.sqlite").stat().st_size / mb,
        "peak RSS MB": rss_kb / 1024,
        "seconds": seconds,
    }


async def measure(sides: dict[str, Path], folder: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    async with standing_container(0.0, pad_kb=args.pad_kb) as url:
        return {
            name: await anyio.to_thread.run_sync(
                run_side, src, folder / f"run-{name.split()[0]}", url, args.budget, not args.no_reuse
            )
            for name, src in sides.items()
        }


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        sides = {"current": ROOT / "src"}
        if args.base:
            tree = Path(tmp) / "base"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.base], cwd=ROOT, check=True)
            stack.callback(
                lambda: subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
            )
            sides = {f"base {args.base}": tree / "src", **sides}
        rows = anyio.run(measure, sides, Path(tmp), args)
    reuse = "reuse off" if args.no_reuse else "reuse on"
    print(
        f"word task, {args.pad_kb} kB more feedback and trace a rollout, budget {args.budget}, async_pipelined, {reuse}"
    )
    keys = list(next(iter(rows.values())))
    print(f"{'':<16}" + "".join(f"{key:>14}" for key in keys))
    for name, row in rows.items():
        cells = (f"{row[key]:>14.2f}" if isinstance(row[key], float) else f"{row[key]:>14}" for key in keys)
        print(f"{name:<16}" + "".join(cells))
    if args.base:
        base, current = rows.values()
        sizes = ("feed MB", "workspace MB", "cache MB", "peak RSS MB", "seconds")
        print("base / current: " + ", ".join(f"{key} {base[key] / current[key]:.1f}x" for key in sizes))
        same = all(base[key] == current[key] for key in ("rollouts", "proposals", "best"))
        print(f"same rollouts, proposals and best score: {same}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pad-kb", type=int, default=1024, help="kB more of feedback and of trace a rollout")
    parser.add_argument("--budget", type=int, default=300, help="train rollouts")
    parser.add_argument("--base", help="also run the synth_opt of this commit, side by side")
    parser.add_argument("--no-reuse", action="store_true", help="reuse_evaluations = false")
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
