"""Child processes in their own process group: signal, watch and stop the whole group.

Everything synth_opt launches (a local container, an app-server proposer, the workspace writer) starts with
``start_new_session=True`` and so leads a new process group: whatever it spawns can be signalled at once.
Stopping goes from polite to certain: optionally close stdin (a healthy stdio server exits on EOF), SIGTERM the
group, wait, SIGKILL what is left, and reap the leader.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import anyio
from anyio.abc import Process

__all__ = ["process_group_alive", "reap", "signal_group", "stop_process_group", "terminate_group"]


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to the group; False when it is gone (or not ours)."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def process_group_alive(pgid: int) -> bool:
    """Whether a live process remains in the group.

    Zombies do not count: under an init that does not reap orphans (some container runtimes), a stopped
    container's orphaned children stay zombies forever and would make the group look alive.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rfind(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            return True
    return False


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


async def terminate_group(process: Process, *, grace_seconds: float, eof_grace_seconds: float = 0.0) -> None:
    """Stop ``process`` and its group: close stdin first when ``eof_grace_seconds`` > 0, then SIGTERM, then,
    after ``grace_seconds``, SIGKILL whatever is left (stragglers included); reap the leader."""
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

    For callers outside an event loop (signal handlers, atexit, tests). Reaps ``pid`` when it is our child.
    """
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
