"""The service app through litestar's AsyncTestClient on a temporary database: routes, error envelopes, bearer
auth, the OpenAPI schema, and real runs (the tiny container, the fake app-server proposer) completed and cancelled
by the app's own background worker."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from synth_opt.container.launch import process_group_alive
from synth_opt.service.app import create_app

TINY = Path(__file__).with_name("tiny_container.py")


def config(
    root: Path,
    name: str = "gepa.toml",
    *,
    run_id: str = "svc",
    max_train_rollouts: int = 40,
    url: str | None = None,
    proposer: str = "ok",
) -> Path:
    """A tiny run: a standing container at ``url``, or one the run launches; the fake proposer in ``proposer``
    mode (``trickle`` never finishes its reply, so the run holds its lease until cancelled)."""
    launched = f"command = [{sys.executable!r}, {str(TINY)!r}, '{{port}}']\nstartup_timeout_seconds = 20"
    path = root / name
    path.write_text(
        f"""
[run]
run_id = "{run_id}"

[container]
{f'url = "{url}"' if url else launched}

[dataset]
train_ids = {{count = 6}}
heldout_ids = {{count = 4}}

[proposer]
backend = "codex_app_server"
command = [{sys.executable!r}, "-m", "synth_opt.testing.fake_app_server", "--mode", "{proposer}"]
cost_per_million_input_tokens = 0.0  # the fake app-server is free
cost_per_million_output_tokens = 0.0

[gepa]
max_train_rollouts = {max_train_rollouts}
minibatch_size = 2
reuse_evaluations = false  # every proposal rolls out, so the budget ends the run

