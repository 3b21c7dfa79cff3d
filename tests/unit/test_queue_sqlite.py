"""The SQLite queue beyond the shared contract: several processes on one file, the audit trail, the service keys of
``workspace_status``, the file checks, and the public ``workspace_*`` queue functions over real config files."""

from __future__ import annotations

import functools
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from synth_opt.errors import ConfigError, LeaseLostError
from synth_opt.service.errors import QueueConflictError
from synth_opt.service.functions import (
    workspace_cancel_run_request,
    workspace_claim_next_run_request,
    workspace_complete_run_request,
    workspace_heartbeat_run_request,
    workspace_recover,
    workspace_start_run_request,
    workspace_submit_run_request,
)
from synth_opt.service.queue import open_queue
from synth_opt.service.queue.schema import APPLICATION_ID, SCHEMA_VERSION
from synth_opt.workspace import workspace_status
from synth_opt.workspace.db import open_workspace

CLAIM_LOOP = """
import json, sys
from synth_opt.service.queue import open_queue
claimed = []
with open_queue(sys.argv[1]) as queue:
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()
    while (request := queue.claim(sys.argv[2])) is not None:
        claimed.append(request.request_id)
        queue.start(request.request_id, request.lease_token)
        queue.complete(request.request_id, lease_token=request.lease_token)
print(json.dumps(claimed))
"""


def config(tmp_path: Path, name: str = "gepa.toml", *, run_id: str | None = "svc", cache: str = "readwrite") -> Path:
    path = tmp_path / name
    run = f'[run]\nrun_id = "{run_id}"\n' if run_id else ""
    path.write_text(
        f"""{run}
[container]
url = "http://127.0.0.1:8102/"

[dataset]
train_ids = ["a", "b"]

[proposer]
backend = "codex_app_server"

[cache]
mode = "{cache}"
""",
        encoding="utf-8",
    )
    return path


def test_four_processes_claim_each_of_200_requests_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "service.sqlite"
    with open_queue(db) as queue:
        ids = {
            queue.submit(run_id=f"r{i}", config_path="/c.toml", container_url=f"http://c:{i}").request.request_id
            for i in range(200)
        }
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM_LOOP, str(db), f"w{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for worker in workers:  # all open, then all go at once
        assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
    outputs = [worker.communicate("go\n", timeout=90) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0, 0], [err for _, err in outputs]
    claimed = [rid for out, _ in outputs for rid in json.loads(out)]
    assert len(claimed) == 200 and set(claimed) == ids
    conn = sqlite3.connect(db)
    counts = dict(conn.execute("SELECT kind, count(*) FROM operations GROUP BY kind").fetchall())
    conn.close()
    assert counts == {"submit": 200, "claim": 200, "start": 200, "complete": 200}


def test_a_refused_late_write_is_audited_and_leases_are_tracked(tmp_path: Path) -> None:
    now = [100.0]
    db = tmp_path / "service.sqlite"
    with open_queue(db, clock=lambda: now[0], lease_seconds=5) as queue:
        queue.submit(run_id="r1", config_path="/c.toml", container_url="http://c", cache_namespace="ns")
        old = queue.claim("a")
        assert old is not None
        now[0] += 6
        queue.recover()
        new = queue.claim("b")
        assert new is not None
        with pytest.raises(LeaseLostError):
            queue.complete(old.request_id, lease_token=old.lease_token)
    conn = sqlite3.connect(db)
    ops = conn.execute("SELECT kind, status, worker_id FROM operations ORDER BY operation_id").fetchall()
    leases = conn.execute("SELECT owner, resource_kind, status FROM resource_leases ORDER BY lease_id").fetchall()
    conn.close()
    assert ops == [
        ("submit", "succeeded", None),
        ("claim", "succeeded", "a"),
        ("recover", "succeeded", None),
        ("claim", "succeeded", "b"),
        ("complete", "rejected", None),
    ]
    assert leases == [
        ("a", "container_url", "expired"),
        ("a", "cache_namespace", "expired"),
        ("b", "container_url", "active"),
        ("b", "cache_namespace", "active"),
    ]


def test_workspace_status_reports_the_queue(tmp_path: Path) -> None:
    db = tmp_path / "service.sqlite"
    workspace_submit_run_request(db, config(tmp_path, "one.toml", run_id="one"))
    workspace_submit_run_request(db, config(tmp_path, "two.toml", run_id="two"))
    claimed = workspace_claim_next_run_request(db, "w")
    assert claimed is not None
    workspace_recover(db)
    status = workspace_status(db)
    assert status["runs"] == [] and status["schema_version"] == SCHEMA_VERSION
    assert status["run_request_status_counts"] == {"leased": 1, "queued": 1}
    assert status["operation_status_counts"] == {"succeeded": 3}  # 2 submits, 1 claim; recover had nothing to do
    assert status["resource_lease_status_counts"] == {"active": 2}
    assert status["projection_status_counts"] == {"fresh": 2}
    assert status["invariant_status_counts"] == {"ok": 1}


