"""The workspace writer's child process: ``python -m synth_opt.workspace.child DB_PATH RUN_ID``.

It reads one JSON array of events per line on stdin, commits each line as one batch through a
:class:`~synth_opt.workspace.writer.WorkspaceSink`, and prints its :class:`~synth_opt.workspace.writer.WriterStats` as
one JSON line on stdout when stdin ends. It ignores SIGINT: the run handles Ctrl-C and then closes stdin. When the
run dies (SIGKILL included) stdin ends too, so the writer commits the complete lines it already has and exits: it
never outlives the run by more than that (its stats then have no reader and are dropped quietly). (This module is
never imported by the package, so ``-m`` runs it cleanly.)

It writes with sqlite3, not aiosqlite: it is a separate process whose whole job is one synchronous loop (read a line,
commit it in one ``BEGIN IMMEDIATE`` transaction), the single writer of the workspace, with no event loop to keep
free; an async driver would only add a thread hop per statement.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from synth_opt.events import Event
from synth_opt.workspace.writer import WorkspaceSink, WriterStats

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m synth_opt.workspace.child DB_PATH RUN_ID", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stats = WriterStats(process=True)
    sink = WorkspaceSink(Path(args[0]), args[1])
    try:
        for line in sys.stdin.buffer:
            if not line.endswith(b"\n"):
                break  # the parent died mid-line: the back-fill has the rest
            try:
                batch = [Event.from_json(data) for data in json.loads(line)]
            except (ValueError, KeyError, TypeError) as error:
                stats.failed_batches += 1
                stats.last_error = f"unreadable batch: {error}"
                continue
            sink.write(batch, stats)
    finally:
        sink.close()
        _report(stats)
    return 0


def _report(stats: WriterStats) -> None:
    try:
        sys.stdout.write(json.dumps(asdict(stats)) + "\n")
        sys.stdout.flush()
    except OSError:  # the run is gone: nobody reads the stats; keep the exit-time flush from failing again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
