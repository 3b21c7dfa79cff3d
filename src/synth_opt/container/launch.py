"""Launching and stopping a local container process (SPEC §3 ``[container] command``).

The process runs in its own session, so its whole process group (a server and anything it spawned) can be stopped
together; stopping happens on every way out of the context manager, cancellation included, under a shielded scope,
and an orphan watchdog (:mod:`synth_opt.watchdog`) stops the group should this process die first. While the
context is open the process is watched: if it exits on its own, the body is cancelled at once and a
ContainerContractError names its exit code. Output goes to a log file rather than a pipe, so a chatty container
can never block on a full pipe, and the last lines of that log explain an early exit.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio
import httpx
from anyio.abc import Process

from synth_opt.errors import ContainerContractError, collapse_exception_group
from synth_opt.processes import open_group_process, process_group_alive, stop_process_group, terminate_group
from synth_opt.urls import join_path

__all__ = [
    "LaunchedContainer",
    "free_loopback_port",
    "launched_container",
    "process_group_alive",
    "stop_process_group",
]

DEFAULT_STOP_GRACE_SECONDS: Final = 5.0
_HEALTH_POLL_SECONDS: Final = 0.05
_LOG_TAIL_LINES: Final = 20


@dataclass(frozen=True, slots=True)
class LaunchedContainer:
    url: str
    pid: int
    log_path: Path


def free_loopback_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the usual bind-to-zero trick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def launched_container(
    command: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str],
    startup_timeout_seconds: float,
    url: str | None = None,
    health_headers: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    stop_grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS,
) -> AsyncIterator[LaunchedContainer]:
    """Start ``command``, wait until ``GET {url}/health`` answers 200, yield, then stop its process group.

    With ``url`` None a free loopback port is chosen. The port (from ``url`` when it names one) replaces the
    literal ``{port}`` in any argument and is exported as ``PORT`` and ``SYNTH_CONTAINER_PORT``. ``env`` is
    layered over this process's environment.
    """
    if not command:
        raise ContainerContractError("[container] command is empty; give the argv list that starts the container")
    port: int | None
    if url is None:
        port = free_loopback_port()
        url = f"http://127.0.0.1:{port}"
    else:
        port = httpx.URL(url).port
    url = url.rstrip("/")
    argv = [arg.replace("{port}", str(port)) if port is not None else arg for arg in command]
    child_env = {**os.environ, **dict(env)}
    if port is not None:
        child_env["PORT"] = child_env["SYNTH_CONTAINER_PORT"] = str(port)

    temp_dir: Path | None = None
    if log_path is None:
        temp_dir = Path(tempfile.mkdtemp(prefix="synth-opt-container-"))
        log_path = temp_dir / "container.log"
    shown = shlex.join(argv)
    try:
        process = await _spawn(argv, cwd=cwd, env=child_env, log_path=log_path, shown=shown)
        try:
            await _wait_until_healthy(
                process,
                url,
                shown=shown,
                log_path=log_path,
                limit_seconds=startup_timeout_seconds,
                headers=health_headers,
            )
            try:
                async with anyio.create_task_group() as watching:
                    # an exit while the run uses the container fails the run at once (the watcher raises into
                    # this task group, which cancels the body); stopping it ourselves cancels the watcher first
                    watching.start_soon(_fail_on_exit, process, shown, url, log_path)
                    try:
                        yield LaunchedContainer(url=url, pid=process.pid, log_path=log_path)
                    finally:
                        watching.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                raise collapse_exception_group(group) from None
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(process, stop_grace_seconds)
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


async def _spawn(argv: list[str], *, cwd: Path | None, env: dict[str, str], log_path: Path, shown: str) -> Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        try:
            return await open_group_process(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            raise ContainerContractError(
                f"could not start container command {shown!r} (cwd {cwd or '.'}): {exc.strerror or exc}; "
                "check [container] command and cwd",
                command=argv,
            ) from exc


async def _wait_until_healthy(
    process: Process,
    url: str,
    *,
    shown: str,
    log_path: Path,
    limit_seconds: float,
    headers: Mapping[str, str] | None,
) -> None:
    deadline = anyio.current_time() + limit_seconds
    last_problem = "no answer yet"
    async with httpx.AsyncClient(headers=dict(headers or {})) as http:
        while True:
            if process.returncode is not None:
                raise ContainerContractError(
                    f"container command {shown!r} exited with code {process.returncode} before "
                    f"{url}/health answered; fix the command (last lines of its log {log_path}):\n"
                    f"{_log_tail(log_path)}",
                    command=shown,
                    url=url,
                    returncode=process.returncode,
                )
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise ContainerContractError(
                    f"container command {shown!r} did not answer GET {url}/health with 200 within "
                    f"{limit_seconds:g} s ({last_problem}); raise [container] startup_timeout_seconds or "
                    f"check that it listens on that URL (last lines of its log {log_path}):\n"
                    f"{_log_tail(log_path)}",
                    command=shown,
                    url=url,
                )
            try:
                response = await http.get(join_path(url, "health"), timeout=min(1.0, remaining))
            except httpx.RequestError as exc:
                last_problem = f"last attempt: {type(exc).__name__}"
            else:
                if response.status_code == 200:
                    return
                last_problem = f"last attempt: HTTP {response.status_code}"
            await anyio.sleep(min(_HEALTH_POLL_SECONDS, max(0.0, deadline - anyio.current_time())))


async def _fail_on_exit(process: Process, shown: str, url: str, log_path: Path) -> None:
    code = await process.wait()
    raise ContainerContractError(
        f"the launched container {shown!r} at {url} exited with code {code} while the run was using it; the run "
        f"cannot go on without it (last lines of its log {log_path}):\n{_log_tail(log_path)}",
        command=shown,
        url=url,
        returncode=code,
    )


async def _stop(process: Process, grace_seconds: float) -> None:
    await terminate_group(process, grace_seconds=grace_seconds)


def _log_tail(log_path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - 16_384))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return "(log unavailable)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log is empty)"
