"""One owner per run directory: an exclusive OS lock held for the run's whole life.

The run directory itself and ``<run_dir>/run.lock`` in it are locked with ``flock(LOCK_EX | LOCK_NB)`` before
anything in the directory changes (resume, ``--fresh``) and stay locked until the run ends; the kernel releases
them when the process dies, by any signal, so a crashed run never leaves a stale lock behind. The directory's lock
is the one that counts: deleting ``run.lock`` (to "clear a stale lock") does not free a live run's directory, as a
new file would be a new lock. The file holds the holder's PID, which the error of a second process names (or, once
the file is gone, the PID that ``/proc/locks`` gives for the directory's lock).

A directory the project created as a run directory carries the marker file ``.synth-opt-run``; ``--fresh``
(:meth:`RunDirLock.clear`) empties only such a directory (or an empty one), never an arbitrary folder that happens
to sit at ``output_dir/run_id``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path
from typing import Final

from synth_opt.errors import RunLockedError, RunStateError

__all__ = ["LOCK_FILE", "RUN_MARKER", "RunDirLock", "is_run_dir"]

LOCK_FILE: Final = "run.lock"
RUN_MARKER: Final = ".synth-opt-run"


def is_run_dir(path: Path) -> bool:
    """Whether the project created ``path`` as a run directory (it carries the marker)."""
    return (path / RUN_MARKER).is_file()


class RunDirLock:
    """The exclusive lock on one run directory (created if missing)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._fds: tuple[int, ...] = ()
        self._made_lock_file = False  # this lock created run.lock (taken away again when --fresh is refused)

    @property
    def held(self) -> bool:
        return bool(self._fds)

    def acquire(self) -> None:
        """Take the lock or raise :class:`~synth_opt.errors.RunLockedError` naming the holder's PID."""
        if self._fds:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK_FILE
        fds: list[int] = []
        made = not path.exists()
        try:
            for target, flags in ((self.run_dir, os.O_RDONLY | os.O_DIRECTORY), (path, os.O_RDWR | os.O_CREAT)):
                fds.append(os.open(target, flags | os.O_CLOEXEC, 0o644))
                _flock(fds[-1], self.run_dir, target)
            os.ftruncate(fds[-1], 0)
            os.write(fds[-1], f"{os.getpid()}\n".encode())
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        self._fds = tuple(fds)
        self._made_lock_file = made

    def still_held(self) -> bool:
        """Whether the run directory is still the one locked (not removed, or replaced by another run's, under this
        run); True when nothing is locked. A deleted ``run.lock`` alone does not count: the directory's own lock
        still holds."""
        if not self._fds:
            return True
        try:
            now = os.stat(self.run_dir)
        except OSError:
            return False
        held = os.fstat(self._fds[0])  # the descriptor of the directory itself
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)  # closing the only descriptor releases its flock
        self._fds = ()

    def mark(self) -> None:
        """Record that the project created this directory as a run directory."""
        (self.run_dir / RUN_MARKER).touch()

    def clear(self) -> None:
        """Empty the (locked) directory for a fresh run: only a run directory or an empty one; keeps the lock."""
        assert self._fds, "clear() needs the lock"
        entries = [entry for entry in self.run_dir.iterdir() if entry.name != LOCK_FILE]
        if entries and not is_run_dir(self.run_dir):
            if self._made_lock_file:  # leave a folder that is not ours as it was
                (self.run_dir / LOCK_FILE).unlink(missing_ok=True)
            raise RunStateError(
                f"{self.run_dir} is not a synth_opt run directory (no {RUN_MARKER} marker), so --fresh will not "
                "delete it; move it away or choose another [run] output_dir or run_id",
                run_dir=str(self.run_dir),
            )
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flock(fd: int, run_dir: Path, target: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunStateError(f"cannot lock run directory {run_dir} ({target}: {error.strerror})") from None
        holder = _holder(run_dir / LOCK_FILE) or _flock_holder(run_dir)
        raise RunLockedError(
            f"run directory {run_dir} is in use by another run (pid {holder or 'unknown'}); wait for it "
            "to finish or stop it, or give this run another [run] run_id",
            run_dir=str(run_dir),
            pid=holder,
        ) from None


def _holder(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _flock_holder(path: Path) -> int | None:
    """The PID that ``/proc/locks`` (Linux) gives for an flock on ``path``, if any."""
    try:
        stat = path.stat()
        inode = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
        with open("/proc/locks", encoding="ascii") as locks:
            for line in locks:
                fields = line.split()
                if "FLOCK" in fields and inode in fields:
                    return int(fields[fields.index(inode) - 1])
    except (OSError, ValueError):
        return None
    return None
