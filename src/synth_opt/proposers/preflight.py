"""Fail before spending: the proposer's settings are checked at start-up, before any rollout.

A proposer is otherwise built on its first call, after the seed's rollouts are spent; a missing binary or an
unreachable endpoint would then fail the run only after paying for them. The checks are cheap and say exactly
what to fix:

- ``codex_app_server``: the command's program exists and, when it is codex itself, answers ``--version`` within
  a few seconds (another program, such as an offline app-server run by ``python`` or ``sh``, is only looked up:
  not every program takes ``--version``);
- ``openai_compatible``: ``base_url`` is set, the API-key variable (when one is named) is set, and
  ``GET {base_url}/models`` answers 2xx (with the key, when there is one).

A ``readonly`` run contacts nothing, so it is not checked (the caller skips it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import anyio
import httpx

from synth_opt.errors import ConfigError
from synth_opt.redact import redact_url
from synth_opt.urls import join_path

__all__ = ["check_codex_command", "check_openai_endpoint"]

VERSION_TIMEOUT_SECONDS: Final = 10.0
MODELS_TIMEOUT_SECONDS: Final = 10.0


async def check_codex_command(command: Sequence[str], *, cwd: Path | None = None) -> None:
    """The app-server command's program exists and runs ``--version``."""
    if not command:
        raise ConfigError("[proposer] command is empty; give the argv that starts the app-server (codex app-server)")
    program = command[0]
    found = shutil.which(program, path=os.environ.get("PATH")) if os.sep not in program else program
    if found is None or not await anyio.Path(found).exists():
        raise ConfigError(
            f"[proposer] command: program {program!r} was not found (PATH or the given path); install it (codex: "
            "npm install -g @openai/codex) or fix [proposer] command",
            field="proposer.command",
        )
    if not Path(program).name.startswith("codex"):
        return
    try:
        with anyio.fail_after(VERSION_TIMEOUT_SECONDS):
            done = await anyio.run_process(
                [found, "--version"],
                cwd=cwd,
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
    except TimeoutError:
        raise ConfigError(
            f"[proposer] command: `{found} --version` did not answer within {VERSION_TIMEOUT_SECONDS:g} s; check "
            "that the program is codex and works",
            field="proposer.command",
        ) from None
    except OSError as error:
        raise ConfigError(
            f"[proposer] command: {found} could not be started ({error.strerror or error}); fix [proposer] command",
            field="proposer.command",
        ) from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip()[-300:]
        raise ConfigError(
            f"[proposer] command: `{found} --version` exited with code {done.returncode} ({tail or 'no output'}); "
            "check that the program works",
            field="proposer.command",
        )


async def check_openai_endpoint(
    base_url: str | None,
    *,
    api_key_env: str | None,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """``base_url`` is set, the key variable is set, and ``GET {base_url}/models`` answers 2xx."""
    if not base_url:
        raise ConfigError(
            "[proposer] base_url is required when backend = 'openai_compatible' (e.g. http://127.0.0.1:8080/v1)",
            field="proposer.base_url",
        )
    environment = os.environ if env is None else env
    headers: dict[str, str] = {}
    if api_key_env:
        key = environment.get(api_key_env)
        if not key:
            raise ConfigError(
                f"[proposer] api_key_env names {api_key_env}, which is not set in the environment; export it "
                "(the key itself never goes in the config)",
                field="proposer.api_key_env",
            )
        headers["Authorization"] = f"Bearer {key}"
    url = httpx.URL(join_path(base_url, "models"))
    shown = redact_url(str(url))
    try:
        with anyio.fail_after(MODELS_TIMEOUT_SECONDS):
            async with httpx.AsyncClient(transport=transport, timeout=MODELS_TIMEOUT_SECONDS) as client:
                response = await client.get(url, headers=headers)
    except (httpx.HTTPError, TimeoutError) as error:
        raise ConfigError(
            f"[proposer] base_url: GET {shown} failed ({type(error).__name__}); start the model server or fix "
            "[proposer] base_url",
            field="proposer.base_url",
        ) from None
    if not response.is_success:
        raise ConfigError(
            f"[proposer] base_url: GET {shown} answered HTTP {response.status_code}; check [proposer] base_url "
            "and api_key_env",
            field="proposer.base_url",
            status=response.status_code,
        )
