"""The queue under real worker processes, on both backends (a SQLite file, a real PostgreSQL server):

- 4 worker processes share 200 requests: each is claimed exactly once (attempt 1) and completed by its claimant;
- a worker SIGKILLed while it holds a lease: ``recover()`` requeues the request once the lease has expired, the
  dead worker's late write (its fencing token) is refused, and the next claim is attempt 2;

and on PostgreSQL alone:

- a worker that holds a lease through a server restart reconnects, keeps heartbeating and completes its request
  (attempt 1, nothing refused); one whose lease expired while the server was down (and was recovered) has its
  next heartbeat refused and stops, and the request is queued again;
- an idle worker waiting for work wakes on another process's submission (``LISTEN``/``NOTIFY``), long before its
  poll interval;
- an unreachable server is a :class:`QueueUnavailableError` naming the URL without its password.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest

from synth_opt.errors import LeaseLostError
from synth_opt.service.errors import QueueUnavailableError
from synth_opt.service.functions import (
    workspace_cancel_run_request,
    workspace_claim_next_run_request,
    workspace_complete_run_request,
    workspace_heartbeat_run_request,
    workspace_recover,
    workspace_start_run_request,
    workspace_submit_run_request,
)
from synth_opt.service.queue import RequestStatus, open_queue
from synth_opt.testing.postgres import PostgresServer
from tests.unit.test_queue_sqlite import config

REQUESTS = 200
WORKERS = 4

# a worker: claim and complete until the queue has nothing left; one JSON line per claim
CLAIMING_WORKER = """
import json, sys
from synth_opt.service.queue import open_queue

location, worker_id = sys.argv[1], sys.argv[2]
with open_queue(location, lease_seconds=60) as queue:
    while (request := queue.claim(worker_id)) is not None:
        queue.complete(request.request_id, result={"by": worker_id}, lease_token=request.lease_token)
        print(json.dumps({"request_id": request.request_id, "attempts": request.attempts}), flush=True)
"""

# a worker that claims one request, starts it and heartbeats until its lease is refused; then it says so and stops
LOSING_WORKER = """
import json, sys, time
from synth_opt.errors import LeaseLostError
from synth_opt.service.queue import open_queue

location, worker_id = sys.argv[1], sys.argv[2]
with open_queue(location, lease_seconds=30) as queue:
    request = queue.claim(worker_id)
    queue.start(request.request_id, request.lease_token)
    print(json.dumps({"request_id": request.request_id}), flush=True)
    try:
        while True:
            queue.heartbeat(request.request_id, request.lease_token)
            time.sleep(0.05)
    except LeaseLostError as lost:
        print(json.dumps({"lost": lost.error_code}), flush=True)
"""

# a worker that claims one request, starts it, says so, and then holds the lease (heartbeating into a file)
# until the file ``finish`` appears next to its heartbeat file; then it completes the request
HOLDING_WORKER = """
import json, pathlib, sys, time
from synth_opt.service.queue import open_queue

location, worker_id, folder = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
with open_queue(location, lease_seconds=30) as queue:
    request = queue.claim(worker_id)
    queue.start(request.request_id, request.lease_token)
    print(json.dumps({"request_id": request.request_id, "token": request.lease_token}), flush=True)
    beats = 0
    while not (folder / "finish").exists():
        queue.heartbeat(request.request_id, request.lease_token)
        beats += 1
        (folder / "beats").write_text(str(beats))
        time.sleep(0.05)
    queue.complete(request.request_id, result={"beats": beats}, lease_token=request.lease_token)
    print(json.dumps({"completed": beats}), flush=True)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def worker(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def first_line(process: subprocess.Popen[str]) -> dict[str, str]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.communicate()[1][-3000:]
    parsed: dict[str, str] = json.loads(line)
    return parsed


def test_four_worker_processes_claim_each_of_200_requests_exactly_once(location: str) -> None:
    with open_queue(location) as queue:
        submitted = [
            queue.submit(run_id=f"run-{i:03d}", config_path=f"/configs/{i}.toml").request.request_id
            for i in range(REQUESTS)
        ]
    processes = [worker(CLAIMING_WORKER, location, f"w{n}") for n in range(WORKERS)]
    claims: list[dict[str, str]] = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]
        claims += [json.loads(line) for line in out.splitlines()]

    claimed = Counter(claim["request_id"] for claim in claims)
    assert sorted(claimed) == sorted(submitted)  # every request claimed ...
    assert set(claimed.values()) == {1}  # ... exactly once
    assert {claim["attempts"] for claim in claims} == {1}
    with open_queue(location) as queue:
        requests = queue.list_requests(limit=REQUESTS)
        status = queue.status()
    assert len(requests) == REQUESTS and {r.status for r in requests} == {RequestStatus.COMPLETED}
    by_id = {r.request_id: r for r in requests}
    assert all(by_id[rid].result == {"by": by_id[rid].lease_owner} for rid in submitted)  # completed by its claimant
    assert status["operation_status_counts"] == {"succeeded": 3 * REQUESTS}  # submit, claim, complete; none refused


