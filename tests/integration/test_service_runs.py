"""The service end to end, every part a real process: ``synth-opt gepa service`` on loopback (its own background
worker), ``synth-opt gepa run-next`` workers, tiny real containers (launched by a run, or standing), the fake
app-server proposer.

- three submitted runs, spread over the service's worker and two ``run-next`` processes, all complete, and each
  request carries its imported run summary (workspace, manifest, best candidate, cost, usage, the full result);
- two requests for one container URL never run at once, while a request for another URL runs beside them.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_service_app import config
from tests.integration.test_service_server import free_port

TINY = Path(__file__).with_name("tiny_container.py")
TERMINAL = {"completed", "failed", "cancelled"}
RESULT_FIELDS = {
    "best_candidate",
    "manifest_path",
    "event_feed_path",
    "workspace_db_path",
    "artifact_refs",
    "cost_usd",
    "usage",
    "state_history",
    "rollouts_used",
    "stop_reason",
}


def write_config(
    root: Path, run_id: str, *, url: str | None = None, proposer: str = "ok", max_train_rollouts: int = 16
) -> str:
    """The name under ``root`` of a tiny run's config (:func:`~tests.integration.test_service_app.config`)."""
    return config(
        root, f"{run_id}.toml", run_id=run_id, url=url, proposer=proposer, max_train_rollouts=max_train_rollouts
    ).name


