"""Secrets in URLs reach no file, row or log line: a whole run through the CLI whose container url, proposer
``base_url`` and policy ``base_url`` carry ``user:secret@`` (and the container and policy urls ``?key=secret``),
against a real container process and a real OpenAI-compatible proposer server. Nothing the run writes (run
directory, cache database, workspace database, run registry) and nothing it prints contains the secret; the same
holds for a run whose proposer fails on a url with a secret in it, and for the standing service: a request for
such a config is stored, served and run without the secret in its database rows or its responses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from litestar.testing import AsyncTestClient

from synth_opt.service.app import create_app
from synth_opt.testing import FakeOpenAI, serve_fake_openai

from .test_fault_container import fault_container

pytestmark = pytest.mark.slow

SECRET = "secret"
CLI = (sys.executable, "-m", "synth_opt", "gepa", "run")


@contextmanager
def proposer_server() -> Iterator[str]:
    fake = FakeOpenAI(lambda prompt: json.dumps({"proposals": ["Say w0 w1 w2 w3 w4 w5."]}))
    with serve_fake_openai(fake) as url:
        yield url


def with_secret(url: str, *, query: bool) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://user:{SECRET}@{rest.rstrip('/')}/" + ("?key=" + SECRET if query else "")


def write_config(tmp_path: Path, container_url: str, proposer_url: str) -> Path:
    path = tmp_path / "gepa.toml"
    path.write_text(
        f"""
[run]
run_id = "hidden"
output_dir = {str(tmp_path / "runs")!r}

[container]
url = {container_url!r}

[dataset]
train_ids = {{count = 6}}
heldout_ids = {{count = 4}}

[policy]
type = "llm"
model = "some-model"
base_url = "http://user:{SECRET}@llm.invalid/v1?key={SECRET}&x={SECRET}"

[proposer]
backend = "openai_compatible"
base_url = {proposer_url!r}
model = "fake-model"
api_key_env = "FAKE_OPENAI_KEY"

[gepa]
max_train_rollouts = 24
minibatch_size = 2

[cache]
mode = "readwrite"
"""
    )
    return path


def run_cli(tmp_path: Path, path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--config", str(path), "--no-progress", "--fresh", "--log-format", "json", "--log-level", "debug"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**os.environ, "FAKE_OPENAI_KEY": "not-a-real-key", **env},
    )


def assert_no_secret_anywhere(tmp_path: Path, done: subprocess.CompletedProcess[str]) -> None:
    assert done.stderr.count("\n") > 5, "log lines were written"
    assert SECRET not in done.stdout and SECRET not in done.stderr, done.stderr[-3000:]
    files = [file for file in (tmp_path / "runs").rglob("*") if file.is_file()]
    names = {file.name for file in files}
    assert {"events.jsonl", "workspace.sqlite", "cache.sqlite", "result_manifest.json"} <= names, names
    for file in files:
        assert SECRET.encode() not in file.read_bytes(), file


def test_url_passwords_and_query_values_reach_no_file_row_or_log_line_of_a_whole_run(tmp_path: Path) -> None:
    with fault_container() as served, proposer_server() as proposer_url:
        path = write_config(tmp_path, with_secret(served.url, query=True), with_secret(proposer_url, query=False))
        # the policy's url set again from the environment: the manifest's overrides show it, without its secrets
        override = f"http://user:{SECRET}@llm.invalid/v2?key={SECRET}"
        done = run_cli(tmp_path, path, SYNTH_OPTIMIZERS_POLICY_BASE_URL=override)
    assert done.returncode == 0, done.stderr[-3000:]
    events = (tmp_path / "runs" / "hidden" / "events.jsonl").read_text()
    assert "user:***@127.0.0.1" in events  # the url is shown, its secret is not
    manifest = json.loads((tmp_path / "runs" / "hidden" / "result_manifest.json").read_text())
    assert manifest["overrides_applied"] == {
        "SYNTH_OPTIMIZERS_POLICY_BASE_URL": "http://user:***@llm.invalid/v2?key=***"
    }
    assert_no_secret_anywhere(tmp_path, done)


def test_url_passwords_and_query_values_reach_no_file_or_log_line_when_the_proposer_fails(tmp_path: Path) -> None:
    with fault_container() as served, proposer_server() as proposer_url:
        broken = with_secret(proposer_url, query=False).replace("/v1/", "/nowhere/") + f"?token={SECRET}"
        path = write_config(tmp_path, with_secret(served.url, query=True), broken)
        done = run_cli(tmp_path, path)
    # the start-up check of the proposer fails (before any rollout and any run directory), naming the URL without
    # its secrets
    assert done.returncode == 2, done.stderr[-3000:]
    assert "GET http://user:***@127.0.0.1" in done.stderr and "token=***" in done.stderr
    assert SECRET not in done.stdout and SECRET not in done.stderr
    assert not (tmp_path / "runs").exists()


async def finished(client: AsyncTestClient[Any], request_id: str) -> dict[str, Any]:
    with anyio.fail_after(90):
        while True:  # polling keeps the test short; the service's event stream is tested elsewhere
            view: dict[str, Any] = (await client.get(f"/runs/{request_id}")).json()
            if view["status"] in ("completed", "failed", "cancelled"):
                return view
            await anyio.sleep(0.2)


@pytest.mark.anyio
async def test_the_service_stores_and_serves_a_request_without_the_secrets_of_its_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "not-a-real-key")
    db = tmp_path / "service.sqlite"
    with fault_container() as served, proposer_server() as proposer_url:
        path = write_config(tmp_path, with_secret(served.url, query=True), with_secret(proposer_url, query=False))
        app = create_app(db, worker_id="w", config_root=tmp_path, poll_seconds=0.2, auto_start=True)
        async with AsyncTestClient(app, timeout=30) as client:
            submitted = await client.post("/runs", json={"config_path": path.name})
            assert submitted.status_code == 201, submitted.text
            request_id = submitted.json()["request_id"]
            view = await finished(client, request_id)
            answers = [submitted.text, (await client.get(f"/runs/{request_id}")).text]
            for route in ("/runs", "/status", f"/runs/{request_id}/events"):
                answers.append((await client.get(route)).text)
    assert view["status"] == "completed", view
    assert view["container_url"].startswith("http://user:***@127.0.0.1") and "key=***" in view["container_url"]
    for answer in answers:
        assert SECRET not in answer, answer[:2000]
    for file in tmp_path.glob("service.sqlite*"):
        assert SECRET.encode() not in file.read_bytes(), file
    for file in (tmp_path / "runs").rglob("*"):
        assert not file.is_file() or SECRET.encode() not in file.read_bytes(), file
