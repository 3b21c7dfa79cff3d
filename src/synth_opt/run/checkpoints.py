"""The run's checkpoints: the supervisor offers one after every commit; this takes one at most every
CHECKPOINT_INTERVAL_SECONDS and makes it durable before anything announces it.

The newest checkpoint lives in its own file, ``<run_dir>/checkpoint.json``, written by temp file + fsync +
rename (+ fsync of the directory), after ``events.jsonl`` itself is fsynced up to the checkpoint's sequence number.
Only then is ``checkpoint.written`` emitted. So the checkpoint never travels over the event bus (whose observers may
drop events), and it stays apart from everything derived: resume cuts ``events.jsonl`` back to it and rebuilds
``workspace.sqlite``, and ``workspace repair`` rebuilds the database, without touching it. A write that fails (a
full disk) raises at once, naming the file; nothing claims a checkpoint that was not stored.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from synth_opt.actors.records import READABLE_CHECKPOINT_VERSIONS
from synth_opt.errors import RunStateError, unwritable
from synth_opt.events import EventBus
from synth_opt.events.types import CheckpointWritten

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_INTERVAL_SECONDS",
    "CheckpointWriter",
    "emit_checkpoint",
    "read_checkpoint_file",
    "replaced_run_dir",
    "write_durably",
]

CHECKPOINT_INTERVAL_SECONDS: Final = 0.5
CHECKPOINT_FILE: Final = "checkpoint.json"


class CheckpointWriter:
    def __init__(self, bus: EventBus, path: Path | None, *, digest: str | None = None) -> None:
        """``path`` None keeps no checkpoints (a run without a workspace cannot resume); ``digest``, the config's
        decision digest, goes into each checkpoint (a resume checks it belongs to the config)."""
        self.bus = bus
        self.path = path
        self.digest = digest
        self._pending: Callable[[], dict[str, Any] | None] | None = None
        self._last_at = 0.0
        # whether the run directory is still the one the run locked (else nothing more is written into it)
        self.owned: Callable[[], bool] = lambda: True

    def offer(self, take: Callable[[], dict[str, Any] | None], *, now: bool = False) -> None:
        """The supervisor offers a checkpoint after every commit; one is taken and persisted at most every
        CHECKPOINT_INTERVAL_SECONDS (and at the end), since resuming from any of them is exact. ``now`` takes it
        at once (after a heldout evaluation: at most two a run, each worth a whole heldout set of rollouts)."""
        self._pending = take
        if now or time.monotonic() - self._last_at >= CHECKPOINT_INTERVAL_SECONDS:
            self.flush()

    def drop(self) -> None:
        """Forget the checkpoint offered last without taking it (the run failed while it was pending)."""
        self._pending = None

    def flush(self) -> None:
        """Take and persist the checkpoint offered last, if it is not persisted yet."""
        if self._pending is None or self.path is None:
            return
        snapshot = self._pending()
        self._pending = None
        self._last_at = time.monotonic()
        if snapshot is None:
            return
        if self.digest is not None:
            snapshot = {**snapshot, "digest": self.digest}
        if not self.owned():
            raise replaced_run_dir(self.path.parent)
        self.bus.sync()  # the feed up to the checkpoint's sequence number is on disk before the checkpoint is
        write_durably(self.path, json.dumps(snapshot, ensure_ascii=False, allow_nan=False))
        emit_checkpoint(self.bus, snapshot)


def replaced_run_dir(run_dir: Path) -> RunStateError:
    """The error of a run whose directory was removed, or replaced by another run's, while it went on."""
    return RunStateError(
        f"run directory {run_dir} was removed or replaced while the run was going (another run may own it now); "
        "nothing more of this run is written there. Re-run the config to start it again",
        run_dir=str(run_dir),
    )


def write_durably(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically and durably: temp file, fsync, rename, fsync of the directory.
    An OS error (a full disk) becomes a RunFailedError naming the file; the previous version stays intact."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise unwritable(path, error) from None


def read_checkpoint_file(path: Path) -> dict[str, Any] | None:
    """The checkpoint in ``path``, or None when there is none (or it is not a checkpoint)."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if is_current_checkpoint(payload) else None


def is_current_checkpoint(payload: Any) -> bool:
    """A snapshot this version can resume from (an older one may lack state the resume needs; a damaged one, the
    numbers that place it in the feed)."""
    if not isinstance(payload, dict) or payload.get("version") not in READABLE_CHECKPOINT_VERSIONS:
        return False
    state = payload.get("state")
    numbers = (payload.get("sequence_number"), payload.get("commits"))
    return (
        isinstance(state, dict)
        and isinstance(state.get("pool_ids"), list)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers)
    )


def emit_checkpoint(bus: EventBus, snapshot: dict[str, Any]) -> None:
    bus.emit(
        CheckpointWritten(
            commits=snapshot["commits"],
            generation=snapshot["commits"],
            best_candidate_id=snapshot.get("best_candidate_id"),
            candidate_count=snapshot.get("pool_size"),
            snapshot=snapshot,
        ),
        f"checkpoint after {snapshot['commits']} commits",
        lane="supervisor",
    )
