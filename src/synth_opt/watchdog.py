"""Orphan watchdogs: a launched process group dies with the optimizer, whatever signal kills the optimizer.

Every process group synth_opt launches (a local container, an app-server proposer) gets a watchdog: a tiny
process, ``python -I -S watchdog.py``, in a session of its own, whose stdin is the read end of a pipe whose only
write end this process holds (non-inheritable, so no other child keeps it open). After the group starts, this
process writes ``watch <pgid>``; after the group has been stopped normally it writes ``release`` and closes the
pipe, and the watchdog exits without touching anything. When instead the pipe reaches EOF without a ``release``,
every holder of the write end is gone: the optimizer died (SIGKILL, a crash, an exit that skipped the stop path).
The watchdog then SIGTERMs the group, waits up to :data:`ORPHAN_GRACE_SECONDS` for it to go, SIGKILLs whatever
is left, and exits. Meanwhile it checks every second that the group still exists and exits once it is gone, so it
never signals a process group id the kernel has handed out again.

Why a watchdog pipe and not ``PR_SET_PDEATHSIG``:

- the parent-death signal reaches only the direct child, not the grandchildren in its group (a container's
  workers, the tools a proposer runs); the watchdog signals the whole group;
- it fires when the *thread* that spawned the child exits, not the process, so a child started from a worker
  thread (a service running runs in threads, ``anyio.to_thread``) would be killed when that thread ends; a pipe's
  write end belongs to the process and closes only when the process is gone;
- it must be set in the child between fork and exec (``preexec_fn``), which anyio's ``open_process`` does not
  offer and which is unsafe in a threaded process; the watchdog needs nothing from the child.

The cost is one small idle process per launched group. The watchdog starts before the guarded process, and the
process starts with the watchdog's own token in its environment (:data:`GUARD_VARIABLE`, inherited by whatever it
starts): should the optimizer die between the process's start and the ``watch`` line, the watchdog finds the
process groups of the processes that carry its token in ``/proc/*/environ`` and stops those, for a moment after the
pipe ends (a process forked but not yet exec'd shows its token only once it has exec'd). The watchdog's own session
keeps it out of signals sent to the optimizer's process group (Ctrl-C, ``kill -- -PGID``), and it ignores SIGINT
and SIGHUP; a SIGTERM or SIGKILL sent to the watchdog itself stops it, as it should.

This file runs as a script with the interpreter's isolated mode and without ``site``: it imports nothing but the
standard library, so it starts in milliseconds and cannot be broken by the environment it guards.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping

__all__ = [
    "GUARD_VARIABLE",
    "ORPHAN_GRACE_SECONDS",
    "GroupWatchdog",
    "main",
    "process_group_alive",
    "start_watchdog",
]

GUARD_VARIABLE = "SYNTH_OPT_WATCHDOG"  # a guarded process's environment holds its watchdog's token under this
MARKED_SCAN_SECONDS = 0.5  # how long a watchdog without a ``watch`` line keeps looking for marked processes
ORPHAN_GRACE_SECONDS = 1.0  # nobody waits for a graceful stop once the optimizer is gone; a server can flush its log
CHECK_SECONDS = 1.0  # how often an idle watchdog checks that its group still exists
_STOP_POLL_SECONDS = 0.02


def _warn(event: str, **fields: object) -> None:
    """A warning in the optimizer's process, through structlog. The import is here, not at the top: the watchdog
    script itself runs without ``site`` and imports only the standard library (it never calls this)."""
    from synth_opt.logs import get_logger

    get_logger("synth_opt.processes").warning(event, **fields)


def process_group_alive(pgid: int) -> bool:
    """Whether a live process remains in the group.

    Zombies do not count: under an init that does not reap orphans (some container runtimes), a stopped
    container's orphaned children stay zombies forever and would make the group look alive.
    """
    try:
        entries = os.listdir("/proc")
    except OSError:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rfind(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            return True
    return False


# -- the optimizer's side -----------------------------------------------------------------------------------------


class GroupWatchdog:
    """This process's end of one watchdog: the write end of its pipe and the watchdog process."""

    def __init__(self, process: subprocess.Popen[bytes], write_fd: int, token: str) -> None:
        self.process = process
        self._write_fd: int | None = write_fd
        self.pgid: int | None = None
        self.token = token  # the guarded process's environment holds it under GUARD_VARIABLE

    def environment(self, env: Mapping[str, str] | None) -> dict[str, str]:
        """``env`` (this process's environment when None) with this watchdog's token, for the guarded process."""
        return {**(os.environ if env is None else env), GUARD_VARIABLE: self.token}

    def watch(self, pgid: int) -> None:
        """Guard the process group ``pgid`` (once, right after it started)."""
        self.pgid = pgid
        if not self._send(f"watch {pgid}\n"):
            _warn("the orphan watchdog is gone; the process group will not be stopped should we die", pgid=pgid)

    def release(self) -> None:
        """The group was stopped normally: tell the watchdog to exit without signalling anything."""
        self._send("release\n")
        self._close()

    def exited(self) -> bool:
        """Whether the watchdog process has exited (and is reaped)."""
        return self.process.poll() is not None

    def kill(self) -> None:
        """Stop a watchdog that did not exit after its release (it has nothing left to guard), and reap it."""
        self._close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _send(self, line: str) -> bool:
        if self._write_fd is None:
            return False
        try:
            os.write(self._write_fd, line.encode())
        except OSError:  # the watchdog died: nothing reads the pipe
            return False
        return True

    def _close(self) -> None:
        if self._write_fd is not None:
            fd, self._write_fd = self._write_fd, None
            os.close(fd)