def test_a_run_workspace_is_not_opened_as_a_service_database(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace.sqlite"
    open_workspace(workspace).close()
    with pytest.raises(ConfigError, match="not a synth_opt service database"):
        open_queue(workspace)
    conn = sqlite3.connect(tmp_path / "fresh.sqlite")
    conn.close()
    with open_queue(tmp_path / "fresh.sqlite"):
        pass
    conn = sqlite3.connect(tmp_path / "fresh.sqlite")
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_the_seed_example_flow(tmp_path: Path) -> None:
    db = tmp_path / "service.sqlite"
    request = workspace_submit_run_request(db, config(tmp_path))
    assert request["run_id"] == "svc" and request["container_url"] == "http://127.0.0.1:8102"
    assert request["cache_namespace"] and request["config_path"] == str((tmp_path / "gepa.toml").resolve())
    assert request["run_dir"] == str((tmp_path / "runs" / "svc").resolve())
    claimed = workspace_claim_next_run_request(db, "worker-lease-1")
    assert claimed is not None and claimed["request_id"] == request["request_id"] and claimed["lease_token"]
    workspace_start_run_request(db, claimed["request_id"])
    beat = workspace_heartbeat_run_request(db, claimed["request_id"], claimed["lease_token"])
    assert beat["status"] == "running"
    done = workspace_complete_run_request(db, claimed["request_id"])
    assert done["status"] == "completed"


def test_submission_fixes_the_run_id_and_checks_the_config(tmp_path: Path) -> None:
    db = tmp_path / "service.sqlite"
    generated = workspace_submit_run_request(db, config(tmp_path, run_id=None, cache="off"), priority=4)
    assert generated["run_id"].startswith("gepa-") and generated["cache_namespace"] is None
    assert generated["priority"] == 4
    with pytest.raises(QueueConflictError):
        workspace_submit_run_request(db, tmp_path / "gepa.toml")
    same = workspace_submit_run_request(db, config(tmp_path, "k.toml", run_id="k"), idempotency_key="k1")
    assert (
        workspace_submit_run_request(db, tmp_path / "k.toml", idempotency_key="k1")["request_id"] == same["request_id"]
    )
    with pytest.raises(ConfigError, match="not found"):
        workspace_submit_run_request(db, tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[run]\nbogus = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bogus"):
        workspace_submit_run_request(db, tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="priority"):
        p_toml = config(tmp_path, "p.toml", run_id="p")
        workspace_submit_run_request(db, p_toml, priority="high")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="worker_id"):
        workspace_claim_next_run_request(db, "")


def test_cancel_through_the_functions(tmp_path: Path) -> None:
    db = tmp_path / "service.sqlite"
    request = workspace_submit_run_request(db, config(tmp_path))
    assert workspace_cancel_run_request(db, request["request_id"])["status"] == "cancelled"
    assert workspace_claim_next_run_request(db, "w") is None


def test_open_queue_takes_a_path_or_a_sqlite_url_and_names_an_unknown_scheme(tmp_path: Path) -> None:
    from synth_opt.service.queue.sqlite import SqliteRunQueue

    for location in (tmp_path / "a.sqlite", str(tmp_path / "b.sqlite"), f"sqlite:///{tmp_path / 'c.sqlite'}"):
        with open_queue(location) as queue:
            assert isinstance(queue, SqliteRunQueue)
    assert sorted(path.name for path in tmp_path.glob("*.sqlite")) == ["a.sqlite", "b.sqlite", "c.sqlite"]
    with pytest.raises(ConfigError) as caught:
        open_queue("redis://user:secret@db.example/0")
    message = caught.value.message
    assert "'redis://user:***@db.example/0'" in message and "secret" not in message  # the URL, redacted
    assert "'redis'" in message and "sqlite:///path" in message and "postgresql://" in message  # what is supported
    assert caught.value.detail["supported_schemes"] == ["sqlite", "postgresql"]
    for bad in ("sqlite://relative.sqlite", "mysql://localhost/0", "sqlite:///"):
        with pytest.raises(ConfigError, match="queue"):
            open_queue(bad)


def test_a_relative_sqlite_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_queue("sqlite:///rel.sqlite") as queue:
        assert queue.submit(run_id="r", config_path="/c.toml").request.status == "queued"
    assert (tmp_path / "rel.sqlite").is_file()


@pytest.mark.anyio
async def test_a_write_cancelled_while_it_waits_for_the_lock_leaves_no_transaction_open(tmp_path: Path) -> None:
    db = tmp_path / "service.sqlite"
    open_queue(db).close()
    async with open_queue(db).open_async() as aq:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(functools.partial(aq.submit, run_id="r1", config_path="/c/r1.toml"))
            await anyio.sleep(0.3)  # the submit waits inside BEGIN IMMEDIATE (busy_timeout)
            tasks.cancel_scope.cancel()  # a heartbeat cancelled as its run ends, say
            holder.execute("ROLLBACK")
        holder.close()
        assert not aq.conn.in_transaction
        later = await aq.submit(run_id="r2", config_path="/c/r2.toml")  # the one connection still writes
    assert open_queue(db).get(later.request.request_id) == later.request