def test_a_worker_killed_holding_a_lease_is_recovered_and_its_late_write_refused(location: str) -> None:
    with open_queue(location) as queue:
        request_id = queue.submit(run_id="doomed", config_path="/configs/doomed.toml").request.request_id
    holder = worker(HOLDING_WORKER, location, "doomed-worker", "/nonexistent")
    try:
        held = first_line(holder)
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
        holder.communicate()
    assert held["request_id"] == request_id

    with open_queue(location) as queue:
        assert queue.recover().requeued == ()  # the lease (30 s) is still running
    later = time.time() + 31  # a clock past the dead worker's lease, instead of waiting it out
    with open_queue(location, clock=lambda: later) as queue:
        assert queue.recover().requeued == (request_id,)
        with pytest.raises(LeaseLostError, match="lease is gone"):
            queue.complete(request_id, result={"late": True}, lease_token=held["token"])
        again = queue.claim("survivor")
        assert again is not None and again.request_id == request_id and again.attempts == 2
        done = queue.complete(request_id, result={"ok": True}, lease_token=again.lease_token)
    assert done.status is RequestStatus.COMPLETED and done.result == {"ok": True} and done.lease_owner == "survivor"


def _wait_for_beats(folder: Path, above: int, process: subprocess.Popen[str], within: float = 60) -> int:
    deadline = time.monotonic() + within
    while True:
        beats = int((folder / "beats").read_text() or 0) if (folder / "beats").exists() else 0
        if beats > above:
            return beats
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no heartbeat past {above} within {within} s"
        time.sleep(0.05)


