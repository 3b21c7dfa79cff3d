"""The service's async reads and its log context: a run's workspace read through the aiosqlite live API while the run
writes it, and the ``request_id`` / ``run_id`` a worker and an HTTP handler bind on every line they log (captured
with ``merge_contextvars`` before ``capture_logs``, as the configured chain merges them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog.testing
from anyio.streams.memory import MemoryObjectReceiveStream
from litestar.testing import AsyncTestClient
from structlog.contextvars import get_contextvars, merge_contextvars

from synth_opt import GepaRun, load_config
from synth_opt.errors import ConfigError
from synth_opt.events import Event
from synth_opt.run import RunView
from synth_opt.service import worker as worker_module
from synth_opt.service.app import create_app
from synth_opt.service.queue import open_queue
from synth_opt.service.queue.aio import AsyncSqliteRunQueue
from synth_opt.service.worker import execute_claimed
from synth_opt.testing.fake_container import FakeContainer
from synth_opt.workspace import WriterStats, run_workspace_writer, workspace_status
from synth_opt.workspace.live import live_run_summary, live_workspace_status

from .test_pipeline_fake import keyword_score, rows
from .test_workspace_live import LearningProposer, write_config


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k != "checked_at"}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


@pytest.mark.anyio
async def test_the_live_api_reads_the_workspace_while_the_run_writes_it(tmp_path: Path) -> None:
    fake = FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 10)},
        score=keyword_score,
        seed_candidate={"instruction": "answer w0"},
        latency_seconds=0.005,
    )
    run = GepaRun(
        load_config(write_config(tmp_path)), container_transport=fake.transport(), proposer=LearningProposer()
    )
    db = run.run_dir / "workspace.sqlite"
    manifest = run.run_dir / "result_manifest.json"
    stats = WriterStats()
    seen: list[int] = []

    async def write_workspace(events: MemoryObjectReceiveStream[Event], view: RunView) -> None:
        await run_workspace_writer(db, events, run_id=view.run_id, stats=stats)

    async def poll() -> None:
        while not await anyio.Path(manifest).exists():
            if await anyio.Path(db).exists():
                try:
                    summary = await live_run_summary(db)
                except Exception:  # the writer has not created its tables (or its run row) yet
                    pass
                else:
                    if not await anyio.Path(manifest).exists():  # read before the run ended
                        seen.append(int(summary["rollouts"]))
            await anyio.sleep(0.02)

    run.observer = write_workspace
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            result = await run.execute_async()
    live = [n for n in seen if n]
    assert len(set(live)) >= 3 and live == sorted(live), seen  # it grew, and was read while it grew
    assert stats.failed_batches == 0 and stats.events > 0
    after = await live_workspace_status(db)  # the same dict as the sqlite3 reader gives
    assert _without_times(after) == _without_times(workspace_status(db))
    assert after["runs"][0]["rollouts"] == result.rollouts_used["total"]


@pytest.mark.anyio
async def test_a_workers_log_lines_carry_the_request_and_run_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_loader(path: Any) -> Any:
        raise RuntimeError("the loader broke")

    monkeypatch.setattr(worker_module, "load_config", broken_loader)
    with open_queue(tmp_path / "service.sqlite") as opened:
        async with opened.open_async() as queue:
            await queue.submit(run_id="logged-run", config_path=str(tmp_path / "gepa.toml"))
            claimed = await queue.claim("w")
            assert claimed is not None
            with structlog.testing.capture_logs(processors=[merge_contextvars]) as logs:
                final = await execute_claimed(queue, claimed, poll_seconds=0.05)
    assert final.status == "failed" and final.error is not None and "the loader broke" in final.error["message"]
    failure = [entry for entry in logs if entry["event"] == "the request failed unexpectedly"]
    assert failure and failure[0]["log_level"] == "error", logs
    assert failure[0]["request_id"] == claimed.request_id and failure[0]["run_id"] == "logged-run"
    assert failure[0]["worker_id"] == "w"
    assert failure[0]["logger_name"] == "synth_opt.service"
    assert get_contextvars() == {}  # unbound again once the request is done


@pytest.mark.anyio
async def test_an_http_handler_binds_the_request_id_its_path_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_get(self: AsyncSqliteRunQueue, request_id: str) -> Any:
        raise RuntimeError("the reader broke")

    app = create_app(tmp_path / "service.sqlite", worker_id="w", config_root=tmp_path, auto_start=False)
    async with AsyncTestClient(app, timeout=30) as client:
        monkeypatch.setattr(AsyncSqliteRunQueue, "get", broken_get)
        with structlog.testing.capture_logs(processors=[merge_contextvars]) as logs:
            response = await client.get("/runs/req-logged")
            assert (await client.get("/workspace", params={"request_id": "req-query"})).status_code == 500
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    failures = [entry for entry in logs if entry["event"] == "request failed unexpectedly"]
    assert [entry["request_id"] for entry in failures] == ["req-logged", "req-query"], logs
    assert failures[0]["path"] == "/runs/req-logged"


@pytest.mark.anyio
async def test_the_service_opens_its_queue_from_a_sqlite_url_and_reads_its_status_live(tmp_path: Path) -> None:
    db = tmp_path / "svc.sqlite"
    app = create_app(f"sqlite:///{db}", worker_id="w", config_root=tmp_path, auto_start=False)
    async with AsyncTestClient(app, timeout=30) as client:
        status = (await client.get("/status")).json()
        assert status["db_path"] == str(db) and status["runs"] == [] and status["run_request_status_counts"] == {}
        assert (await client.get("/runs", params={"status": "done"})).json()["error"]["code"] == "config_error"
        assert (await client.get("/runs/req-nope")).status_code == 404
    with pytest.raises(ConfigError, match="'redis'"):
        create_app("redis://localhost/0", worker_id="w", config_root=tmp_path)


@pytest.mark.anyio
async def test_the_queue_and_status_routes_hop_no_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "service.sqlite"
    with open_queue(db) as queue:
        request = queue.submit(run_id="r1", config_path=str(tmp_path / "gone.toml")).request
    app = create_app(db, worker_id="w", config_root=tmp_path, auto_start=False)
    hops: list[Any] = []
    real = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await real(func, *args, **kwargs)

    async with AsyncTestClient(app, timeout=30) as client:
        monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
        assert (await client.get("/status")).json()["run_request_status_counts"] == {"queued": 1}
        assert (await client.get("/workspace")).status_code == 200
        assert [r["request_id"] for r in (await client.get("/runs")).json()["requests"]] == [request.request_id]
        assert (await client.get(f"/runs/{request.request_id}")).json()["status"] == "queued"
        assert (await client.post(f"/runs/{request.request_id}/cancel")).json()["status"] == "cancelled"
        assert (await client.post("/worker/recover")).json()["recovered"] == 0
        events = await client.get(f"/runs/{request.request_id}/events")
        assert events.status_code == 200 and "event: end" in events.text
    # SQLite went through aiosqlite, not hand-rolled thread hops; what is left is anyio.Path's file checks
    sqlite_hops = [
        hop for hop in hops if type(getattr(getattr(hop, "func", hop), "__self__", None)).__module__ != "pathlib"
    ]
    assert sqlite_hops == [], hops
