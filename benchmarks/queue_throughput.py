"""Submit-claim-complete throughput and claim latency of the service's run queue on both backends (a SQLite file
and a PostgreSQL server), with 1, 4 and 8 workers.

The queue substrate alone, without GEPA runs: ``--requests`` requests (each with its own container URL, so any may
run beside any other) are submitted to a fresh queue (a new file; a new database on one throwaway PostgreSQL
cluster on loopback, :mod:`synth_opt.testing.postgres`, with its durability settings on: ``fsync`` and
``synchronous_commit``, as SQLite's ``synchronous=FULL``); then ``--workers`` processes, started together, loop
claim -> start -> complete until nothing is left, each on its own connection (as separate ``gepa run-next`` workers
or services would be). Reported per phase: requests completed per second (from the
moment the workers are released to the last completion), the duration of each ``claim`` call (p50 and p99: the
single claim statement plus any wait for the write lock held by another worker) and the queue wait of each request
(claimed - submitted; they were all submitted before the workers started, so this measures draining). Every claim
must be unique and every request completed, or the script exits non-zero.

    .venv/bin/python benchmarks/queue_throughput.py --requests 2000 --workers 1 4 8
    .venv/bin/python benchmarks/queue_throughput.py --backends postgresql

PostgreSQL needs its server binaries (``make postgres``) and psycopg (the dev extra, or ``.[postgres]``).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from synth_opt.service.queue import open_queue
from synth_opt.testing.postgres import throwaway_postgres

BACKENDS = ("sqlite", "postgresql")

WORKER = """
import json, sys, time
from synth_opt.service.queue import open_queue
claims = []
with open_queue(sys.argv[1]) as queue:
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()
    while True:
        started = time.perf_counter()
        request = queue.claim(sys.argv[2])
        took = time.perf_counter() - started
        if request is None:
            break
        queue.start(request.request_id, request.lease_token)
        queue.complete(request.request_id, lease_token=request.lease_token)
        claims.append([request.request_id, took, time.time()])
print(json.dumps(claims))
"""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def phase(requests: int, workers: int, db: str) -> dict[str, float]:
    submitted: dict[str, float] = {}
    with open_queue(db) as queue:
        for i in range(requests):
            request = queue.submit(run_id=f"r{i}", config_path="/c.toml", container_url=f"http://c{i}.test").request
            submitted[request.request_id] = request.submitted_at
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db, f"w{k}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(workers)
    ]
    for process in processes:
        assert process.stdout is not None
        if process.stdout.readline() != "ready\n":
            raise SystemExit(f"a worker did not start: {process.communicate()[1]}")
    released = time.time()
    outputs = [process.communicate("go\n", timeout=600) for process in processes]
    if any(process.returncode for process in processes):
        raise SystemExit("a worker failed:\n" + "\n".join(err for _, err in outputs))
    claims = [claim for out, _ in outputs for claim in json.loads(out)]
    ids = [claim[0] for claim in claims]
    if len(ids) != requests or set(ids) != set(submitted):
        raise SystemExit(f"{len(ids)} claims ({len(set(ids))} distinct) for {requests} requests")
    durations = [claim[1] for claim in claims]
    waits = [claim[2] - submitted[claim[0]] for claim in claims]
    wall = max(claim[2] for claim in claims) - released
    return {
        "workers": workers,
        "seconds": wall,
        "rate": requests / wall,
        "claim_p50": 1000 * percentile(durations, 50),
        "claim_p99": 1000 * percentile(durations, 99),
        "wait_p50": percentile(waits, 50),
        "wait_p99": percentile(waits, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    args = parser.parse_args()
    print(f"{args.requests} requests, each claimed, started and completed by one of the workers")
    print(
        f"{'backend':<10} {'workers':>7} {'seconds':>8} {'requests/s':>11} {'x first':>7} {'claim p50 ms':>12} "
        f"{'claim p99 ms':>12} {'wait p50 s':>10} {'wait p99 s':>10}"
    )
    first = None
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        server = stack.enter_context(throwaway_postgres(durable=True)) if "postgresql" in args.backends else None
        for workers in args.workers:  # the backends side by side at each worker count (a noisy machine)
            for backend in args.backends:
                if backend == "sqlite":
                    db = str(Path(tmp) / f"queue-{workers}.sqlite")
                else:
                    assert server is not None
                    db = server.create_database()
                row = phase(args.requests, workers, db)
                first = first or row["rate"]
                print(
                    f"{backend:<10} {workers:>7} {row['seconds']:>8.2f} {row['rate']:>11.1f} "
                    f"{row['rate'] / first:>7.2f} {row['claim_p50']:>12.2f} {row['claim_p99']:>12.2f} "
                    f"{row['wait_p50']:>10.2f} {row['wait_p99']:>10.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
