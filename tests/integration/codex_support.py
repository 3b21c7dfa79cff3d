"""The real ``codex`` binary for integration tests, and a deterministic model for it to talk to.

:func:`codex_binary` installs ``@openai/codex`` at :data:`CODEX_VERSION` with npm into a cache directory outside
the repository (``$SYNTH_OPT_CODEX_CACHE`` or ``~/.cache/synth_opt/codex-<version>``; about 400 MB, about 10 s)
and reuses it when present. Only a missing ``npm`` skips a test; a failed install fails it.

Codex reaches the fake Responses-API server (:mod:`synth_opt.testing.fake_openai`) through a custom model
provider, see :func:`codex_overrides`. :func:`answer_adding_responder` is the fake model: it reads the
reflection request block of the prompt and adds the answer word of each failed record to the current text.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "CODEX_VERSION",
    "FAKE_MODEL",
    "PROVIDER",
    "answer_adding_responder",
    "codex_binary",
    "codex_overrides",
]

CODEX_VERSION = "0.169.0"
PROVIDER = "synth_opt_fake"
FAKE_MODEL = "fake-model"
_INSTALL_TIMEOUT_SECONDS = 300
_install_lock = threading.Lock()
_BLOCK = re.compile(r"```json synth-opt-reflection\n(.*?)\n```", re.DOTALL)


def cache_dir() -> Path:
    configured = os.environ.get("SYNTH_OPT_CODEX_CACHE")
    base = Path(configured) if configured else Path.home() / ".cache" / "synth_opt"
    return base / f"codex-{CODEX_VERSION}"


def codex_binary() -> Path:
    """The installed codex launcher, installed on first use.

    A thread lock and a file lock make concurrent tests and pytest processes share one install.
    """
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm not found: the real-codex tests install @openai/codex@{CODEX_VERSION} with npm")
    prefix = cache_dir()
    binary = prefix / "node_modules" / ".bin" / "codex"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    # the thread lock serialises tests of this process, the file lock concurrent pytest processes
    with _install_lock, (prefix.parent / f"{prefix.name}.lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if not _works(binary):
            prefix.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            done = subprocess.run(
                [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", f"@openai/codex@{CODEX_VERSION}"],
                capture_output=True,
                text=True,
                timeout=_INSTALL_TIMEOUT_SECONDS,
                check=False,
            )
            if done.returncode != 0 or not _works(binary):
                pytest.fail(
                    f"npm install @openai/codex@{CODEX_VERSION} into {prefix} failed (exit {done.returncode}, "
                    f"{time.monotonic() - started:.0f} s):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
                )
        return binary


def _works(binary: Path) -> bool:
    """True when ``binary --version`` names the pinned version (a partial install does not)."""
    if not binary.exists():
        return False
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return False
    return done.returncode == 0 and CODEX_VERSION in done.stdout


def codex_overrides(base_url: str) -> dict[str, Any]:
    """Codex ``-c`` overrides that send every model request to the fake Responses-API server at ``base_url``.

    Retries are off so a failing fake fails the turn at once (codex's defaults retry for about 25 s).
    """
    provider = {
        "name": "synth_opt fake",
        "base_url": base_url,
        "wire_api": "responses",
        "request_max_retries": 0,
        "stream_max_retries": 0,
    }
    return {f"model_providers.{PROVIDER}": provider, "model_provider": PROVIDER}


def reflection_request(prompt: str) -> dict[str, Any]:
    match = _BLOCK.search(prompt)
    if match is None:
        raise ValueError("the prompt holds no ```json synth-opt-reflection block")
    data = json.loads(match.group(1))
    assert isinstance(data, dict)
    return data


def answer_adding_responder(prompt: str) -> str:
    """The proposals JSON for ``prompt``: the current text plus the answer word of each failed record."""
    request = reflection_request(prompt)
    words = str(request["current_text"]).split()
    for record in request.get("records") or []:
        answer = (record.get("task") or {}).get("answer")
        if float(record.get("reward") or 0.0) < 1.0 and answer and str(answer) not in words:
            words.append(str(answer))
    return json.dumps({"proposals": [" ".join(words)]})