def synth_opt(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "synth_opt", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_healthy(url: str, process: subprocess.Popen[str], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"{url} never answered /health"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM (then SIGKILL after 15 s); returns what the process wrote on stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.communicate(timeout=15)[1] or ""
        except subprocess.TimeoutExpired:
            process.kill()
    return process.communicate()[1] or ""


@contextmanager
def service(
    root: Path, containers: int = 0, db: str | None = None
) -> Iterator[tuple[httpx.Client, list[str], list[str]]]:
    """``synth-opt gepa service`` on a free loopback port (its background worker is ``service-worker``; its queue
    ``db``, by default ``root/service.sqlite``) and ``containers`` standing tiny containers, started side by side:
    yields a client, the containers' URLs, and the service's exit code and stderr once it has stopped (SIGTERM)."""
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(containers)]
    standing = [
        subprocess.Popen(
            [sys.executable, str(TINY), url.rsplit(":", 1)[1]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for url in urls
    ]
    port = free_port()
    server = synth_opt(
        "gepa",
        "service",
        "--db",
        db or str(root / "service.sqlite"),
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-id",
        "service-worker",
        "--config-root",
        str(root),
        "--allow-commands",
        cwd=root,
    )
    ended: list[str] = []
    try:
        for url, process in [*zip(urls, standing, strict=True), (f"http://127.0.0.1:{port}", server)]:
            wait_healthy(url, process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client, urls, ended
    finally:
        log = stop(server)
        ended.extend([str(server.returncode), log[-3000:]])
        for process in standing:
            stop(process)


def submit(client: httpx.Client, config_path: str, priority: int = 0) -> str:
    created = client.post("/runs", json={"config_path": config_path, "priority": priority})
    assert created.status_code == 201, created.text
    request_id: str = created.json()["request_id"]
    return request_id


def wait_for(client: httpx.Client, request_id: str, statuses: set[str], within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        request: dict[str, Any] = client.get(f"/runs/{request_id}").json()
        if request["status"] in statuses:
            return request
        assert time.monotonic() < deadline, f"{request_id} is still {request['status']}, not {statuses}"
        time.sleep(0.1)


def finished_worker(worker: subprocess.Popen[str], within: float = 60) -> dict[str, Any] | None:
    """The request a ``run-next`` worker printed (None when it found nothing to claim); it must exit 0."""
    out, err = worker.communicate(timeout=within)
    assert worker.returncode == 0, err[-3000:]
    request: dict[str, Any] | None = json.loads(out)["request"]
    return request


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_three_runs_over_three_worker_processes_complete_with_their_summaries(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """On either queue backend: the service's worker and two ``run-next`` processes share only ``--db``."""
    db = str(tmp_path / "service.sqlite") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    configs = [write_config(tmp_path, run_id) for run_id in ("alpha", "beta", "gamma")]
    with service(tmp_path, db=db) as (client, _, ended):
        ids = [submit(client, path) for path in configs]
        workers = [
            synth_opt("gepa", "run-next", "--db", db, "--worker-id", name, cwd=tmp_path)
            for name in ("run-next-1", "run-next-2")
        ]
        try:
            printed = [finished_worker(worker) for worker in workers]
        finally:
            for worker in workers:
                stop(worker)
        requests = [wait_for(client, request_id, TERMINAL) for request_id in ids]
        listed = client.get("/runs").json()["requests"]
        status = client.get("/status").json()
    assert ended[0] == "0", ended[1]  # SIGTERM with nothing running: a clean exit

    for shown in printed:  # a run-next worker either ran one of ours to completion or found nothing claimable
        assert shown is None or (shown["request_id"] in ids and shown["status"] == "completed"), shown
    for run_id, request in zip(("alpha", "beta", "gamma"), requests, strict=True):
        assert request["status"] == "completed", request["error"]
        assert request["run_id"] == run_id and request["error"] is None and request["attempts"] == 1
        assert request["lease_owner"] in {"service-worker", "run-next-1", "run-next-2"}
        assert request["started_at"] <= request["finished_at"]
        manifest_path = Path(request["manifest_path"])
        assert manifest_path == tmp_path / "runs" / run_id / "result_manifest.json"
        assert Path(request["workspace_db_path"]) == tmp_path / "runs" / run_id / "workspace.sqlite"
        assert Path(request["workspace_db_path"]).is_file()
        manifest = json.loads(manifest_path.read_text())
        assert request["best_candidate_id"] == manifest["best_candidate_id"] and request["best_candidate_id"]
        assert request["cost_usd"] == manifest["cost_usd"] > 0  # the tiny container bills each rollout
        assert request["usage"] == manifest["usage"] and request["usage"]["rollout"]["calls"] > 0
        result = request["result"]
        assert RESULT_FIELDS <= set(result), RESULT_FIELDS - set(result)
        assert result["manifest_path"] == request["manifest_path"] and result["usage"] == request["usage"]
        assert result["stop_reason"] == manifest["stop_reason"] == "max_train_rollouts"
        assert result["best_candidate"] == manifest["best_candidate"]
    assert sorted(r["request_id"] for r in listed) == sorted(ids)
    assert all("result" not in r and r["status"] == "completed" for r in listed)  # the list leaves the result out
    assert status["run_request_status_counts"] == {"completed": 3}
    assert set(status["operation_status_counts"]) == {"succeeded"}  # no refused (fenced) write, no lost lease


def test_two_requests_for_one_container_url_never_run_at_once(tmp_path: Path) -> None:
    db = tmp_path / "service.sqlite"
    with service(tmp_path, containers=2) as (client, (shared, other), ended):
        # the first holds the shared container until cancelled: its proposer never finishes a reply
        holder = submit(client, write_config(tmp_path, "holder", url=shared, proposer="trickle"), priority=2)
        assert wait_for(client, holder, {"running", *TERMINAL})["status"] == "running"
        waiting = submit(client, write_config(tmp_path, "waiting", url=shared), priority=1)
        beside = submit(client, write_config(tmp_path, "beside", url=other))
        # two free workers: one takes the request for the other URL, the other finds nothing it may claim, though
        # a request of higher priority is queued (one names the database by path, the other by a sqlite:/// URL)
        workers = [
            synth_opt("gepa", "run-next", "--db", location, "--worker-id", name, cwd=tmp_path)
            for name, location in (("run-next-1", str(db)), ("run-next-2", f"sqlite:///{db.name}"))
        ]
        try:
            printed = [finished_worker(worker) for worker in workers]
        finally:
            for worker in workers:
                stop(worker)
        assert sorted(str(shown and shown["request_id"]) for shown in printed) == sorted([beside, "None"]), printed
        assert client.get(f"/runs/{waiting}").json()["status"] == "queued"
        assert client.get(f"/runs/{holder}").json()["status"] == "running"
        # once the holder ends, the service's own worker runs the waiting request
        assert client.post(f"/runs/{holder}/cancel").status_code == 200
        final = {request_id: wait_for(client, request_id, TERMINAL) for request_id in (holder, waiting, beside)}
    assert ended[0] == "0", ended[1]

    assert final[holder]["status"] == "cancelled" and final[holder]["lease_owner"] == "service-worker"
    assert final[waiting]["status"] == "completed", final[waiting]["error"]
    assert final[beside]["status"] == "completed", final[beside]["error"]
    assert final[waiting]["container_url"] == final[holder]["container_url"] == shared
    # the intervals the shared container was held (claim to end) do not overlap; the other URL's ran inside one
    first, second = final[holder], final[waiting]
    assert first["leased_at"] < first["finished_at"] <= second["leased_at"] < second["finished_at"]
    assert first["leased_at"] < final[beside]["leased_at"] < final[beside]["finished_at"] < first["finished_at"]
    conn = sqlite3.connect(db)
    leases = conn.execute(
        "SELECT request_id, status, acquired_at, released_at FROM resource_leases "
        "WHERE resource_kind = 'container_url' AND resource_key = ? ORDER BY acquired_at",
        (shared,),
    ).fetchall()
    claims = conn.execute("SELECT request_id, worker_id FROM operations WHERE kind = 'claim'").fetchall()
    conn.close()
    assert [(row[0], row[1]) for row in leases] == [(holder, "released"), (waiting, "released")]
    assert leases[0][3] <= leases[1][2]
    assert sorted(claims) == sorted([(holder, "service-worker"), (waiting, "service-worker"), *_beside(final)])


def _beside(final: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    (request,) = [r for r in final.values() if r["run_id"] == "beside"]
    assert request["lease_owner"] in {"run-next-1", "run-next-2"}
    return [(request["request_id"], request["lease_owner"])]
