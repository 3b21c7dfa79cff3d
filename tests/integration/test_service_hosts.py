"""The service API and a worker that share only the PostgreSQL queue: the worker is a ``gepa run-next`` process in
a directory of its own (standing for another host), the API the litestar app in this process. The request's event
stream reaches the API through the database while the run goes, every line of the attempt in order and then the
``end`` event, and still does once the run directory is gone; the run summary answers ``GET /runs/{id}``; a cancel
asked of the API stops the run on the other host; a PostgreSQL restart mid-run costs the run nothing."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from litestar import Litestar
from litestar.testing import AsyncTestClient

from synth_opt.service.app import create_app
from synth_opt.testing.postgres import PostgresServer
from tests.integration.test_service_app import config


def data_lines(stream: str) -> list[str]:
    return [line.removeprefix("data: ") for line in stream.splitlines() if line.startswith("data: ")]


Client = AsyncTestClient[Litestar]


@asynccontextmanager
async def api_and_request(postgres_url: str, tmp_path: Path, **run: Any) -> AsyncIterator[tuple[Client, str]]:
    """The API in this process over the queue, and one request it queued (``run``: the tiny run's config options)
    for a worker elsewhere to claim (``auto_start: false``)."""
    configs = tmp_path / "configs"
    configs.mkdir()
    config(configs, **run)
    app = create_app(
        postgres_url, worker_id="api", config_root=configs, allow_commands=True, auto_start=False, poll_seconds=0.2
    )
    async with AsyncTestClient(app, timeout=120) as client:
        created = await client.post("/runs", json={"config_path": "gepa.toml", "auto_start": False})
        assert created.status_code == 201, created.text
        yield client, created.json()["request_id"]


@asynccontextmanager
async def worker_on_host_b(postgres_url: str, tmp_path: Path) -> AsyncIterator[tuple[Process, Path]]:
    """``gepa run-next`` in a directory of its own, sharing only the database URL; its output goes to a file (not a
    pipe: nothing reads a pipe while a stream is followed). Killed on the way out if it is still running."""
    host_b, log = tmp_path / "host-b", tmp_path / "host-b.log"
    host_b.mkdir()
    command = [sys.executable, "-m", "synth_opt", "gepa", "run-next", "--db", postgres_url]
    command += ["--worker-id", "host-b", "--config-root", str(tmp_path / "configs"), "--allow-commands"]
    with log.open("w") as output:
        worker = await anyio.open_process(command, cwd=host_b, stdout=output, stderr=output)
    try:
        yield worker, log
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


async def ended(worker: Process, log: Path, code: int) -> None:
    with anyio.fail_after(120):
        await worker.wait()
    assert worker.returncode == code, log.read_text()[-3000:]


async def until_running(client: Client, request_id: str) -> None:
    with anyio.fail_after(60):
        while True:  # polled through the API: the run starts on the other host
            if (await client.get(f"/runs/{request_id}")).json()["status"] == "running":
                return
            await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_a_run_on_another_host_streams_its_events_through_the_database(postgres_url: str, tmp_path: Path) -> None:
    async with (
        api_and_request(postgres_url, tmp_path, run_id="remote") as (client, request_id),
        worker_on_host_b(postgres_url, tmp_path) as (worker, log),
    ):
        streamed = (await client.get(f"/runs/{request_id}/events")).text  # opened as the worker starts: live
        await ended(worker, log, 0)
        request = (await client.get(f"/runs/{request_id}")).json()
        assert request["status"] == "completed" and request["lease_owner"] == "host-b", request["error"]
        run_dir = Path(request["manifest_path"]).parent
        written = [line for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
        shutil.rmtree(run_dir)  # from here on only the database holds the stream
        again = (await client.get(f"/runs/{request_id}/events")).text
        summary = (await client.get(f"/runs/{request_id}")).json()

    live = data_lines(streamed)
    end = {"request_id": request_id, "status": "completed"}
    assert json.loads(live[-1]) == end and json.loads(data_lines(again)[-1]) == end
    assert live[:-1] == written == data_lines(again)[:-1]  # every line of the attempt, in order, live and after
    types = [json.loads(line)["type"] for line in written]
    assert types[0] == "run.state" and "run.finished" in types
    assert summary["best_candidate_id"] == request["best_candidate_id"] and summary["result"]["stop_reason"]


@pytest.mark.anyio
async def test_a_cancel_through_the_api_stops_a_run_on_another_host(postgres_url: str, tmp_path: Path) -> None:
    # its proposer never finishes: only a cancel ends the run
    async with (
        api_and_request(postgres_url, tmp_path, run_id="endless", proposer="trickle") as (client, request_id),
        worker_on_host_b(postgres_url, tmp_path) as (worker, log),
    ):
        await until_running(client, request_id)
        asked = await client.post(f"/runs/{request_id}/cancel", json={"reason": "not needed"})
        assert asked.status_code == 200 and asked.json()["cancel_requested"]
        await ended(worker, log, 1)  # the worker on the other host saw the cancel through the database
        request = (await client.get(f"/runs/{request_id}")).json()
        events = (await client.get(f"/runs/{request_id}/events")).text
    assert request["status"] == "cancelled" and request["lease_owner"] == "host-b"
    assert request["error"]["code"] == "run_cancelled"
    assert json.loads(data_lines(events)[-1]) == {"request_id": request_id, "status": "cancelled"}


@pytest.mark.anyio
async def test_a_run_on_another_host_survives_a_postgresql_restart(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    """The worker's queue connection drops mid-run (its heartbeats, event appends and final write reconnect): the
    run completes on its first attempt and every line of its feed reaches the stream."""
    async with (
        api_and_request(postgres_url, tmp_path, run_id="steady", max_train_rollouts=80) as (client, request_id),
        worker_on_host_b(postgres_url, tmp_path) as (worker, log),
    ):
        await until_running(client, request_id)
        await anyio.to_thread.run_sync(postgres_server.restart)  # every connection drops, the API's too
        await ended(worker, log, 0)
        request = (await client.get(f"/runs/{request_id}")).json()
        streamed = (await client.get(f"/runs/{request_id}/events")).text
        written = Path(request["manifest_path"]).with_name("events.jsonl").read_text().splitlines()
    assert request["status"] == "completed" and request["attempts"] == 1, request["error"]
    assert data_lines(streamed)[:-1] == [line for line in written if line.strip()]
