"""Resubmitting a run through the service: ``POST /runs`` takes ``fresh`` (start the run directory over), and the
event stream of a new attempt never replays what an earlier attempt left in the run directory."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_service_app import config, service
from tests.integration.test_service_runs import TERMINAL, submit, wait_for
from tests.integration.test_service_runs import service as real_service

BROKEN = """
[run]
run_id = "{run_id}"

[container]
command = ["{{python}}", "-c", "raise SystemExit(3)"]
startup_timeout_seconds = 5

[dataset]
train_ids = {{count = 6}}

[proposer]
backend = "codex_app_server"
command = ["{{python}}", "-m", "synth_opt.testing.fake_app_server", "--mode", "ok"]

[cache]
mode = "off"
"""


def _events(feed: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in feed.read_text(encoding="utf-8").splitlines()]


def _seconds(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@pytest.mark.anyio
async def test_fresh_starts_a_finished_run_over_and_a_plain_resubmission_returns_it(tmp_path: Path) -> None:
    config(tmp_path)
    feed = tmp_path / "runs" / "svc" / "events.jsonl"
    async with service(tmp_path) as client:
        first = (await client.post("/runs", json={"config_path": "gepa.toml", "auto_start": False})).json()
        assert (await client.post("/worker/run-next")).json()["request"]["status"] == "completed"
        written = feed.stat().st_mtime_ns
        again = (await client.post("/runs", json={"config_path": "gepa.toml", "auto_start": False})).json()
        assert again["request_id"] != first["request_id"]
        assert (await client.post("/worker/run-next")).json()["request"]["status"] == "completed"
        assert feed.stat().st_mtime_ns == written  # the stored result: nothing ran
        body = {"config_path": "gepa.toml", "auto_start": False, "fresh": True}
        fresh = await client.post("/runs", json=body)
        assert fresh.status_code == 201, fresh.text
        final = (await client.post("/worker/run-next")).json()["request"]
        assert final["status"] == "completed" and final["fresh"] is True, final
    events = _events(feed)
    created = [e for e in events if e["type"] == "run.state" and e["fields"]["state"] == "created"]
    assert len(created) == 1 and _seconds(created[0]["ts"]) >= final["started_at"] - 0.001  # run again, from scratch


def _stream(url: str, request_id: str, sink: list[dict[str, Any]], within: float) -> None:
    """Collect the request's server-sent events (``event`` and parsed ``data``) until ``end`` or ``within``."""
    deadline = time.monotonic() + within
    kind = None
    with httpx.stream("GET", f"{url}/runs/{request_id}/events", timeout=within) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                sink.append({"event": kind, "data": json.loads(line.removeprefix("data: "))})
                if kind == "end":
                    return
            if time.monotonic() > deadline:
                return


def test_the_stream_of_a_resubmitted_run_does_not_replay_the_failed_attempt(tmp_path: Path) -> None:
    import threading

    (tmp_path / "retry.toml").write_text(BROKEN.format(run_id="retry"), encoding="utf-8")
    feed = tmp_path / "runs" / "retry" / "events.jsonl"
    with real_service(tmp_path) as (client, _, _ended):
        url = str(client.base_url).rstrip("/")
        failed = wait_for(client, submit(client, "retry.toml"), TERMINAL)
        assert failed["status"] == "failed", failed
        old = _events(feed)
        assert old[-1]["type"] == "run.state" and old[-1]["fields"]["state"] == "failed"
        # the service's only worker is held by a run whose proposer never answers, so the resubmission waits
        config(tmp_path, "holder.toml", run_id="holder", proposer="trickle")
        holder = submit(client, "holder.toml", priority=5)
        assert wait_for(client, holder, {"running", *TERMINAL})["status"] == "running"
        config(tmp_path, "retry.toml", run_id="retry", max_train_rollouts=16)  # fixed: the tiny container
        again = submit(client, "retry.toml")
        assert client.get(f"/runs/{again}").json()["status"] == "queued"
        seen: list[dict[str, Any]] = []
        reader = threading.Thread(target=_stream, args=(url, again, seen, 90))
        reader.start()
        time.sleep(1.5)  # while it is queued, the old attempt's feed is still in the run directory
        queued_seen = list(seen)
        assert client.post(f"/runs/{holder}/cancel").status_code == 200
        reader.join(timeout=120)
        final = wait_for(client, again, TERMINAL)
    assert queued_seen == [], queued_seen
    assert final["status"] == "completed", final["error"]
    assert seen[-1] == {"event": "end", "data": {"request_id": again, "status": "completed"}}
    events = [entry["data"] for entry in seen[:-1]]
    assert events[0]["type"] == "run.state" and events[0]["fields"]["state"] == "created"
    assert all(_seconds(event["ts"]) >= final["started_at"] - 0.001 for event in events)
    states = [e["fields"]["state"] for e in events if e["type"] == "run.state"]
    assert "failed" not in states and states.count("created") == 1
    assert [e["sequence_number"] for e in events] == [e["sequence_number"] for e in _events(feed)]
