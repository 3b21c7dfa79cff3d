"""Staleness policies on a real task: the offline Banking77 cookbook, ``sync_serial`` against ``async_pipelined``
with ``staleness_policy = "full"`` and ``"rebase"``, at the same train budget and seed.

Each run is the cookbook's ``gepa.offline.toml`` (real container and offline proposer processes, the keyword
policy) on a reduced dataset so it takes seconds: 600 train ids, 60 pareto rows, 100 heldout rows, minibatch 20.
The printed scores are the best candidate's mean on the pareto rows and the seed's and best candidate's heldout
accuracy; ``rebase`` also counts how its proposals ended (``rebased``, ``contained``, ``conflict`` or nothing newer to
carry onto). Quality, not speed: the wall times are shown but the proposer answers in milliseconds here.

    .venv/bin/python benchmarks/staleness_banking77.py --budgets 900 1500 --in-flight 4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import anyio

from synth_opt import GepaRun, load_config

COOKBOOK = Path(__file__).resolve().parents[1] / "cookbooks" / "banking77"

CONFIGS = (("sync_serial", "full"), ("async_pipelined", "full"), ("async_pipelined", "rebase"))


def write_config(folder: Path, *, budget: int, mode: str, policy: str, args: argparse.Namespace) -> Path:
    text = (COOKBOOK / "gepa.offline.toml").read_text()
    replacements = {
        'output_dir = "../../runs"': f"output_dir = {json.dumps(str(folder / 'runs'))}",
        "seed = 0": f"seed = {args.seed}",
        '"./container.py"': json.dumps(str(COOKBOOK / "container.py")),
        '"./offline_proposer.py"': json.dumps(str(COOKBOOK / "offline_proposer.py")),
        'cwd = "."': f"cwd = {json.dumps(str(COOKBOOK))}",
        "train_ids = { count = 4000 }": "train_ids = { count = 600 }",
        "pareto_ids = { count = 150 }": "pareto_ids = { count = 60 }",
        "heldout_ids = { count = 500 }": "heldout_ids = { count = 100 }",
        "max_train_rollouts = 10000": f"max_train_rollouts = {budget}",
        "max_heldout_rollouts = 1000": "max_heldout_rollouts = 200",
        "max_total_rollouts = 11000": f"max_total_rollouts = {budget + 200}",
        "minibatch_size = 50": "minibatch_size = 20",
        '[gepa.pipeline]\nmode = "sync_serial"': (
            f'[gepa.pipeline]\nmode = "{mode}"\nmax_in_flight_candidates = {args.in_flight}\n'
            f'staleness_policy = "{policy}"\n[gepa.pipeline.workers]\npropose = {args.propose_workers}\nrollout = 8'
        ),
    }
    for old, new in replacements.items():
        if old not in text:
            raise SystemExit(f"{COOKBOOK / 'gepa.offline.toml'} no longer holds {old!r}; update this benchmark")
        text = text.replace(old, new)
    path = folder / f"{mode}-{policy}-{budget}.toml"
    path.write_text(text)
    return path


async def main(args: argparse.Namespace) -> None:
    print(
        f"offline Banking77 (600 train ids, 60 pareto, 100 heldout, minibatch 20), seed {args.seed}; async_pipelined "
        f"with {args.in_flight} in flight and {args.propose_workers} propose workers"
    )
    header = (
        f"{'budget':>6} {'mode':<16} {'staleness':<9} {'props':>5} {'acc':>4} {'pareto best':>11} "
        f"{'heldout seed':>12} {'heldout best':>12} {'wall s':>7}  rebase outcomes"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for budget in args.budgets:
            for mode, policy in CONFIGS:
                folder = Path(tmp) / f"{budget}-{mode}-{policy}"
                folder.mkdir()
                config = load_config(write_config(folder, budget=budget, mode=mode, policy=policy, args=args))
                started = time.perf_counter()
                result = await GepaRun(config, fresh=True).execute_async()
                seconds = time.perf_counter() - started
                feed = [json.loads(line) for line in Path(str(result.event_feed_path)).read_text().splitlines()]
                outcomes = Counter(
                    str(e["fields"].get("rebase", "current")) for e in feed if e["type"] == "proposal.created"
                )
                shown = ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items()))
                print(
                    f"{budget:>6} {mode:<16} {policy:<9} {result.proposals:>5} {result.accepted:>4} "
                    f"{result.best_train_score or 0.0:>11.4f} {result.seed_heldout_score or 0.0:>12.4f} "
                    f"{result.best_heldout_score or 0.0:>12.4f} {seconds:>7.1f}  "
                    f"{shown if policy == 'rebase' else ''}"
                )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=int, nargs="+", default=[900, 1500], help="train rollout budgets")
    parser.add_argument("--in-flight", type=int, default=4, help="async_pipelined max_in_flight_candidates")
    parser.add_argument("--propose-workers", type=int, default=2, help="async_pipelined propose workers")
    parser.add_argument("--seed", type=int, default=0, help="the run seed")
    return parser.parse_args()


if __name__ == "__main__":
    anyio.run(main, parse_args())
