"""Async, live reads of a workspace (or service) database through aiosqlite, for the service's HTTP handlers and a
run browser: they never block the event loop, and they read while the run's writer process commits.

``open_live(path)`` is a read-only aiosqlite connection (``mode=ro``, ``query_only``, the workspace's
``busy_timeout``); in WAL mode (every writer sets it) a reader never waits for the writer and sees whole commits.
The queries are :mod:`synth_opt.workspace.status`'s readers, driven here by :func:`read` instead of by sqlite3, so
:func:`live_workspace_status` returns exactly what ``workspace_status`` does. :func:`live_run_summary` is the
cheaper read a browser polls: one run's counts, without the freshness and invariant checks.

The one part that is not aiosqlite: a run's projection freshness and invariant report come from
:mod:`synth_opt.workspace.freshness`, synchronous code that also reads the run's ``events.jsonl`` and stores the
report it computed; :func:`live_workspace_status` runs it once per call in a worker thread, on its own connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import anyio

from synth_opt.errors import ConfigError
from synth_opt.workspace.db import BUSY_TIMEOUT_MS, connect
from synth_opt.workspace.freshness import compute_health
from synth_opt.workspace.status import (
    Layout,
    Reader,
    missing_workspace,
    persist_all,
    read_layout,
    read_run,
    read_service,
    unopenable_workspace,
    with_health,
)

__all__ = ["live_run_summary", "live_workspace_status", "open_live", "read"]

T = TypeVar("T")
Health = dict[str, tuple[dict[str, Any], dict[str, Any]]]


@asynccontextmanager
async def open_live(db_path: str | Path) -> AsyncIterator[aiosqlite.Connection]:
    """A read-only aiosqlite connection to an existing database (a ConfigError when it is missing or unreadable)."""
    path = Path(db_path)
    if not await anyio.Path(path).is_file():
        raise missing_workspace(path)
    uri = f"{(await anyio.Path(path).resolve()).as_uri()}?mode=ro"
    try:
        conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as error:
        raise unopenable_workspace(path, error) from None
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA query_only = ON")
        yield conn
    finally:
        await conn.close()


async def read(conn: aiosqlite.Connection, reader: Reader[T], *, transaction: bool = False) -> T:
    """Drive a :mod:`~synth_opt.workspace.status` reader on an aiosqlite connection; with ``transaction``, in one
    read transaction (its counts agree with each other)."""
    if transaction:
        await conn.execute("BEGIN")
    try:
        query = next(reader)
        while True:
            try:
                rows = list(await conn.execute_fetchall(*query))
            except sqlite3.Error as error:
                query = reader.throw(error)
            else:
                query = reader.send(rows)
    except StopIteration as done:
        value: T = done.value
        return value
    finally:
        if transaction:
            await conn.execute("COMMIT")


def _health(path: Path, run_ids: tuple[str, ...]) -> tuple[Health, bool]:
    """Each run's freshness and invariant report, computed on a read-only sqlite3 connection and stored."""
    conn = connect(path, readonly=True)
    try:
        health = {run_id: compute_health(conn, path, run_id) for run_id in run_ids}
    finally:
        conn.close()
    return health, persist_all(path, health)


async def live_workspace_status(db_path: str | Path) -> dict[str, Any]:
    """``workspace_status(db_path)`` for async callers: the same dict, read through aiosqlite."""
    path = Path(db_path)
    async with open_live(path) as conn:
        layout: Layout = await read(conn, read_layout(path))
        health, persisted = (
            await anyio.to_thread.run_sync(_health, path, layout.run_ids) if layout.run_ids else ({}, True)
        )
        result: dict[str, Any] = {"runs": [], "db_path": str(path), "schema_version": layout.version}
        for run_id in layout.run_ids:
            run = await read(conn, read_run(layout.tables, run_id), transaction=True)
            freshness, report = health[run_id]
            result["runs"].append(with_health(run, freshness, report))
        if layout.service:
            result.update(await read(conn, read_service(layout.tables)))
    for run in result["runs"]:
        run["invariant_report"]["persisted"] = persisted
    return result


async def live_run_summary(db_path: str | Path, run_id: str | None = None) -> dict[str, Any]:
    """One run's live counts (candidates, proposals, rollouts, events, frontier, usage, status counts) without the
    freshness and invariant checks: what a run browser polls while the run writes. ``run_id`` may be left out for a
    workspace that holds one run."""
    path = Path(db_path)
    async with open_live(path) as conn:
        layout: Layout = await read(conn, read_layout(path))
        if run_id is None:
            if len(layout.run_ids) != 1:
                raise ConfigError(
                    f"{path} holds {len(layout.run_ids)} runs ({', '.join(layout.run_ids) or 'none yet'}); name one",
                    field="run_id",
                )
            run_id = layout.run_ids[0]
        elif run_id not in layout.run_ids:
            raise ConfigError(f"{path} holds no run {run_id!r} (it holds {', '.join(layout.run_ids) or 'none yet'})")
        return await read(conn, read_run(layout.tables, run_id), transaction=True)
