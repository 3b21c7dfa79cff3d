"""A cancel handle: stops a run from outside (Ctrl-C, SIGTERM, a service request).

The run attaches its task group's cancel scope; ``cancel()`` before attachment is remembered and applied at once.
The run then cancels in-flight work (launched processes are stopped by their context managers), records a
``cancelled`` state, keeps every committed result and raises :class:`~synth_opt.errors.RunCancelledError`.
"""

from __future__ import annotations

from collections.abc import Callable

from anyio import CancelScope

__all__ = ["CancelHandle"]


class CancelHandle:
    def __init__(self) -> None:
        self._scope: CancelScope | None = None
        self.reason: str | None = None
        self.abandoned = False
        self._on_abandon: list[Callable[[], None]] = []

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: str = "cancelled by the caller") -> None:
        """Ask the run to stop. Call it from the run's event loop (a task, or an anyio signal receiver)."""
        if self.reason is None:
            self.reason = reason
        if self._scope is not None:
            self._scope.cancel()

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
        self._scope = scope
        if self.reason is not None:
            scope.cancel()

    def detach(self) -> None:
        self._scope = None
