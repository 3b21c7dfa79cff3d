"""A submitted config may touch only what the service allows: its paths lie under the config root or the runs root,
and it starts programs of its own only when the service runs with ``--allow-commands``. Refused at submission with a
400 naming the key, and again when a worker executes it (the file may have changed in between)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_service_app import config, error_of, service
from tests.integration.test_service_runs import stop, synth_opt, wait_healthy
from tests.integration.test_service_server import free_port

# a run that names a standing container (unless it launches one) and an HTTP proposer: no program of its own
PLAIN = """
[run]
run_id = "{run_id}"
{run}

[container]
{url}
{container}

[dataset]
train_ids = {{count = 2}}

[proposer]
backend = "{backend}"
base_url = "http://127.0.0.1:9/v1"
{proposer}

[cache]
mode = "{cache_mode}"
{cache}
"""


def plain(root: Path, name: str = "gepa.toml", **sections: str) -> str:
    values = {"run": "", "container": "", "proposer": "", "cache": "", "backend": "openai_compatible"}
    values["run_id"] = name.removesuffix(".toml")
    values["cache_mode"] = "readwrite"
    values.update(sections)
    values["url"] = "" if "command =" in values["container"] else 'url = "http://127.0.0.1:9"'
    (root / name).write_text(PLAIN.format(**values), encoding="utf-8")
    return name


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A config root, a separate runs root, and a directory outside both."""
    folders = tuple(tmp_path / name for name in ("configs", "runs-root", "elsewhere"))
    for folder in folders:
        folder.mkdir()
    return folders  # type: ignore[return-value]


@pytest.mark.anyio
async def test_paths_outside_the_roots_are_refused_with_a_400_naming_the_key(roots: tuple[Path, Path, Path]) -> None:
    root, runs, elsewhere = roots
    (root / "escape").symlink_to(elsewhere)
    (elsewhere / "prompt.md").write_text("{current_text}\n{instructions}")  # a readable file, outside the roots
    cases = [
        ("run.output_dir", plain(root, "a.toml", run=f'output_dir = "{elsewhere}"')),
        ("run.output_dir", plain(root, "b.toml", run='output_dir = "../elsewhere"')),
        ("run.output_dir", plain(root, "c.toml", run='output_dir = "escape/runs"')),  # a symlink out of the root
        ("cache.path", plain(root, "d.toml", cache=f'path = "{elsewhere}/cache.sqlite"')),
        (
            "proposer.codex_home",
            plain(root, "e.toml", backend="codex_app_server", proposer=f'codex_home = "{elsewhere}/codex"'),
        ),
        ("proposer.prompt_template", plain(root, "h.toml", proposer=f'prompt_template = "{elsewhere}/prompt.md"')),
        (
            "tracking.mlflow_tracking_uri",
            plain(root, "i.toml", cache=f'[tracking]\nmlflow_tracking_uri = "sqlite:///{elsewhere}/mlflow.db"'),
        ),
    ]
    async with service(root, runs_root=runs, allow_commands=False) as client:
        for key, name in cases:
            error = error_of(await client.post("/runs", json={"config_path": name}), 400, "config_not_allowed")
            assert error["detail"]["field"] == key, error
            assert key in error["message"] and str(elsewhere) in error["message"], error
        assert (await client.get("/runs")).json()["requests"] == []  # nothing was queued
        # under either root is fine
        inside = plain(root, "f.toml", run='output_dir = "runs"')
        beside = plain(root, "g.toml", run=f'output_dir = "{runs}/out"')
        for name in (inside, beside):
            created = await client.post("/runs", json={"config_path": name, "auto_start": False})
            assert created.status_code == 201, created.text
        status = (await client.get("/status")).json()
        assert status["runs_root"] == str(runs.resolve()) and status["allow_commands"] is False


