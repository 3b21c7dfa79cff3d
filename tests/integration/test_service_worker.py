"""Service workers as real processes: a ``run-next`` worker SIGKILLed while holding a lease is requeued after the
lease expires, a second worker completes the request as attempt 2, and the killed worker's late write is refused.
Also the command helpers' argument checks."""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from synth_opt.container.launch import process_group_alive
from synth_opt.errors import ConfigError, LeaseLostError
from synth_opt.service.cli import is_loopback, parse_bind, recover_command, serve
from synth_opt.service.functions import (
    workspace_complete_run_request,
    workspace_recover,
    workspace_submit_run_request,
)
from synth_opt.service.queue import open_queue
from synth_opt.service.worker import run_next
from tests.integration.test_service_app import config

WORKER = """
import sys
from pathlib import Path
from synth_opt.service.cli import run_next_command
sys.exit(run_next_command(Path(sys.argv[1]), sys.argv[2], lease_seconds=float(sys.argv[3])))
"""


def _launched_pids(feed: Path) -> list[int]:
    events = [json.loads(line) for line in feed.read_text().splitlines() if line.strip()]
    return [int(e["fields"]["pid"]) for e in events if e["type"] == "container.launched"]


def test_a_killed_worker_is_requeued_and_a_second_worker_completes_the_run(tmp_path: Path) -> None:
    db = tmp_path / "service.sqlite"
    request = workspace_submit_run_request(db, config(tmp_path, max_train_rollouts=60))
    feed = tmp_path / "runs" / "svc" / "events.jsonl"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(db), "doomed", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while "proposal.planned" not in (feed.read_text() if feed.exists() else ""):
            assert worker.poll() is None and time.monotonic() < deadline, worker.stderr and worker.stderr.read()
            time.sleep(0.05)
        conn = sqlite3.connect(db)
        status, old_token, owner = conn.execute(
            "SELECT status, lease_token, lease_owner FROM run_requests WHERE request_id = ?", (request["request_id"],)
        ).fetchone()
        conn.close()
        assert (status, owner) == ("running", "doomed")
        worker.kill()
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
        for pid in _launched_pids(feed) if feed.exists() else []:  # the dead worker's orphaned container
            if process_group_alive(pid):
                os.killpg(pid, signal.SIGKILL)
    assert workspace_recover(db)["recovered"] == 0  # the lease has not expired yet
    time.sleep(2.2)
    assert workspace_recover(db)["requeued"] == [request["request_id"]]
    final = anyio.run(functools.partial(run_next, db, worker_id="survivor", lease_seconds=10))
    assert final is not None and final.request_id == request["request_id"]
    assert final.status == "completed", final.error
    assert final.attempts == 2 and final.lease_owner == "survivor"
    assert final.result is not None and final.result["stop_reason"] == "max_train_rollouts"
    with pytest.raises(LeaseLostError):
        workspace_complete_run_request(db, request["request_id"], result={"late": True}, lease_token=old_token)
    assert anyio.run(functools.partial(run_next, db, worker_id="survivor")) is None


def test_the_command_helpers_check_their_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_bind("127.0.0.1:8879") == ("127.0.0.1", 8879)
    assert parse_bind("[::1]:80") == ("::1", 80)
    for bad in ("8879", "host:", ":80", "h:99999"):
        with pytest.raises(ConfigError, match="--bind"):
            parse_bind(bad)
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    db = tmp_path / "service.sqlite"
    with pytest.raises(ConfigError, match=r"--bind 0\.0\.0\.0:8879"):
        serve(db, "0.0.0.0:8879", "w", tmp_path, None)
    with pytest.raises(ConfigError, match="SYNTH_TEST_UNSET_TOKEN"):
        serve(db, "0.0.0.0:8879", "w", tmp_path, "SYNTH_TEST_UNSET_TOKEN")
    with pytest.raises(ConfigError, match="does not exist"):
        recover_command(db)
    workspace_recover(db)
    capsys.readouterr()
    assert recover_command(db) == 0
    assert json.loads(capsys.readouterr().out)["recovered"] == 0


def test_a_worker_that_loses_its_lease_mid_run_stops_writes_nothing_more_and_its_final_write_is_refused(
    tmp_path: Path,
) -> None:
    db = tmp_path / "service.sqlite"
    request = workspace_submit_run_request(db, config(tmp_path, max_train_rollouts=1_000_000))
    feed = tmp_path / "runs" / "svc" / "events.jsonl"
    caught: list[LeaseLostError] = []

    async def steal_the_lease() -> None:
        with anyio.fail_after(30):
            while True:
                if "proposal.planned" in (feed.read_text() if feed.exists() else ""):
                    break
                await anyio.sleep(0.05)

        # a recovery that sees the lease as expired (its clock is an hour ahead), then another worker's claim, on a
        # thread of its own as another process would be: run on the event loop it would block the loser's queue
        # connection in the middle of a transaction and wait out busy_timeout on it ("database is locked")
        def thief() -> None:
            with open_queue(db, clock=lambda: time.time() + 3600) as queue:
                assert queue.recover().requeued == (request["request_id"],)
                assert queue.claim("thief") is not None

        await anyio.to_thread.run_sync(thief)

    async def work() -> None:
        try:
            await run_next(db, worker_id="loser", lease_seconds=30)
        except LeaseLostError as lost:
            caught.append(lost)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(steal_the_lease)
            tg.start_soon(work)

    started = time.monotonic()
    anyio.run(main)
    assert caught and time.monotonic() - started < 20
    conn = sqlite3.connect(db)
    owner, status = conn.execute(
        "SELECT lease_owner, status FROM run_requests WHERE request_id = ?", (request["request_id"],)
    ).fetchone()
    refused = conn.execute("SELECT kind FROM operations WHERE status = 'rejected'").fetchall()
    conn.close()
    assert (owner, status) == ("thief", "leased") and refused == [("cancel",)]
    assert not any(process_group_alive(pid) for pid in _launched_pids(feed))
    # the loser wrote nothing into the run directory once its lease was gone: no result, no status, no end state
    run_dir = tmp_path / "runs" / "svc"
    assert not (run_dir / "result_manifest.json").exists() and not (run_dir / "run_status.json").exists()
    states = [e["fields"]["state"] for e in map(json.loads, feed.read_text().splitlines()) if e["type"] == "run.state"]
    assert states[-1] == "searching", states
