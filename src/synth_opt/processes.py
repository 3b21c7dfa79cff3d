"""Child processes in their own process group: signal, watch and stop the whole group.

A local container and an app-server proposer start through :func:`open_group_process`: with
``start_new_session=True``, so each leads a new process group and whatever it spawns can be signalled at once, and
with an orphan watchdog (:mod:`synth_opt.watchdog`) that stops the group should this process die without stopping
it (SIGKILL included). Stopping goes from polite to certain: optionally close stdin (a healthy stdio server exits on
EOF), SIGTERM the group, wait, SIGKILL what is left, and reap the leader; then the watchdog is released.
(The workspace writer is a plain child: it exits on its own when its stdin, a pipe from this process, ends.)
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import anyio
from anyio.abc import Process

from synth_opt.watchdog import GroupWatchdog, process_group_alive, start_watchdog

__all__ = [
    "open_group_process",
    "process_group_alive",
    "reap",
    "signal_group",
    "stop_process_group",
    "terminate_group",
]

_WATCHDOG_EXIT_SECONDS = 2.0
_STRAGGLER_SECONDS = 0.5  # after SIGKILL, for the group's last members to go before its watchdog is released
_WATCHDOG_POLL_SECONDS = 0.01
# The watchdog of each group this process started and has not stopped yet, by the group's id (its leader's pid).
_watchdogs: dict[int, GroupWatchdog] = {}


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to the group; False when it is gone (or not ours)."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


async def open_group_process(
    command: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | IO[Any] | None = -1,
    stdout: int | IO[Any] | None = -1,
    stderr: int | IO[Any] | None = -1,
) -> Process:
    """``anyio.open_process`` in a new session (so the process leads its own group), guarded by an orphan
    watchdog until :func:`terminate_group` or :func:`stop_process_group` has stopped the group. (``-1`` is
    ``subprocess.PIPE``, as in ``anyio.open_process``.)"""
    _sweep()
    watchdog = start_watchdog()  # before the process, which carries its token until ``watch`` names its group
    if watchdog is not None:
        env = watchdog.environment(env)
    try:
        process = await anyio.open_process(
            list(command), cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True
        )
    except BaseException:
        if watchdog is not None:
            with anyio.CancelScope(shield=True):
                await _dismiss(watchdog)
        raise
    if watchdog is not None:  # no await since the start: the group cannot have been stopped yet
        watchdog.watch(process.pid)
        _watchdogs[process.pid] = watchdog
    return process


async def _dismiss(watchdog: GroupWatchdog) -> None:
    """Release a watchdog and wait (briefly) for it to exit; kill it if it does not."""
    watchdog.release()
    deadline = anyio.current_time() + _WATCHDOG_EXIT_SECONDS
    while not watchdog.exited() and anyio.current_time() < deadline:  # noqa: ASYNC110
        await anyio.sleep(_WATCHDOG_POLL_SECONDS)
    watchdog.kill()


def _dismiss_sync(watchdog: GroupWatchdog) -> None:
    watchdog.release()
    deadline = time.monotonic() + _WATCHDOG_EXIT_SECONDS
    while not watchdog.exited() and time.monotonic() < deadline:
        time.sleep(_WATCHDOG_POLL_SECONDS)
    watchdog.kill()


def _sweep() -> None:
    """Reap the watchdogs that exited on their own (their group ended without being stopped through here)."""
    for pgid, watchdog in list(_watchdogs.items()):
        if watchdog.exited():
            _watchdogs.pop(pgid, None)
            watchdog.kill()


async def terminate_group(process: Process, *, grace_seconds: float, eof_grace_seconds: float = 0.0) -> None:
    """Stop ``process`` and its group: close stdin first when ``eof_grace_seconds`` > 0, then SIGTERM, then,
    after ``grace_seconds``, SIGKILL whatever is left (stragglers included); reap the leader and release the
    group's orphan watchdog."""
    watchdog = _watchdogs.pop(process.pid, None)  # taken before the leader is reaped and its pid can be reused
    try:
        await _terminate_group(process, grace_seconds=grace_seconds, eof_grace_seconds=eof_grace_seconds)
    finally:
        if watchdog is not None:
            with anyio.CancelScope(shield=True):
                deadline = anyio.current_time() + _STRAGGLER_SECONDS
                while process_group_alive(process.pid) and anyio.current_time() < deadline:  # noqa: ASYNC110
                    await anyio.sleep(_WATCHDOG_POLL_SECONDS)
                if process_group_alive(process.pid):  # stopping was cut short: keep guarding the group
                    _watchdogs.setdefault(process.pid, watchdog)
                else:
                    await _dismiss(watchdog)


async def _terminate_group(process: Process, *, grace_seconds: float, eof_grace_seconds: float) -> None:
    if eof_grace_seconds > 0 and process.returncode is None and process.stdin is not None:
        try:
            await process.stdin.aclose()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        with anyio.move_on_after(eof_grace_seconds):
            await process.wait()
    pgid = process.pid
    signal_group(pgid, signal.SIGTERM)
    deadline = anyio.current_time() + grace_seconds
    with anyio.move_on_after(grace_seconds):
        await process.wait()
        # Stragglers in the group are not our children, so there is nothing to await but time.
        while process_group_alive(pgid) and anyio.current_time() < deadline:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    if process.returncode is None or process_group_alive(pgid):
        signal_group(pgid, signal.SIGKILL)
    await process.wait()


def stop_process_group(pid: int, grace_seconds: float = 5.0) -> bool:
    """Synchronously stop the process group led by ``pid``: SIGTERM, wait, SIGKILL; True if it had to kill.

    For callers outside an event loop (signal handlers, atexit, tests). Reaps ``pid`` when it is our child and
    releases the group's orphan watchdog.
    """
    watchdog = _watchdogs.pop(pid, None)
    try:
        return _stop_process_group(pid, grace_seconds)
    finally:
        if watchdog is not None:
            deadline = time.monotonic() + _STRAGGLER_SECONDS
            while process_group_alive(pid) and time.monotonic() < deadline:
                time.sleep(_WATCHDOG_POLL_SECONDS)
            if process_group_alive(pid):
                _watchdogs.setdefault(pid, watchdog)
            else:
                _dismiss_sync(watchdog)


def _stop_process_group(pid: int, grace_seconds: float) -> bool:
    if not signal_group(pid, signal.SIGTERM):
        reap(pid)
        return False
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        reap(pid)
        if not process_group_alive(pid):
            return False
        time.sleep(0.02)
    signal_group(pid, signal.SIGKILL)
    for _ in range(100):
        reap(pid)
        if not process_group_alive(pid):
            break
        time.sleep(0.01)
    return True
