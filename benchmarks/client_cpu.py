"""The container client's CPU per rollout: its own path on the plain-HTTP transport against httpx's client.

    .venv/bin/python benchmarks/client_cpu.py [--rollouts 1500] [--rounds 3] [--concurrency 8]

One process, one standing word container (``latency_container.py`` at 0 ms), and per round the same rollouts sent
twice, ``--concurrency`` at once, through two clients on the same transport: ``own`` (what a run uses for an
``http://`` container: requests written and replies read by :meth:`PlainHttpTransport.fetch`) and ``httpx`` (the
same client once a container has set a cookie: httpx's request, response and client layers over the same
transport). Prints this process's CPU per rollout (the container's is the same for both) and rollouts per second,
each round's two paths side by side, so the ratio is measured on one machine at one time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import anyio

from _common import standing_container
from synth_opt.container.client import ContainerClient
from synth_opt.container.wire import RolloutRequest

TASK = {"task_id": "train-1", "question": "q1", "answer": "w1"}
PROMPT = "answer w1 " + "and say nothing else " * 40  # about a kB, as a prompt of a few paragraphs


async def send(url: str, path: str, rollouts: int, concurrency: int, offset: int) -> tuple[float, float]:
    """``rollouts`` rollouts through a fresh client; (CPU ms per rollout, rollouts per second), after a warm-up."""
    async with ContainerClient(url, concurrency=concurrency) as client:
        if path == "httpx":
            client._http.cookies.set("lane", "1")  # as a container that set a cookie: httpx's client from now on
        limiter = anyio.Semaphore(concurrency)

        async def one(number: int) -> None:
            async with limiter:
                request = RolloutRequest(
                    rollout_id=f"r{offset + number}",
                    submission_mode="sync",
                    task_id="train-1",
                    candidate_id="cand-1",
                    candidate={"instruction": PROMPT},
                    policy={"type": "offline"},
                    task=dict(TASK),
                    metadata={},
                )
                await client.rollout(request)

        async def batch(start: int, count: int) -> None:
            async with anyio.create_task_group() as group:
                for number in range(start, start + count):
                    group.start_soon(one, number)

        await batch(0, 100)  # connections made, code warm
        cpu, wall = time.process_time(), time.perf_counter()
        await batch(100, rollouts)
        return (time.process_time() - cpu) / rollouts * 1000, rollouts / (time.perf_counter() - wall)


async def main(args: argparse.Namespace) -> None:
    print(f"{args.rollouts} rollouts a path a round, {args.concurrency} at once, the word container at 0 ms")
    print(f"{'round':>5} {'path':<6} {'cpu ms/rollout':>15} {'rollouts/s':>11}")
    cpu: dict[str, list[float]] = {"own": [], "httpx": []}
    async with standing_container(0, vocabulary=40) as url:
        for round_number in range(1, args.rounds + 1):
            for index, path in enumerate(("own", "httpx")):
                offset = (round_number * 2 + index) * 1_000_000
                per_rollout, rate = await send(url, path, args.rollouts, args.concurrency, offset)
                cpu[path].append(per_rollout)
                print(f"{round_number:>5} {path:<6} {per_rollout:>15.3f} {rate:>11.0f}")
    own, through = statistics.mean(cpu["own"]), statistics.mean(cpu["httpx"])
    print(f"mean cpu ms/rollout: own {own:.3f}, httpx {through:.3f} ({own / through:.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    anyio.run(main, parser.parse_args())
