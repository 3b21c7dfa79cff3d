"""Child processes run in their own process group: drain their stderr, and stop them gently, then surely.

A server started with :func:`open_group_process` leads a new process group, so everything it spawns can be signalled
at once, and an orphan watchdog stops that group should this process die without stopping it. Stopping goes from
polite to certain: close stdin (a healthy stdio server exits on EOF), SIGTERM the group, SIGKILL it. Stderr is
drained concurrently so the child never blocks on a full pipe, and its last lines are kept for error messages.
"""

from __future__ import annotations

import anyio
import anyio.abc

from synth_opt.processes import open_group_process, terminate_group

__all__ = ["StderrTail", "open_group_process", "stop_stdio_server"]

_STDERR_TAIL_BYTES = 16 * 1024
_STDERR_TAIL_LINES = 20
EOF_GRACE_SECONDS = 0.5  # after closing stdin
TERM_GRACE_SECONDS = 2.0  # after SIGTERM to the group, before SIGKILL


class StderrTail:
    """The last lines a child wrote to stderr, read concurrently so it never blocks on a full pipe."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._done = anyio.Event()

    async def drain(self, stream: anyio.abc.ByteReceiveStream | None) -> None:
        try:
            if stream is not None:
                async for chunk in stream:
                    self._buffer += chunk
                    del self._buffer[:-_STDERR_TAIL_BYTES]
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            self._done.set()

    async def settle(self, seconds: float) -> None:
        """Wait (at most ``seconds``) for stderr to reach EOF, so the tail includes the child's last words."""
        with anyio.move_on_after(seconds):
            await self._done.wait()

    def lines(self) -> list[str]:
        text = self._buffer.decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip()][-_STDERR_TAIL_LINES:]


async def stop_stdio_server(process: anyio.abc.Process) -> None:
    """Close stdin (a healthy server exits on EOF), then SIGTERM the group, then SIGKILL it; reap the leader."""
    await terminate_group(process, grace_seconds=TERM_GRACE_SECONDS, eof_grace_seconds=EOF_GRACE_SECONDS)
