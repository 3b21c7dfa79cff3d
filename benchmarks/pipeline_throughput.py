"""Rollouts per second: sync_serial against async_pipelined with 1, 2, 4, 8 and 16 rollout workers.

A standing container in its own process (``latency_container.py``) with a fixed per-rollout latency, and an
in-process proposer with a fixed latency (``GepaRun(proposer=...)``). Rollouts/s = rollouts the container served
÷ wall time of ``execute()``. Every configuration runs in this one process, one after the other, so the ratios
are side by side.

``--transports`` names the container client's transports to run every ``async_pipelined`` configuration with, one
right after the other: ``plain`` (the default for an ``http://`` container:
``synth_opt.container.plain_http.PlainHttpTransport``), ``pools`` (httpcore in small pools of 4 connections, what an
``https://`` container gets: ``container_transport(n, scheme="https")``) and ``one-pool`` (a single httpx pool,
``httpx.AsyncHTTPTransport()``). Each row also shows the optimizer process's CPU time per rollout served
(``time.process_time``: the client's own cost, whatever the container's).

    .venv/bin/python benchmarks/pipeline_throughput.py --latency-ms 50 --proposer-ms 0 --train-budget 400
    .venv/bin/python benchmarks/pipeline_throughput.py --latency-ms 5 --proposer-ms 0 --train-budget 2000 \
        --transports plain pools one-pool

``--replicas 1 2 4`` measures ``[container] urls`` instead: ``async_pipelined`` with ``--replica-workers`` (16)
rollout workers against 1, 2 and 4 standing replicas of the word container at ``--latency-ms`` each, every replica
serving at most ``--replica-concurrency`` (2) rollouts at once, so one replica is the limit; then a row with the
largest count of replicas where the first is ``--slow-factor`` (4) times slower than the others, to show the
balancer routing around it. Each row reports rollouts/s, how many rollouts each replica served, and whether its
decisions (the normalized event feed, without the config line that names the URLs) equal the first row's.

    .venv/bin/python benchmarks/pipeline_throughput.py --replicas 1 2 4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx

from _common import LatencyProposer, served, standing_container, write_config
from synth_opt import GepaRun, load_config
from synth_opt.container.connections import container_transport

TRANSPORTS: dict[str, Callable[[int], httpx.AsyncBaseTransport | None]] = {
    "plain": lambda workers: None,  # the client's own choice for an http:// container
    "pools": lambda workers: container_transport(workers, scheme="https"),
    "one-pool": lambda workers: httpx.AsyncHTTPTransport(),
}


async def main(args: argparse.Namespace) -> None:
    pools = tuple(args.transports)
    configs = [("sync_serial", 1, 1, pools[0])] + [
        ("async_pipelined", w, args.in_flight, pool) for w in (1, 2, 4, 8, 16) for pool in pools
    ]
    print(
        f"container latency {args.latency_ms} ms, proposer latency {args.proposer_ms} ms, "
        f"train budget {args.train_budget}, {args.in_flight} candidates in flight (async)"
    )
    print(
        f"{'mode':<16} {'workers':>7} {'in flight':>9} {'transport':<10} {'served':>7} {'seconds':>8} "
        f"{'rollouts/s':>11} {'x sync':>7} {'cpu ms/rollout':>14}"
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
                transport = TRANSPORTS[pool](workers)
                proposer = LatencyProposer(args.proposer_ms / 1000)
                started, cpu = time.perf_counter(), time.process_time()
                await GepaRun(load_config(path), proposer=proposer, container_transport=transport).execute_async()
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
                count = await served(url) - before
                rate = count / seconds
                baseline = baseline or rate
                print(
                    f"{mode:<16} {workers:>7} {in_flight:>9} {pool:<10} {count:>7} {seconds:>8.2f} {rate:>11.1f} "
                    f"{rate / baseline:>7.2f} {cpu / count * 1000:>14.2f}",
                    flush=True,
                )


def decisions(feed: str | None) -> list[str]:
    """A run's normalized feed without the config line (it names the container URLs)."""
    assert feed is not None
    return [line for line in Path(feed).read_text().splitlines() if json.loads(line)["type"] != "run.config"]


async def replicas(args: argparse.Namespace) -> None:
    most = max(args.replicas)
    rows = [(f"{n} replica{'s' if n > 1 else ''}", n, False) for n in args.replicas]
    rows.append((f"{most}, first {args.slow_factor:g}x slower", most, True))
    print(
        f"async_pipelined, {args.replica_workers} rollout workers, {args.in_flight} candidates in flight, train budget "
        f"{args.train_budget}; replicas at {args.latency_ms:g} ms, each serving at most {args.replica_concurrency} "
        f"rollouts at once; proposer {args.proposer_ms:g} ms"
    )
    header = f"{'replicas':<24} {'served':>7} {'seconds':>8} {'rollouts/s':>11} {'x one':>6}  {'per replica':<22}"
    print(f"{header} decisions")
    first: list[str] | None = None
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        async with AsyncExitStack() as stack:
            fast = [
                await stack.enter_async_context(
                    standing_container(args.latency_ms, concurrency=args.replica_concurrency)
                )
                for _ in range(most)
            ]
            slow = await stack.enter_async_context(
                standing_container(args.latency_ms * args.slow_factor, concurrency=args.replica_concurrency)
            )
            for index, (label, count, with_slow) in enumerate(rows):
                urls = [slow, *fast[: count - 1]] if with_slow else fast[:count]
                path = write_config(
                    Path(tmp),
                    f"replicas{index}",
                    url=urls[0],
                    urls=urls,
                    mode="async_pipelined",
                    rollout_workers=args.replica_workers,
                    in_flight=args.in_flight,
                    train_budget=args.train_budget,
                )
                before = [await served(url) for url in urls]
                started = time.perf_counter()
                proposer = LatencyProposer(args.proposer_ms / 1000)
                result = await GepaRun(load_config(path), proposer=proposer).execute_async()
                seconds = time.perf_counter() - started
                each = [await served(url) - was for url, was in zip(urls, before, strict=True)]
                rate = sum(each) / seconds
                baseline = baseline or rate
                mine = decisions(result.normalized_event_feed_path)
                first = first or mine
                print(
                    f"{label:<24} {sum(each):>7} {seconds:>8.2f} {rate:>11.1f} {rate / baseline:>6.2f}  "
                    f"{' '.join(str(n) for n in each):<22} {'same' if mine == first else 'DIFFERENT'}",
                    flush=True,
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--proposer-ms", type=float, default=0.0)
    parser.add_argument("--train-budget", type=int, default=400)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument(
        "--transports",
        nargs="+",
        choices=list(TRANSPORTS),
        default=["plain"],
        help="the container client's transports to run every async config with (plain: the http:// default)",
    )
    parser.add_argument("--replicas", type=int, nargs="+", help="measure [container] urls with these replica counts")
    parser.add_argument("--replica-workers", type=int, default=16, help="rollout workers of the replica rows")
    parser.add_argument("--replica-concurrency", type=int, default=2, help="rollouts each replica serves at once")
    parser.add_argument("--slow-factor", type=float, default=4.0, help="how much slower the slow replica is")
    arguments = parser.parse_args()
    anyio.run(replicas if arguments.replicas else main, arguments)
