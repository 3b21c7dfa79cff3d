"""Requests per second and submit-to-completed latency of the standing service, with 1 worker and with 4.

A worker is one ``synth-opt gepa service`` process (its background worker); all of a phase's services share one
queue database, and every request is submitted through the first one's ``POST /runs``, all at once. Each request
is a tiny real GEPA run: its own config and run id, a standing ``latency_container.py`` (``--containers`` of
them; request *i* uses container *i* mod that number, since one container URL admits one running request at a
time), the project's fake app-server proposer (a real subprocess speaking the codex app-server protocol, started
per proposal), ``--pareto`` rows scored for the seed, then proposals while ``--train-budget`` allows (one at the
default). Latency is ``finished_at - submitted_at`` of each request, as the queue recorded them; throughput is the
number completed ÷ (last ``finished_at`` - first ``submitted_at``). Every phase runs in this one invocation against
the same containers, one after the other, so the numbers are side by side.

    .venv/bin/python benchmarks/service_throughput.py --requests 40 --workers 1 4
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx

from _common import standing_container


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(folder: Path, name: str, *, url: str, train_budget: int, pareto: int) -> str:
    (folder / f"{name}.toml").write_text(
        f"""
[run]
run_id = "{name}"
output_dir = "runs"

[container]
url = "{url}"

[dataset]
train_ids = {{count = 200}}
pareto_ids = {{count = {pareto}}}
heldout_ids = []

[proposer]
backend = "codex_app_server"
command = [{sys.executable!r}, "-m", "synth_opt.testing.fake_app_server", "--mode", "ok"]

[gepa]
max_train_rollouts = {train_budget}
minibatch_size = 2

[cache]
mode = "off"
""",
        encoding="utf-8",
    )
    return f"{name}.toml"


def start_service(folder: Path, worker: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = ["gepa", "service", "--db", str(folder / "service.sqlite"), "--bind", f"127.0.0.1:{port}"]
    command.append("--allow-commands")  # the benchmark's configs launch their container and proposer
    process = subprocess.Popen(
        [sys.executable, "-m", "synth_opt", *command, "--worker-id", f"worker-{worker}", "--config-root", str(folder)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=(folder / f"service-{worker}.log").open("wb"),
        start_new_session=True,
    )
    return process, f"http://127.0.0.1:{port}"


async def wait_healthy(client: httpx.AsyncClient, url: str, process: subprocess.Popen[bytes]) -> None:
    with anyio.fail_after(60):
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the service at {url} exited with {process.returncode}; see its log")
            try:
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await anyio.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


async def phase(args: argparse.Namespace, urls: list[str], workers: int, folder: Path) -> dict[str, Any]:
    paths = [
        write_config(folder, f"req{i:03d}", url=urls[i % len(urls)], train_budget=args.train_budget, pareto=args.pareto)
        for i in range(args.requests)
    ]
    services = [start_service(folder, k) for k in range(workers)]
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for process, url in services:
                await wait_healthy(client, url, process)
            entry = services[0][1]
            for path in paths:
                created = await client.post(f"{entry}/runs", json={"config_path": path})
                if created.status_code != 201:
                    raise SystemExit(f"POST /runs {path}: {created.status_code} {created.text}")
            with anyio.fail_after(args.timeout):
                while True:
                    counts = (await client.get(f"{entry}/status")).json()["run_request_status_counts"]
                    if sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled")) == args.requests:
                        break
                    await anyio.sleep(0.2)
    finally:
        for process, _ in services:
            stop(process)
    conn = sqlite3.connect(folder / "service.sqlite")
    rows = conn.execute(
        "SELECT status, submitted_at, leased_at, started_at, finished_at, lease_owner, error_json, "
        "json_extract(result_json, '$.rollouts_used.train') FROM run_requests"
    ).fetchall()
    conn.close()
    done = [row for row in rows if row[0] == "completed"]
    failed = [json.loads(row[6])["message"] for row in rows if row[0] != "completed" and row[6]]
    if failed:
        print(f"  {len(failed)} request(s) did not complete; first: {failed[0]}", file=sys.stderr)
    latency = [row[4] - row[1] for row in done]
    wall = max(row[4] for row in rows) - min(row[1] for row in rows)
    return {
        "workers": workers,
        "completed": len(done),
        "failed": len(rows) - len(done),
        "seconds": wall,
        "rate": len(done) / wall,
        "p50": percentile(latency, 50),
        "p99": percentile(latency, 99),
        "wait_p50": percentile([row[2] - row[1] for row in done], 50),
        "run_p50": percentile([row[4] - row[3] for row in done], 50),
        "owners": len({row[5] for row in done}),
        "rollouts": sorted({row[7] for row in done}),
    }


async def main(args: argparse.Namespace) -> None:
    print(
        f"{args.requests} requests submitted at once; each a run with a train budget of {args.train_budget} "
        f"({args.pareto} pareto rows, minibatch 2, fake app-server proposer) against one of {args.containers} "
        f"standing containers at {args.latency_ms} ms per rollout; latency = submitted -> completed, wait = "
        "submitted -> claimed, run = started -> completed (seconds)"
    )
    header = (
        f"{'workers':>7} {'done':>5} {'failed':>6} {'seconds':>8} {'requests/s':>11} {'x first':>7} "
        f"{'latency p50':>11} {'latency p99':>11} {'wait p50':>9} {'run p50':>8} {'ran on':>6}  train rollouts/run"
    )
    print(header)
    baseline = None
    async with AsyncExitStack() as stack:
        urls = [await stack.enter_async_context(standing_container(args.latency_ms)) for _ in range(args.containers)]
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as tmp:
                row = await phase(args, urls, workers, Path(tmp))
            baseline = baseline or row["rate"]
            print(
                f"{row['workers']:>7} {row['completed']:>5} {row['failed']:>6} {row['seconds']:>8.2f} "
                f"{row['rate']:>11.2f} {row['rate'] / baseline:>7.2f} {row['p50']:>11.2f} {row['p99']:>11.2f} "
                f"{row['wait_p50']:>9.2f} {row['run_p50']:>8.2f} {row['owners']:>6}  {row['rollouts']}",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--containers", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--train-budget", type=int, default=14, help="at the default: the seed and one proposal")
    parser.add_argument("--pareto", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a phase may take")
    started = time.perf_counter()
    anyio.run(main, parser.parse_args())
    print(f"total {time.perf_counter() - started:.1f} s")