@pytest.mark.anyio
async def test_commands_need_allow_commands(roots: tuple[Path, Path, Path]) -> None:
    root, _, elsewhere = roots
    launched = plain(root, "launch.toml", container='command = ["{python}", "-c", "print(1)"]')
    fake_codex = plain(root, "codex.toml", backend="codex_app_server", proposer='command = ["sh", "-c", "id"]')
    mcp = plain(
        root,
        "mcp.toml",
        backend="codex_app_server",
        proposer='config = { "mcp_servers.x.command" = "sh", notify = ["sh", "-c", "id"] }',
    )
    (root / "task.toml").write_text(
        '[run]\nrun_id = "task"\n[container]\ntask = "fruit:mentions"\n[dataset]\ntrain_ids = {count = 2}\n'
        '[proposer]\nbackend = "offline"\n'
    )
    async with service(root, allow_commands=False) as client:
        refused = error_of(await client.post("/runs", json={"config_path": launched}), 400, "config_not_allowed")
        assert refused["detail"]["field"] == "container.command" and "--allow-commands" in refused["message"]
        refused = error_of(await client.post("/runs", json={"config_path": "task.toml"}), 400, "config_not_allowed")
        assert refused["detail"]["field"] == "container.task" and "Python code" in refused["message"]
        refused = error_of(await client.post("/runs", json={"config_path": fake_codex}), 400, "config_not_allowed")
        assert refused["detail"]["field"] == "proposer.command"
        refused = error_of(await client.post("/runs", json={"config_path": mcp}), 400, "config_not_allowed")
        assert refused["detail"]["keys"] == ["proposer.config.mcp_servers.x.command", "proposer.config.notify"]
        default_codex = plain(root, "default.toml", backend="codex_app_server")
        assert (await client.post("/runs", json={"config_path": default_codex, "auto_start": False})).status_code == 201
    outside_program = plain(root, "program.toml", container=f'command = ["{elsewhere}/serve", "{{port}}"]')
    outside_cwd = plain(root, "cwd.toml", container=f'command = ["{{python}}", "x.py"]\ncwd = "{elsewhere}"')
    async with service(root, allow_commands=True) as client:
        for name in (launched, fake_codex, mcp, "task.toml"):
            created = await client.post("/runs", json={"config_path": name, "auto_start": False})
            assert created.status_code == 201, created.text
            await client.post(f"/runs/{created.json()['request_id']}/cancel")
        error = error_of(await client.post("/runs", json={"config_path": outside_program}), 400, "config_not_allowed")
        assert error["detail"]["field"] == "container.command" and f"{elsewhere}/serve" in error["message"]
        error = error_of(await client.post("/runs", json={"config_path": outside_cwd}), 400, "config_not_allowed")
        assert error["detail"]["field"] == "container.cwd"


@pytest.mark.anyio
async def test_a_config_changed_after_submission_is_refused_when_the_worker_runs_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    plain(tmp_path)
    async with service(tmp_path, allow_commands=False) as client:
        created = await client.post("/runs", json={"config_path": "gepa.toml", "auto_start": False})
        assert created.status_code == 201, created.text
        # now the file asks for a program of its own
        plain(tmp_path, container=f'command = ["{{python}}", "-c", "open({str(marker)!r}, \'w\')", "{{port}}"]')
        final = (await client.post("/worker/run-next")).json()["request"]
    assert final["status"] == "failed", final
    assert final["error"]["code"] == "config_not_allowed"
    assert final["error"]["detail"]["field"] == "container.command"
    assert not marker.exists()
    assert not (tmp_path / "runs" / "gepa").exists()  # nothing ran: not even a run directory


def test_the_service_command_refuses_commands_unless_allowed(tmp_path: Path) -> None:
    """``synth-opt gepa service`` as a process on loopback: without --allow-commands a launching config is a 400;
    with it, the same config runs to completion."""
    config(tmp_path)
    for allow, expected in ((False, 400), (True, 201)):
        port = free_port()
        flags = ["--allow-commands"] if allow else []
        server = synth_opt(
            "gepa",
            "service",
            "--db",
            str(tmp_path / "service.sqlite"),
            "--bind",
            f"127.0.0.1:{port}",
            "--config-root",
            str(tmp_path),
            *flags,
            cwd=tmp_path,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}", server)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                response = client.post("/runs", json={"config_path": "gepa.toml"})
                assert response.status_code == expected, response.text
                if not allow:
                    assert response.json()["error"]["detail"]["field"] == "container.command"
                    continue
                request = _wait(client, response.json()["request_id"])
                assert request["status"] == "completed", request["error"]
        finally:
            stop(server)


def _wait(client: httpx.Client, request_id: str, within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        request: dict[str, Any] = client.get(f"/runs/{request_id}").json()
        if request["status"] in {"completed", "failed", "cancelled"} or time.monotonic() > deadline:
            return request
        time.sleep(0.1)


def test_run_next_holds_the_config_to_the_rules_when_given_a_config_root(tmp_path: Path) -> None:
    from synth_opt.service.queue import open_queue

    path = config(tmp_path)
    with open_queue(tmp_path / "service.sqlite") as queue:
        queue.submit(run_id="svc", config_path=str(path), run_dir=str(tmp_path / "runs" / "svc"))
    command = [sys.executable, "-m", "synth_opt", "gepa", "run-next", "--db", str(tmp_path / "service.sqlite")]
    done = subprocess.run(
        [*command, "--config-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert '"code": "config_not_allowed"' in done.stdout, done.stdout
    assert not (tmp_path / "runs" / "svc").exists()
