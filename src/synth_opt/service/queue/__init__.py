"""The durable run queue of the standing service.

- :mod:`~synth_opt.service.queue.protocol`: :class:`RunQueue`, what the workers, the CLI and the ``workspace_*``
  functions use, and :class:`AsyncRunQueue`, the same for the HTTP handlers;
- :mod:`~synth_opt.service.queue.records`: what they return: :class:`RunRequest`, :class:`RequestStatus`,
  :class:`Submission`, :class:`Recovery`;
- :mod:`~synth_opt.service.queue.plans`: the operations (claims, leases, fencing), written once for every backend,
  and :mod:`~synth_opt.service.queue.surface`, the public methods over them: :mod:`~synth_opt.service.queue.sqlite`
  drives them with sqlite3, :mod:`~synth_opt.service.queue.aio` with aiosqlite, and
  :mod:`~synth_opt.service.queue.postgres` with psycopg 3 (workers on many hosts; its tables in
  :mod:`~synth_opt.service.queue.pg_schema`);
- :mod:`~synth_opt.service.queue.schema`, :mod:`~synth_opt.service.queue.rows`, :mod:`~synth_opt.service.queue.health`:
  its tables, the HTTP view of a request and its health summary.

:func:`open_queue` is the one way to open a queue, as saq's ``Queue.from_url``: from a path, a ``sqlite:///path``
URL or a ``postgresql://`` URL.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from synth_opt.errors import ConfigError
from synth_opt.redact import redact_url
from synth_opt.service.queue.postgres import PostgresRunQueue, is_postgres_url
from synth_opt.service.queue.protocol import AsyncRunQueue, RunQueue
from synth_opt.service.queue.records import Recovery, RequestStatus, RunRequest, Submission
from synth_opt.service.queue.sqlite import DEFAULT_LEASE_SECONDS, SqliteRunQueue

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "SUPPORTED_SCHEMES",
    "AsyncRunQueue",
    "Recovery",
    "RequestStatus",
    "RunQueue",
    "RunRequest",
    "Submission",
    "is_postgres_url",
    "open_queue",
    "queue_location",
    "sqlite_path",
]

SUPPORTED_SCHEMES = ("sqlite", "postgresql")


def sqlite_path(location: str | os.PathLike[str]) -> Path:
    """The database file a queue location names: a path, or a ``sqlite:///relative/path`` URL
    (``sqlite:////abs/path`` for an absolute one). Any other ``scheme://`` (a ``postgresql://`` URL included: it
    names no file) is a :class:`~synth_opt.errors.ConfigError` naming the (redacted) URL and the supported
    schemes."""
    text = os.fspath(location)
    scheme, sep, rest = text.partition("://")
    if not sep:
        rest = text
    elif scheme != "sqlite" or not rest.startswith("/"):
        shown = redact_url(text)
        schemes = "sqlite:///path or postgresql://user@host:port/database"
        raise ConfigError(
            f"queue URL {shown!r}: no queue backend for scheme {scheme!r}; supported: a database path or {schemes}",
            field="db",
            url=shown,
            supported_schemes=list(SUPPORTED_SCHEMES),
        )
    else:
        rest = rest[1:]  # sqlite:///relative, sqlite:////absolute
    if not rest:
        raise ConfigError(f"queue location {text!r} names no database; give a SQLite database path", field="db")
    return Path(rest)


def queue_location(location: str | os.PathLike[str]) -> Path | str:
    """What ``--db`` names: a ``postgresql://`` URL as it is, else the SQLite file (:func:`sqlite_path`)."""
    text = os.fspath(location)
    return text if is_postgres_url(text) else sqlite_path(text)


def open_queue(
    location: str | os.PathLike[str],
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    clock: Callable[[], float] = time.time,
) -> RunQueue:
    """The queue at ``location``: a ``postgresql://`` (or ``postgres://``) URL, or a SQLite database
    (:func:`sqlite_path`: a path or a ``sqlite:///`` URL). It is created or migrated as needed. ``clock`` (seconds
    since the epoch) is injected by tests to expire leases without sleeping."""
    text = os.fspath(location)
    if is_postgres_url(text):
        return PostgresRunQueue(text, lease_seconds=lease_seconds, clock=clock)
    return SqliteRunQueue(sqlite_path(text), lease_seconds=lease_seconds, clock=clock)
