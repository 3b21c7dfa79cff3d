"""The workspace writer's child process: ``python -m synth_opt.workspace.child DB_PATH RUN_ID``.

It reads one JSON array of events per line on stdin, commits each line as one batch through a
:class:`~synth_opt.workspace.writer.WorkspaceSink`, and prints its :class:`~synth_opt.workspace.writer.WriterStats` as
one JSON line on stdout when stdin ends. It ignores SIGINT: the run handles Ctrl-C and then closes stdin. (This
module is never imported by the package, so ``-m`` runs it cleanly.)
"""

from __future__ import annotations

import json
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
        sys.stdout.write(json.dumps(asdict(stats)) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