def test_a_worker_keeps_its_lease_through_a_postgresql_restart(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    with open_queue(postgres_url) as queue:
        request_id = queue.submit(run_id="steady", config_path="/configs/steady.toml").request.request_id
    holder = worker(HOLDING_WORKER, postgres_url, "steady-worker", str(tmp_path))
    try:
        assert first_line(holder)["request_id"] == request_id
        before = _wait_for_beats(tmp_path, 0, holder)
        postgres_server.restart()  # every connection drops; the worker's next heartbeat meets a dead socket
        _wait_for_beats(tmp_path, before + 3, holder)  # it reconnected and heartbeats again
        (tmp_path / "finish").touch()
        out, err = holder.communicate(timeout=60)
        assert holder.returncode == 0, err[-3000:]
        assert json.loads(out.splitlines()[-1])["completed"] > before + 3
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.communicate()
    with open_queue(postgres_url) as queue:
        final = queue.get(request_id)
        status = queue.status()
    assert final.status is RequestStatus.COMPLETED and final.attempts == 1 and final.lease_owner == "steady-worker"
    assert "rejected" not in status["operation_status_counts"]  # no write was refused: the lease was never lost


def test_a_worker_whose_lease_expired_while_postgresql_was_down_loses_it_cleanly(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with open_queue(postgres_url) as queue:
        request_id = queue.submit(run_id="stranded", config_path="/configs/stranded.toml").request.request_id
    holder = worker(LOSING_WORKER, postgres_url, "stranded-worker")
    try:
        assert first_line(holder)["request_id"] == request_id
        postgres_server.stop()  # the worker's heartbeats fail; it keeps reconnecting
        time.sleep(1.0)
        postgres_server.start()
        later = time.time() + 120  # past any lease the worker could have renewed meanwhile
        with open_queue(postgres_url, clock=lambda: later) as queue:
            assert queue.recover().requeued == (request_id,)
        out, err = holder.communicate(timeout=60)  # its next heartbeat is refused: it stops
        assert holder.returncode == 0, err[-3000:]
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.communicate()
    assert json.loads(out.splitlines()[-1]) == {"lost": "lease_lost"}
    with open_queue(postgres_url) as queue:
        again = queue.get(request_id)
    assert again.status is RequestStatus.QUEUED and again.attempts == 1 and again.lease_owner is None


@pytest.mark.anyio
async def test_an_idle_worker_wakes_on_a_submission_from_another_process(postgres_url: str) -> None:
    opened = open_queue(postgres_url)
    try:
        async with opened.open_async() as queue:
            await queue.wait_for_work(0.01)  # listening from here on
            with anyio.fail_after(60):  # the poll interval below is 600 s: only the notification ends the wait
                async with anyio.create_task_group() as tg:
                    tg.start_soon(queue.wait_for_work, 600)
                    await anyio.sleep(0.2)
                    submitter = worker(
                        "import sys\nfrom synth_opt.service.queue import open_queue\n"
                        "open_queue(sys.argv[1]).submit(run_id='wake', config_path='/configs/wake.toml')",
                        postgres_url,
                    )
                    await anyio.to_thread.run_sync(submitter.communicate)
                    assert submitter.returncode == 0
            claimed = await queue.claim("woken")
        assert claimed is not None and claimed.run_id == "wake"
    finally:
        opened.close()


def test_an_unreachable_postgresql_server_is_named_without_its_password() -> None:
    with pytest.raises(QueueUnavailableError) as caught:
        open_queue("postgresql://synth:hunter2@127.0.0.1:1/queue")
    message = caught.value.message
    assert "postgresql://synth:***@127.0.0.1:1/queue" in message and "hunter2" not in message
    assert caught.value.error_code == "queue_unavailable"


def test_the_workspace_commands_read_a_postgresql_queue(postgres_url: str) -> None:
    with open_queue(postgres_url) as queue:
        queue.submit(run_id="listed", config_path="/configs/listed.toml")
        claimed = queue.claim("w")
        assert claimed is not None
    command = [sys.executable, "-m", "synth_opt", "workspace"]
    status = subprocess.run([*command, "status", "--db", postgres_url], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["backend"] == "postgresql" and report["run_request_status_counts"] == {"leased": 1}
    recovered = subprocess.run([*command, "recover", "--db", postgres_url], capture_output=True, text=True, timeout=60)
    assert recovered.returncode == 0 and json.loads(recovered.stdout)["recovered"] == 0, recovered.stderr
    repair = subprocess.run([*command, "repair", "--db", postgres_url], capture_output=True, text=True, timeout=60)
    assert repair.returncode == 2 and "workspace recover" in repair.stderr


def test_the_workspace_functions_drive_either_backend(location: str, tmp_path: Path) -> None:
    request = workspace_submit_run_request(location, config(tmp_path))
    assert request["run_id"] == "svc" and request["container_url"] == "http://127.0.0.1:8102"
    assert workspace_submit_run_request(location, config(tmp_path, "b.toml", run_id="b"), idempotency_key="k")
    claimed = workspace_claim_next_run_request(location, "worker-1")
    assert claimed is not None and claimed["request_id"] == request["request_id"]
    workspace_start_run_request(location, claimed["request_id"], claimed["lease_token"])
    beat = workspace_heartbeat_run_request(location, claimed["request_id"], claimed["lease_token"])
    assert beat["status"] == "running"
    done = workspace_complete_run_request(location, claimed["request_id"], lease_token=claimed["lease_token"])
    assert done["status"] == "completed"
    with pytest.raises(LeaseLostError):
        workspace_complete_run_request(location, claimed["request_id"], lease_token="not-the-token")
    other = workspace_submit_run_request(location, config(tmp_path, "b.toml", run_id="b"), idempotency_key="k")
    assert workspace_cancel_run_request(location, other["request_id"])["status"] == "cancelled"
    assert workspace_recover(location)["invariants"]["status"] == "ok"
    assert workspace_claim_next_run_request(location, "worker-2") is None
