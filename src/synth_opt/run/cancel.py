"""A cancel handle: stops a run from outside (Ctrl-C, SIGTERM, a service request).

The run attaches its task group's cancel scope; ``cancel()`` before attachment is remembered and applied at once.
``cancel()`` may be called from any thread (a caller of the blocking ``execute()``, a callback's thread): off the
run's event loop it is handed to that loop, never run beside it. The run then cancels in-flight work (launched
processes are stopped by their context managers), records a ``cancelled`` state, keeps every committed result and
raises :class:`~synth_opt.errors.RunCancelledError`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from anyio import CancelScope

__all__ = ["CancelHandle"]


class CancelHandle:
    def __init__(self) -> None:
        self._scope: CancelScope | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.reason: str | None = None
        self.abandoned = False
        self._on_abandon: list[Callable[[], None]] = []
        self._applied = False  # an execution attached since the request: it was stopped by it

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: str = "cancelled by the caller") -> None:
        """Ask the run to stop, from its event loop or from any other thread."""
        if self.reason is None:
            self.reason = reason
        scope, loop = self._scope, self._loop
        if scope is None:
            return
        if loop is None or threading.get_ident() == self._loop_thread:
            scope.cancel()
            return
        try:
            loop.call_soon_threadsafe(scope.cancel)
        except RuntimeError:  # the loop has closed: the run is over
            pass

    def abandon(self, reason: str) -> None:
        """Stop the run *and write nothing more into its directory* (a service worker that lost its lease: the
        request, and so the directory's future, belong to another worker now)."""
        self.abandoned = True
        for callback in self._on_abandon:
            callback()
        self.cancel(reason)

    def on_abandon(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` at once if the run is abandoned (now, if it already was)."""
        self._on_abandon.append(callback)
        if self.abandoned:
            callback()

    def attach(self, scope: CancelScope) -> None:
        """Called on the run's event loop, which a cancel from another thread is handed to."""
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self._scope = scope
        self._applied = True
        if self.reason is not None:
            scope.cancel()

    def detach(self) -> None:
        self._scope = None
        self._loop = self._loop_thread = None

    def settle(self) -> None:
        """An execution has ended: a cancel request it met is spent, so a later ``execute()`` resumes the run
        instead of stopping at once (a request made before any execution attached still waits for one; an
        abandoned run stays abandoned)."""
        if self._applied and not self.abandoned:
            self.reason = None
        self._applied = False
