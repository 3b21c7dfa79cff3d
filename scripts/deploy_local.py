#!/usr/bin/env python3.11
"""The deployment of ``docs/deploy.md`` on one machine, as processes (what a ``docker compose`` file would start):

    services:                    what runs                                   stands for
      postgres                   a throwaway PostgreSQL cluster on loopback   the team's database
      container-1 ... 2N         the Banking77 container, standing            two replicas of it per run
      api                        synth-opt gepa service --worker-id api      the API host (it runs requests too)
      worker-b, worker-c         synth-opt gepa service --worker-id host-*   two worker hosts

Every synth-opt process shares only the database URL and the container URLs; each keeps its run directories in
a folder of its own (``SYNTH_OPTIMIZERS_OUTPUT_DIR``), as separate hosts keep them on their own disks. Each run
gets two replicas of its own: two live requests never share a container URL, so runs over the same replicas would
take turns. The script
submits ``--runs`` small Banking77 optimizations (offline: the keyword policy and the offline proposer) through the
API, follows the first one's event stream through the API (the lines come through the database, from whichever
host runs it), prints each request's summary (which host ran it, where its run directory is, its best score) and
stops everything. Exit 0 when every request completed.

    .venv/bin/python scripts/deploy_local.py               # needs PostgreSQL's server binaries (make postgres)
    .venv/bin/python scripts/deploy_local.py --runs 3 --keep ./deploy-demo
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from synth_opt.container.launch import free_loopback_port
from synth_opt.testing.postgres import throwaway_postgres

ROOT = Path(__file__).resolve().parents[1]
BANKING77 = ROOT / "cookbooks" / "banking77"
HOSTS = ("api", "host-b", "host-c")
TERMINAL = {"completed", "failed", "cancelled"}


def config(urls: list[str], run_id: str) -> str:
    """A small offline Banking77 optimization over the container replicas."""
    return f"""
[run]
run_id = "{run_id}"
output_dir = "runs"  # each worker host replaces it with its own folder (SYNTH_OPTIMIZERS_OUTPUT_DIR)

[container]
urls = {json.dumps(urls)}
request_timeout_seconds = 30

[dataset]
train_ids = {{count = 400}}
pareto_ids = {{count = 30}}
heldout_ids = {{count = 60}}

[candidate]
target_modules = ["system_prompt"]

[policy]
type = "keyword"

[proposer]
backend = "codex_app_server"
command = [{sys.executable!r}, {str(BANKING77 / "offline_proposer.py")!r}]
cost_per_million_input_tokens = 0.0
cost_per_million_output_tokens = 0.0
max_prompt_tokens = 32000

[gepa]
max_train_rollouts = 400
minibatch_size = 10
candidate_selector = "current_best"

[gepa.pipeline]
mode = "async_pipelined"

[cache]
mode = "off"
"""


def wait_for(url: str, process: subprocess.Popen[bytes], what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode} before answering {url}/health")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not answer {url}/health within {within:g} s")
        time.sleep(0.1)


@contextmanager
def process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` running, its output in ``log``; SIGTERM (then SIGKILL) on exit."""
    with log.open("wb") as output:
        started = subprocess.Popen(argv, stdout=output, stderr=output, env={**os.environ, **(env or {})})
    try:
        yield started
    finally:
        if started.poll() is None:
            started.send_signal(signal.SIGTERM)
            try:
                started.wait(timeout=20)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait()


def follow(api: str, request_id: str) -> int:
    """Print the request's events as they come (through the API, from the database); the number of lines."""
    lines = 0
    with httpx.stream("GET", f"{api}/runs/{request_id}/events", timeout=600) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line.removeprefix("data: "))
            kind = event.get("type")
            if kind in ("run.state", "acceptance.decided", "search.stopped", "run.finished"):
                print(f"  [{request_id}] {event.get('message', kind)}", flush=True)
            lines += "type" in event
    return lines


def main(args: argparse.Namespace) -> int:
    folder = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="synth-opt-deploy-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return deploy(folder, args)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def deploy(folder: Path, args: argparse.Namespace) -> int:
    configs, logs = folder / "configs", folder / "logs"
    configs.mkdir(exist_ok=True)
    logs.mkdir(exist_ok=True)
    with ExitStack() as stack:
        database = stack.enter_context(throwaway_postgres()).url
        print(f"postgres    {database}", flush=True)
        replicas = []
        for n in range(1, 2 * args.runs + 1):  # two replicas a run: two requests never share a container URL
            port = free_loopback_port()
            argv = [sys.executable, str(BANKING77 / "container.py"), "--port", str(port)]
            started = stack.enter_context(process(argv, logs / f"container-{n}.log"))
            replicas.append((f"http://127.0.0.1:{port}", started))
        for n, (url, started) in enumerate(replicas, start=1):
            wait_for(url, started, f"container-{n}")
            print(f"container-{n} {url}", flush=True)
        api = ""
        for host in HOSTS:
            port, runs = free_loopback_port(), (folder / "hosts" / host / "runs").resolve()
            runs.mkdir(parents=True, exist_ok=True)
            argv = [sys.executable, "-m", "synth_opt", "gepa", "service", "--db", database, "--worker-id", host]
            argv += ["--bind", f"127.0.0.1:{port}", "--config-root", str(configs), "--runs-root", str(runs)]
            argv += ["--allow-commands"]  # the config starts the offline proposer
            env = {"SYNTH_OPTIMIZERS_OUTPUT_DIR": str(runs)}
            started = stack.enter_context(process(argv, logs / f"{host}.log", env))
            wait_for(f"http://127.0.0.1:{port}", started, host)
            print(f"{host:<11} http://127.0.0.1:{port} (runs in {runs})", flush=True)
            api = api or f"http://127.0.0.1:{port}"
        ids = []
        for n in range(args.runs):
            name = f"banking77-{n}"
            (configs / f"{name}.toml").write_text(config([url for url, _ in replicas[2 * n : 2 * n + 2]], name))
            created = httpx.post(f"{api}/runs", json={"config_path": f"{name}.toml", "auto_start": False}, timeout=30)
            if created.status_code != 201:
                raise SystemExit(f"submitting {name} failed: {created.status_code} {created.text}")
            ids.append(created.json()["request_id"])
        print(f"submitted {len(ids)} runs through {api}; following {ids[0]}:", flush=True)
        streamed = follow(api, ids[0])
        failed = 0
        for request_id in ids:
            deadline = time.monotonic() + 600
            while (request := httpx.get(f"{api}/runs/{request_id}", timeout=30).json())["status"] not in TERMINAL:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{request_id} is still {request['status']} after 600 s")
                time.sleep(0.2)
            result = request.get("result") or {}
            failed += request["status"] != "completed"
            print(
                f"{request_id} {request['run_id']}: {request['status']} on {request['lease_owner']}, best "
                f"{result.get('best_train_score')}, run directory {Path(request['manifest_path'] or '.').parent}",
                flush=True,
            )
        print(f"{streamed} events of {ids[0]} streamed through the database", flush=True)
    return 1 if failed else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="optimizations to submit")
    parser.add_argument("--keep", help="a folder for the configs, logs and run directories (default: a temp one)")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main(parse_args()))
