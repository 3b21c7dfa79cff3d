"""Every claimed request gets an outcome: a failure the worker did not expect (while running the request, while
summarising it, or while writing its outcome) still completes it with an error, so it never stays ``running``
with its lease held, blocking the requests that share its container URL. And the worker holds the config it reloads
to what the request fixed at submission (run id, run directory, container URLs, cache namespace)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import anyio
import pytest

from synth_opt.config import GepaConfig
from synth_opt.service import worker as worker_module
from synth_opt.service.functions import workspace_submit_run_request
from synth_opt.service.queue import RunRequest, open_queue
from synth_opt.service.worker import run_next
from tests.integration.test_service_app import config

DOWN = "http://127.0.0.1:9"  # nothing listens: these runs fail, or are failed, before they reach a container


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "service.sqlite")
    url: str = request.getfixturevalue("postgres_url")
    return url


def next_request(db: str, worker_id: str = "w") -> RunRequest | None:
    return anyio.run(functools.partial(run_next, db, worker_id=worker_id, lease_seconds=30, poll_seconds=0.05))


def test_a_run_dir_the_file_system_refuses_fails_the_request_and_frees_its_container_url(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a run directory whose name is too long (ENAMETOOLONG): creating it fails the run, and reading what the run
    # left there (Path.exists) raises too; that used to escape the worker and leave the request running
    too_long = tmp_path / ("r" * 300)
    monkeypatch.setattr(GepaConfig, "run_dir", lambda self: too_long)
    poison = workspace_submit_run_request(db, config(tmp_path, "poison.toml", run_id="poison", url=DOWN))
    final = next_request(db)
    assert final is not None and final.request_id == poison["request_id"]
    assert final.status == "failed" and final.error is not None, final
    assert final.lease_expires_at is None and final.workspace_db_path is None
    # the container URL is free: the next request on it is claimed at once
    after = workspace_submit_run_request(db, config(tmp_path, "after.toml", run_id="after", url=DOWN))
    with open_queue(db) as queue:
        claimed = queue.claim("w2")
        assert claimed is not None and claimed.request_id == after["request_id"]


def test_an_outcome_the_queue_cannot_store_is_written_as_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    circular: dict[str, Any] = {"status": "succeeded"}
    circular["itself"] = circular

    class Unstorable:
        def to_json(self) -> dict[str, Any]:
            return circular

    async def finished(execution: Any, config: Any) -> Unstorable:
        return Unstorable()

    monkeypatch.setattr(worker_module, "_run_gepa", finished)
    db = str(tmp_path / "service.sqlite")
    request = workspace_submit_run_request(db, config(tmp_path, url=DOWN))
    final = next_request(db)
    assert final is not None and final.request_id == request["request_id"]
    assert final.status == "failed" and final.error is not None and final.error["code"] == "run_failed"
    assert "outcome could not be written" in final.error["message"], final.error


@pytest.mark.parametrize(
    ("field", "before", "after"),
    [
        ("run_id", 'run_id = "svc"', 'run_id = "renamed"'),
        ("container_url", DOWN, "http://127.0.0.1:10"),
        ("cache_namespace", 'mode = "off"', 'mode = "readwrite"'),
    ],
)
def test_a_config_changed_after_submission_fails_the_request_naming_the_field(
    tmp_path: Path, field: str, before: str, after: str
) -> None:
    db = str(tmp_path / "service.sqlite")
    path = config(tmp_path, url=DOWN)
    request = workspace_submit_run_request(db, path)
    text = path.read_text(encoding="utf-8")
    assert before in text
    path.write_text(text.replace(before, after), encoding="utf-8")
    final = next_request(db)
    assert final is not None and final.request_id == request["request_id"]
    assert final.status == "failed" and final.error is not None, final
    assert final.error["code"] == "config_error" and final.error["detail"]["field"] == field, final.error
    assert f"changed since run request {final.request_id} was submitted" in final.error["message"]
    assert "submit the config again" in final.error["message"]
    assert not (tmp_path / "runs").exists()  # nothing ran
