"""The service as a real server on loopback (uvicorn in a subprocess, a bearer token from the environment): SIGTERM
stops the running request and releases its lease without leaving a process behind; the next start-up picks the
request up again and completes it as attempt 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from synth_opt.container.launch import process_group_alive
from tests.integration.test_service_app import config

SERVER = """
import sys
from pathlib import Path
from synth_opt.service.cli import serve
sys.exit(serve(Path(sys.argv[1]), sys.argv[2], "server-worker", Path(sys.argv[3]), "SYNTH_TEST_TOKEN", grace_seconds=5,
               allow_commands=True))
"""
TOKEN = "test-token-123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(root: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", SERVER, str(root / "service.sqlite"), f"127.0.0.1:{port}", str(root)],
        env={**os.environ, "SYNTH_TEST_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_until_up(client: httpx.Client, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        assert server.poll() is None and time.monotonic() < deadline, server.stderr and server.stderr.read()
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)


def wait_for_status(client: httpx.Client, request_id: str, statuses: set[str], within: float) -> dict[str, object]:
    deadline = time.monotonic() + within
    while True:
        request: dict[str, object] = client.get(f"/runs/{request_id}").json()
        if request["status"] in statuses or time.monotonic() > deadline:
            return request
        time.sleep(0.1)


def test_sigterm_releases_the_running_request_and_the_next_start_completes_it(tmp_path: Path) -> None:
    config(tmp_path, max_train_rollouts=60)
    feed = tmp_path / "runs" / "svc" / "events.jsonl"
    port = free_port()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    server = start_server(tmp_path, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as client:
            wait_until_up(client, server)
            assert httpx.get(f"http://127.0.0.1:{port}/status").status_code == 401
            created = client.post("/runs", json={"config_path": "gepa.toml", "priority": 5})
            assert created.status_code == 201, created.text
            request_id = created.json()["request_id"]
            deadline = time.monotonic() + 30
            while "proposal.planned" not in (feed.read_text() if feed.exists() else ""):
                assert time.monotonic() < deadline, "the run never got past its seed"
                time.sleep(0.05)
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=15) == 0, server.stderr and server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()
    events = [json.loads(line) for line in feed.read_text().splitlines()]
    pid = next(e["fields"]["pid"] for e in events if e["type"] == "container.launched")
    assert not process_group_alive(pid)

    server = start_server(tmp_path, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as client:
            wait_until_up(client, server)
            request = wait_for_status(client, request_id, {"completed", "failed", "cancelled"}, 30)
            assert request["status"] == "completed", request["error"]
            assert request["attempts"] == 2
            operations = client.get("/status").json()["operation_status_counts"]
            assert operations == {"succeeded": operations["succeeded"]}
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=15)
    assert server.returncode == 0