[cache]
mode = "off"
""",
        encoding="utf-8",
    )
    return path


@asynccontextmanager
async def service(root: Path, **options: Any) -> AsyncIterator[AsyncTestClient[Litestar]]:
    options.setdefault("auto_start", False)
    options.setdefault("allow_commands", True)  # these configs launch the tiny container and the fake proposer
    app = create_app(root / "service.sqlite", worker_id="test-worker", config_root=root, poll_seconds=0.2, **options)
    async with AsyncTestClient(app, timeout=30) as client:
        yield client


def error_of(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "detail"}
    if code is not None:
        assert error["code"] == code, error
    return error


async def wait_for(client: AsyncTestClient[Litestar], request_id: str, statuses: set[str], within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        request = (await client.get(f"/runs/{request_id}")).json()
        if request["status"] in statuses or time.monotonic() > deadline:
            return request
        await anyio.sleep(0.1)


@pytest.mark.anyio
async def test_health_status_and_the_openapi_schema(tmp_path: Path) -> None:
    async with service(tmp_path) as client:
        assert (await client.get("/health")).json() == {"status": "ok", "worker_id": "test-worker"}
        status = (await client.get("/status")).json()
        assert status["run_request_status_counts"] == {} and status["worker"]["worker_id"] == "test-worker"
        assert status["worker"]["loop_running"] is False
        schema = await client.get("/schema/openapi.json")
        assert schema.status_code == 200
        paths = schema.json()["paths"]
        for path in (
            "/health",
            "/status",
            "/runs",
            "/runs/{request_id}",
            "/runs/{request_id}/cancel",
            "/runs/{request_id}/events",
            "/workspace",
            "/worker/run-next",
            "/worker/recover",
        ):
            assert path in paths


@pytest.mark.anyio
async def test_bad_input_gets_a_4xx_with_the_error_envelope(tmp_path: Path) -> None:
    root = tmp_path / "configs"
    root.mkdir()
    outside = config(tmp_path, "outside.toml")
    (root / "link.toml").symlink_to(outside)
    (root / "invalid.toml").write_text("[run]\nbogus = 1\n", encoding="utf-8")
    async with service(root) as client:
        bad_json = await client.post("/runs", content=b"{not json", headers={"content-type": "application/json"})
        assert error_of(bad_json, 400)["code"] in {"validation_error", "bad_request"}
        error_of(await client.post("/runs", json={}), 400, "validation_error")
        error_of(await client.post("/runs", json={"config_path": "x.toml", "priority": "high"}), 400)
        error_of(await client.post("/runs", json={"config_path": "gepa.toml", "priority": 10**30}), 422, "config_error")
        missing = error_of(await client.post("/runs", json={"config_path": "missing.toml"}), 422, "config_error")
        assert "not found" in missing["message"]
        for escape in ("../outside.toml", str(outside), "link.toml"):
            error = error_of(await client.post("/runs", json={"config_path": escape}), 422, "config_error")
            assert "outside the service's config root" in error["message"]
        error_of(await client.post("/runs", json={"config_path": "a\x00b"}), 422, "config_error")
        invalid = error_of(await client.post("/runs", json={"config_path": "invalid.toml"}), 422, "config_error")
        assert "bogus" in invalid["message"]
        for method, path in (
            ("get", "/runs/req-nope"),
            ("post", "/runs/req-nope/cancel"),
            ("get", "/runs/req-nope/events"),
            ("get", "/workspace?request_id=req-nope"),
        ):
            error_of(await getattr(client, method)(path), 404, "run_request_not_found")
        error_of(await client.get("/runs?status=bogus"), 422, "config_error")
        error_of(await client.get("/no/such/route"), 404, "not_found")
        error_of(await client.delete("/runs"), 405)


@pytest.mark.anyio
async def test_submit_list_cancel_and_the_worker_routes(tmp_path: Path) -> None:
    config(tmp_path)
    async with service(tmp_path) as client:
        body = {"config_path": "gepa.toml", "priority": 5, "auto_start": False, "idempotency_key": "k1"}
        created = await client.post("/runs", json=body)
        assert created.status_code == 201
        request = created.json()
        assert request["run_id"] == "svc" and request["status"] == "queued" and request["deduplicated"] is False
        again = await client.post("/runs", json=body)
        assert again.status_code == 200 and again.json()["request_id"] == request["request_id"]
        conflict = error_of(await client.post("/runs", json={"config_path": "gepa.toml", "auto_start": False}), 409)
        assert conflict["code"] == "queue_conflict" and conflict["detail"]["request_id"] == request["request_id"]
        listed = (await client.get("/runs")).json()["requests"]
        assert [r["request_id"] for r in listed] == [request["request_id"]]
        shown = (await client.get(f"/runs/{request['request_id']}")).json()
        assert "lease_token" not in shown and shown["priority"] == 5
        assert shown["config_path"] == str((tmp_path / "gepa.toml").resolve())
        cancelled = await client.post(f"/runs/{request['request_id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert (await client.post("/worker/run-next")).json() == {"request": None}
        recovered = (await client.post("/worker/recover")).json()
        assert recovered["recovered"] == 0 and recovered["invariants"]["status"] == "ok"
        workspace = (await client.get("/workspace")).json()
        assert workspace["run_request_status_counts"] == {"cancelled": 1}
        events = await client.get(f"/runs/{request['request_id']}/events")
        assert events.status_code == 200 and "event: end" in events.text


@pytest.mark.anyio
async def test_a_bearer_token_guards_every_route_but_health(tmp_path: Path) -> None:
    async with service(tmp_path, bearer_token="s3cret") as client:
        assert (await client.get("/health")).status_code == 200
        for path in ("/status", "/runs", "/schema/openapi.json"):
            denied = await client.get(path)
            error_of(denied, 401, "unauthorized")
            assert denied.headers["www-authenticate"] == "Bearer"
        error_of(await client.get("/status", headers={"Authorization": "Bearer wrong"}), 401)
        error_of(await client.post("/worker/recover", headers={"Authorization": "Basic s3cret"}), 401)
        ok = {"Authorization": "Bearer s3cret"}
        assert (await client.get("/status", headers=ok)).status_code == 200
        assert (await client.get("/schema/openapi.json", headers=ok)).status_code == 200


@pytest.mark.anyio
async def test_the_background_worker_completes_a_submitted_run(tmp_path: Path) -> None:
    config(tmp_path)
    async with service(tmp_path, auto_start=True) as client:
        created = (await client.post("/runs", json={"config_path": "gepa.toml"})).json()
        request = await wait_for(client, created["request_id"], {"completed", "failed", "cancelled"}, 60)
        assert request["status"] == "completed", request["error"]
        assert request["attempts"] == 1 and request["lease_owner"] == "test-worker"
        assert Path(request["workspace_db_path"]).is_file() and Path(request["manifest_path"]).is_file()
        manifest = json.loads(Path(request["manifest_path"]).read_text())
        assert request["best_candidate_id"] == manifest["best_candidate_id"]
        assert request["usage"] == manifest["usage"] and request["cost_usd"] == manifest["cost_usd"]
        assert request["result"]["stop_reason"] == manifest["stop_reason"] == "max_train_rollouts"
        events = (await client.get(f"/runs/{created['request_id']}/events")).text
        assert "event: run.state" in events and events.rstrip().splitlines()[-2:] == [
            "event: end",
            f'data: {{"request_id": "{created["request_id"]}", "status": "completed"}}',
        ]
        status = (await client.get("/status")).json()
        assert status["worker"]["finished"] == {"completed": 1}
        assert status["run_request_status_counts"] == {"completed": 1}
        live = (await client.get(f"/workspace?request_id={created['request_id']}")).json()
        assert live["runs"][0]["run_id"] == "svc" and live["runs"][0]["status"] == "completed"


@pytest.mark.anyio
async def test_cancelling_a_running_request_stops_its_run(tmp_path: Path) -> None:
    config(tmp_path, max_train_rollouts=1_000_000)
    feed = tmp_path / "runs" / "svc" / "events.jsonl"
    async with service(tmp_path, auto_start=True) as client:
        created = (await client.post("/runs", json={"config_path": "gepa.toml"})).json()
        deadline = time.monotonic() + 30
        while "proposal.planned" not in (feed.read_text() if feed.exists() else ""):
            assert time.monotonic() < deadline, "the run never got past its seed"
            await anyio.sleep(0.1)
        assert (await client.get(f"/runs/{created['request_id']}")).json()["status"] == "running"
        asked = (await client.post(f"/runs/{created['request_id']}/cancel")).json()
        assert asked["cancel_requested"] is True
        started = time.monotonic()
        request = await wait_for(client, created["request_id"], {"completed", "failed", "cancelled"}, 10)
        assert request["status"] == "cancelled" and time.monotonic() - started < 2
        assert request["error"]["code"] == "run_cancelled" and request["cancel"]["reason"]
        assert json.loads(Path(request["manifest_path"]).read_text())["status"] == "cancelled"
        events = [json.loads(line) for line in feed.read_text().splitlines()]
        pid = next(e["fields"]["pid"] for e in events if e["type"] == "container.launched")
        assert not process_group_alive(pid)
