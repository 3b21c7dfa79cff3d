"""Fail before spending: a proposer that cannot work is reported at start-up, before the container is asked for a
single rollout (a missing codex binary, a program that does not run, an unreachable or unset endpoint, an unset
API-key variable)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from synth_opt import ConfigError, GepaRun, load_config
from synth_opt.container.launch import free_loopback_port
from synth_opt.testing import FakeOpenAI, serve_fake_openai

from .test_openai_proposer_run import learn
from .test_pipeline_fake import new_fake


def write(tmp_path: Path, proposer: str) -> Path:
    path = tmp_path / "gepa.toml"
    path.write_text(
        f"""
[container]
url = "http://fake-container.test"

[dataset]
train_ids = {{count = 12}}
heldout_ids = {{count = 4}}

[proposer]
{proposer}

[gepa]
max_train_rollouts = 60

[cache]
mode = "off"
"""
    )
    return path


async def fails_at_start(path: Path) -> str:
    container = new_fake()
    with pytest.raises(ConfigError) as caught:
        await GepaRun(load_config(path), container_transport=container.transport()).execute_async()
    assert container.rollouts_served == 0  # nothing was spent
    return caught.value.message


@pytest.mark.anyio
async def test_a_missing_codex_binary_fails_before_any_rollout(tmp_path: Path) -> None:
    message = await fails_at_start(write(tmp_path, 'backend = "codex_app_server"\ncommand = ["no-such-codex-9f2"]'))
    assert "'no-such-codex-9f2' was not found" in message and "[proposer] command" in message


@pytest.mark.anyio
async def test_a_codex_that_does_not_answer_version_fails_before_any_rollout(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    broken = tmp_path / "bin" / "codex"  # a broken codex install
    broken.write_text("#!/bin/sh\necho 'cannot start: missing library' >&2\nexit 3\n")
    broken.chmod(0o755)
    message = await fails_at_start(
        write(tmp_path, f'backend = "codex_app_server"\ncommand = ["{broken}", "app-server"]')
    )
    assert "--version` exited with code 3" in message and "missing library" in message


@pytest.mark.anyio
async def test_an_unreachable_endpoint_fails_before_any_rollout(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_loopback_port()}/v1"
    message = await fails_at_start(write(tmp_path, f'backend = "openai_compatible"\nbase_url = "{url}"'))
    assert f"GET {url}/models failed" in message


@pytest.mark.anyio
async def test_an_unset_api_key_variable_fails_before_any_rollout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFLIGHT_UNSET_KEY_9F2", raising=False)
    with serve_fake_openai(FakeOpenAI(learn)) as url:
        proposer = f'backend = "openai_compatible"\nbase_url = "{url}"\napi_key_env = "PREFLIGHT_UNSET_KEY_9F2"'
        message = await fails_at_start(write(tmp_path, proposer))
    assert "PREFLIGHT_UNSET_KEY_9F2" in message and "not set" in message


def test_the_cli_reports_a_missing_codex_binary_as_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'backend = "codex_app_server"\ncommand = ["no-such-codex-9f2"]')
    done = subprocess.run(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error[config_error]:") and "no-such-codex-9f2" in last
    assert "fake-container.test" not in done.stderr  # the container was never contacted
