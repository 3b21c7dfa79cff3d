"""Async reads of a SQLite queue file through aiosqlite, for the service's HTTP handlers.

A handler that shows a request, lists requests or polls one for the live event stream must not block the event
loop, and the reads are frequent (the stream polls every quarter second), so they go through aiosqlite: its own
read-only connection (``mode=ro``, ``query_only``) with the workspace's ``busy_timeout``. In WAL mode (the queue's
writer connection sets it) a reader never waits for the writer, and sees only committed requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite

from synth_opt.service.errors import RunRequestNotFoundError
from synth_opt.service.queue.records import RequestStatus, RunRequest
from synth_opt.workspace.db import BUSY_TIMEOUT_MS

__all__ = ["SqliteQueueReader", "list_filter", "list_limit", "not_found"]

MAX_LIST = 1000


def list_filter(status: RequestStatus | str | None) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause and parameters of a request list, optionally of one status (a ConfigError names an
    unknown status)."""
    if status is None:
        return "", []
    return "WHERE status = ?", [RequestStatus.parse(str(status)).value]


def list_limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIST))


def not_found(request_id: str) -> RunRequestNotFoundError:
    return RunRequestNotFoundError(
        f"run request {request_id} does not exist; list requests with GET /runs", request_id=request_id
    )


class SqliteQueueReader:
    """``async with SqliteQueueReader(path) as reader: await reader.get(request_id)``: one aiosqlite connection for
    the reader's life."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self._conn: aiosqlite.Connection | None = None

    async def __aenter__(self) -> SqliteQueueReader:
        conn = await aiosqlite.connect(f"{self.db_path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA query_only = ON")
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("the queue reader is not open; use it as 'async with queue.reader() as reader'")
        return self._conn

    async def get(self, request_id: str) -> RunRequest:
        async with self.conn.execute("SELECT * FROM run_requests WHERE request_id = ?", (request_id,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise not_found(request_id)
        return RunRequest.from_row(row)

    async def list_requests(self, *, status: RequestStatus | str | None = None, limit: int = 100) -> list[RunRequest]:
        """Requests, newest first, optionally of one status."""
        where, params = list_filter(status)
        sql = f"SELECT * FROM run_requests {where} ORDER BY submitted_at DESC, rowid DESC LIMIT ?"
        async with self.conn.execute(sql, (*params, list_limit(limit))) as cursor:
            rows = await cursor.fetchall()
        return [RunRequest.from_row(row) for row in rows]
