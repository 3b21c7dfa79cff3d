"""The durable run queue of the standing service.

- :mod:`~synth_opt.service.queue.protocol`: :class:`RunQueue`, what the service, the worker and the CLI use;
- :mod:`~synth_opt.service.queue.sqlite`: :class:`SqliteRunQueue`, the SQLite backend (claims, leases, fencing);
- :mod:`~synth_opt.service.queue.schema`, :mod:`~synth_opt.service.queue.rows`, :mod:`~synth_opt.service.queue.health`:
  its tables, its row views and its health summary.

:func:`open_queue` is the one place a queue is opened: from a path or a ``sqlite:///path`` URL (another backend
adds its scheme here).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from synth_opt.errors import ConfigError
from synth_opt.service.queue.protocol import RunQueue
from synth_opt.service.queue.sqlite import DEFAULT_LEASE_SECONDS, SqliteRunQueue

__all__ = ["DEFAULT_LEASE_SECONDS", "RunQueue", "SqliteRunQueue", "open_queue"]

_SQLITE_PREFIX = "sqlite:///"


def open_queue(
    location: str | os.PathLike[str],
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    clock: Callable[[], float] | None = None,
) -> SqliteRunQueue:
    """The queue at ``location``: a database path, or a ``sqlite:///path`` URL (``sqlite:////abs/path`` for an
    absolute one). Any other ``scheme://`` is a :class:`~synth_opt.errors.ConfigError` naming it."""
    text = str(location)
    if text.startswith(_SQLITE_PREFIX):
        text = text[len(_SQLITE_PREFIX) :]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise ConfigError(
            f"queue location {scheme}://...: no queue backend for scheme {scheme!r}; give a SQLite database path "
            "or a sqlite:///path URL",
            field="db",
        )
    if not text:
        raise ConfigError("queue location is empty; give a SQLite database path", field="db")
    if clock is None:
        return SqliteRunQueue(Path(text), lease_seconds=lease_seconds)
    return SqliteRunQueue(Path(text), lease_seconds=lease_seconds, clock=clock)