def start_watchdog(grace_seconds: float = ORPHAN_GRACE_SECONDS) -> GroupWatchdog | None:
    """Start a watchdog (before the process it will guard); None, with a warning, when it cannot start."""
    read_fd, write_fd = os.pipe()  # both non-inheritable; the child gets the read end as its stdin only
    token = f"{os.getpid()}-{secrets.token_hex(8)}"
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), repr(float(grace_seconds)), token],
            stdin=read_fd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as error:
        os.close(write_fd)
        _warn("the orphan watchdog did not start; a launched process may outlive a killed run", error=str(error))
        return None
    finally:
        os.close(read_fd)
    return GroupWatchdog(process, write_fd, token)


# -- the watchdog's side ------------------------------------------------------------------------------------------


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(pgid: int, grace_seconds: float) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not process_group_alive(pgid):
            return
        time.sleep(_STOP_POLL_SECONDS)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _marked_groups(token: str) -> set[int]:
    """The process groups of the live processes whose environment holds ``GUARD_VARIABLE=token``."""
    marker = f"{GUARD_VARIABLE}={token}".encode()
    groups: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return groups
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as environ:
                if marker not in environ.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rfind(")") + 2 :].split()[:3]
        if state not in ("Z", "X"):
            groups.add(int(pgrp))
    return groups


def _stop_marked(token: str, grace_seconds: float) -> None:
    """Stop the groups of the processes carrying ``token``, looking again for a moment (one may still exec)."""
    deadline = time.monotonic() + MARKED_SCAN_SECONDS
    while True:
        for group in _marked_groups(token):
            _stop_group(group, grace_seconds)
        if time.monotonic() >= deadline:
            return
        time.sleep(_STOP_POLL_SECONDS)


def main(argv: list[str]) -> int:
    grace_seconds = float(argv[0]) if argv else ORPHAN_GRACE_SECONDS
    token = argv[1] if len(argv) > 1 else None
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    pgid: int | None = None
    pending = b""
    while True:
        ready, _, _ = select.select([0], [], [], CHECK_SECONDS if pgid is not None else None)
        if not ready:
            if pgid is not None and not _group_exists(pgid):
                return 0  # the group ended on its own; its id may be reused from now on
            continue
        chunk = os.read(0, 4096)
        if not chunk:  # EOF without a release: the optimizer is gone
            if pgid is not None:
                _stop_group(pgid, grace_seconds)
            elif token is not None:  # it died before it said which group: the processes carrying our token
                _stop_marked(token, grace_seconds)
            return 0
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            word, _, argument = line.decode("ascii", errors="replace").partition(" ")
            if word == "release":
                return 0
            if word == "watch" and argument.strip().isdigit():
                pgid = int(argument)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
