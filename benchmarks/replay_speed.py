"""Readonly replay against a fresh run: ``sync_serial``, a 20 ms standing container, the same config.

The fresh run fills the cache (``readwrite``); the replay (``readonly``) contacts neither the container nor the
proposer and re-executes every decision from the cache. Both are timed in-process around ``execute()``, one after
the other in this process, and their normalized feeds are compared.

    .venv/bin/python benchmarks/replay_speed.py --latency-ms 20 --train-budget 600
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import anyio

from _common import LatencyProposer, served, standing_container, write_config
from synth_opt import GepaRun, load_config
from synth_opt.events.compare import compare_feeds


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with standing_container(args.latency_ms) as url:
            path = write_config(
                Path(tmp),
                "replay",
                url=url,
                mode="sync_serial",
                rollout_workers=1,
                in_flight=1,
                train_budget=args.train_budget,
                heldout=20,
            )
            path.write_text(path.read_text().replace('mode = "off"', 'mode = "readwrite"'))
            timings = {}
            results = {}
            for name, mode in (("fresh", "readwrite"), ("readonly replay", "readonly")):
                os.environ["SYNTH_OPTIMIZERS_RUN_ID"] = name.replace(" ", "-")
                os.environ["SYNTH_OPTIMIZERS_CACHE_MODE"] = mode
                before = await served(url)
                started = time.perf_counter()
                results[name] = await GepaRun(
                    load_config(path), proposer=LatencyProposer(args.proposer_ms / 1000)
                ).execute_async()
                timings[name] = (time.perf_counter() - started, await served(url) - before)
            fresh, replay = results["fresh"], results["readonly replay"]
            feeds = (Path(str(fresh.normalized_event_feed_path)), Path(str(replay.normalized_event_feed_path)))
            same = compare_feeds(*feeds).equal
    print(f"container latency {args.latency_ms} ms, proposer {args.proposer_ms} ms, sync_serial")
    print(f"{'run':<16} {'rollouts':>8} {'served live':>11} {'seconds':>8}")
    for name, (seconds, live) in timings.items():
        print(f"{name:<16} {results[name].rollouts_used['total']:>8} {live:>11} {seconds:>8.2f}")
    print(
        f"replay is {timings['fresh'][0] / timings['readonly replay'][0]:.1f}x faster; normalized feeds equal: {same}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--proposer-ms", type=float, default=0.0)
    parser.add_argument("--train-budget", type=int, default=600)
    anyio.run(main, parser.parse_args())
