"""Rollouts per second: sync_serial against async_pipelined with 1, 2, 4, 8 and 16 rollout workers.

A standing container in its own process (``latency_container.py``) with a fixed per-rollout latency, and an
in-process proposer with a fixed latency (``GepaRun(proposer=...)``). Rollouts/s = rollouts the container served
÷ wall time of ``execute()``. Every configuration runs in this one process, one after the other, so the ratios
are side by side.

``--one-pool`` also runs every ``async_pipelined`` configuration with the container client on a single httpx
connection pool (``GepaRun(container_transport=httpx.AsyncHTTPTransport())``) instead of its default small pools
(``synth_opt.container.connections``), right after the default one.

    .venv/bin/python benchmarks/pipeline_throughput.py --latency-ms 50 --proposer-ms 0 --train-budget 400
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from _common import LatencyProposer, served, standing_container, write_config
from synth_opt import GepaRun, load_config


async def main(args: argparse.Namespace) -> None:
    pools = ("small pools", "one pool") if args.one_pool else ("small pools",)
    configs = [("sync_serial", 1, 1, pools[0])] + [
        ("async_pipelined", w, args.in_flight, pool) for w in (1, 2, 4, 8, 16) for pool in pools
    ]
    print(
        f"container latency {args.latency_ms} ms, proposer latency {args.proposer_ms} ms, "
        f"train budget {args.train_budget}, {args.in_flight} candidates in flight (async)"
    )
    print(
        f"{'mode':<16} {'workers':>7} {'in flight':>9} {'connections':<12} {'served':>7} {'seconds':>8} "
        f"{'rollouts/s':>11} {'x sync':>7}"
    )
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        async with standing_container(args.latency_ms) as url:
            for index, (mode, workers, in_flight, pool) in enumerate(configs):
                path = write_config(
                    Path(tmp),
                    f"run{index}",
                    url=url,
                    mode=mode,
                    rollout_workers=workers,
                    in_flight=in_flight,
                    train_budget=args.train_budget,
                )
                before = await served(url)
                started = time.perf_counter()
                transport = httpx.AsyncHTTPTransport() if pool == "one pool" else None
                proposer = LatencyProposer(args.proposer_ms / 1000)
                await GepaRun(load_config(path), proposer=proposer, container_transport=transport).execute_async()
                seconds = time.perf_counter() - started
                count = await served(url) - before
                rate = count / seconds
                baseline = baseline or rate
                print(
                    f"{mode:<16} {workers:>7} {in_flight:>9} {pool:<12} {count:>7} {seconds:>8.2f} {rate:>11.1f} "
                    f"{rate / baseline:>7.2f}"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--proposer-ms", type=float, default=0.0)
    parser.add_argument("--train-budget", type=int, default=400)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--one-pool", action="store_true", help="also run async configs on one httpx pool")
    anyio.run(main, parser.parse_args())
