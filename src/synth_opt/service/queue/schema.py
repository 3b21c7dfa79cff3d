"""The service database: the run queue's tables, their migrations and how a file is opened as a queue.

``run_requests`` is the queue itself and its only source of truth: a request's state, its lease (owner, expiry,
fencing token) and, once terminal, the run's summary. ``operations`` is the audit trail (one row per queue
operation, refused ones included) and ``resource_leases`` shows which container URL and cache namespace each live
request holds; both are written in the same transaction as the ``run_requests`` change they describe.
``projection_freshness`` and ``invariant_reports`` have the shape of a run workspace's, so ``workspace_status``
reports the queue's health with the same keys (see :mod:`synth_opt.service.queue.health`).

Times are seconds since the epoch (REAL) from the queue's injected clock, so leases compare as numbers.
A service file is marked with ``PRAGMA application_id`` so a run's ``workspace.sqlite`` (same ``user_version``
numbering) is never mistaken for one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from synth_opt.errors import ConfigError
from synth_opt.service.queue.records import RequestStatus
from synth_opt.workspace.db import connect, migrate
from synth_opt.workspace.schema import HEALTH_TABLES

__all__ = [
    "APPLICATION_ID",
    "LIVE_STATUSES",
    "MIGRATIONS",
    "OPERATION_KINDS",
    "REQUEST_EVENTS",
    "REQUEST_RESOURCES",
    "REQUEST_STATUSES",
    "SCHEMA_VERSION",
    "TERMINAL_STATUSES",
    "open_service_db",
]

APPLICATION_ID = 0x53594E51  # "SYNQ"
# the strings stored in ``run_requests.status`` are the values of RequestStatus (the CHECK below lists them)
REQUEST_STATUSES = tuple(status.value for status in RequestStatus)
LIVE_STATUSES = tuple(status.value for status in RequestStatus if status.live)
TERMINAL_STATUSES = tuple(status.value for status in RequestStatus if status.terminal)
OPERATION_KINDS = ("submit", "claim", "start", "heartbeat", "complete", "fail", "cancel", "recover", "release")


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


_V1: tuple[str, ...] = (
    f"""CREATE TABLE run_requests (
        request_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        config_path TEXT NOT NULL,
        run_dir TEXT,
        container_url TEXT,
        cache_namespace TEXT,
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ({_quoted(REQUEST_STATUSES)})),
        idempotency_key TEXT UNIQUE,
        lease_owner TEXT,
        lease_token TEXT,
        lease_expires_at REAL,
        lease_seconds REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        submitted_at REAL NOT NULL,
        leased_at REAL,
        started_at REAL,
        finished_at REAL,
        heartbeat_at REAL,
        error_json TEXT,
        cancel_json TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        workspace_db_path TEXT,
        manifest_path TEXT,
        best_candidate_id TEXT,
        cost_usd REAL,
        usage_json TEXT,
        result_json TEXT
    )""",
    # the claim's ORDER BY, and the "one live request per run id" rule enforced by the database itself
    "CREATE INDEX run_requests_claim ON run_requests (status, priority DESC, submitted_at)",
    f"CREATE UNIQUE INDEX run_requests_live_run ON run_requests (run_id) WHERE status IN ({_quoted(LIVE_STATUSES)})",
    "CREATE INDEX run_requests_container ON run_requests (container_url) WHERE container_url IS NOT NULL",
    "CREATE INDEX run_requests_namespace ON run_requests (cache_namespace) WHERE cache_namespace IS NOT NULL",
    f"""CREATE TABLE operations (
        operation_id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT REFERENCES run_requests (request_id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ({_quoted(OPERATION_KINDS)})),
        status TEXT NOT NULL CHECK (status IN ('succeeded', 'rejected', 'deduplicated')),
        worker_id TEXT,
        at REAL NOT NULL,
        detail_json TEXT NOT NULL DEFAULT '{{}}'
    )""",
    "CREATE INDEX operations_request ON operations (request_id, operation_id)",
    """CREATE TABLE resource_leases (
        lease_id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL REFERENCES run_requests (request_id) ON DELETE CASCADE,
        resource_kind TEXT NOT NULL CHECK (resource_kind IN ('container_url', 'cache_namespace')),
        resource_key TEXT NOT NULL,
        owner TEXT NOT NULL,
        lease_token TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'released', 'expired')),
        acquired_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        released_at REAL
    )""",
    "CREATE INDEX resource_leases_active ON resource_leases (request_id, lease_token) WHERE status = 'active'",
    *HEALTH_TABLES,
    f"PRAGMA application_id = {APPLICATION_ID}",
)

# ``fresh``: the request's first attempt starts its run directory over (``POST /runs`` with ``fresh: true``)
_V2: tuple[str, ...] = ("ALTER TABLE run_requests ADD COLUMN fresh INTEGER NOT NULL DEFAULT 0",)

# the lines of each attempt's event feed, appended by the worker running it (synth_opt.service.feed), read by
# GET /runs/{id}/events: the stream reaches the API through the database, from whichever host runs the request
REQUEST_EVENTS = """CREATE TABLE request_events (
        request_id TEXT NOT NULL REFERENCES run_requests (request_id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        line_no INTEGER NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (request_id, attempt, line_no)
    )"""
_V3: tuple[str, ...] = (REQUEST_EVENTS,)

# every resource a request holds while it is live, one row each: its container URL, or each URL of its container
# replicas, and its cache namespace. The claim refuses a request one of whose resources another live request holds
# (so two requests over replica sets that share one URL never run at once); filled from the old columns
REQUEST_RESOURCES: tuple[str, ...] = (
    """CREATE TABLE request_resources (
        request_id TEXT NOT NULL REFERENCES run_requests (request_id) ON DELETE CASCADE,
        resource_kind TEXT NOT NULL CHECK (resource_kind IN ('container_url', 'cache_namespace')),
        resource_key TEXT NOT NULL,
        PRIMARY KEY (request_id, resource_kind, resource_key)
    )""",
    "CREATE INDEX request_resources_key ON request_resources (resource_kind, resource_key)",
    # a claim run again after a lost connection looks its own lease up by token
    "CREATE INDEX run_requests_token ON run_requests (lease_token) WHERE lease_token IS NOT NULL",
    "INSERT INTO request_resources (request_id, resource_kind, resource_key) SELECT request_id, 'container_url', "
    f"container_url FROM run_requests WHERE container_url IS NOT NULL AND status IN ({_quoted(LIVE_STATUSES)})",
    "INSERT INTO request_resources (request_id, resource_kind, resource_key) SELECT request_id, 'cache_namespace', "
    f"cache_namespace FROM run_requests WHERE cache_namespace IS NOT NULL AND status IN ({_quoted(LIVE_STATUSES)})",
)
_V4: tuple[str, ...] = REQUEST_RESOURCES

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION = len(MIGRATIONS)


def open_service_db(path: str | Path) -> sqlite3.Connection:
    """A writing connection to a service database (WAL, ``synchronous=FULL``: queue commits are few and each one
    matters), created and migrated as needed. A file that holds something else is a ConfigError."""
    db = Path(path)
    if db.exists() and db.is_dir():
        raise ConfigError(f"service database {db} is a directory; pass a file path (--db service.sqlite)", db=str(db))
    try:
        conn = connect(db, synchronous="FULL")
    except sqlite3.Error as error:
        raise ConfigError(f"service database {db} cannot be opened: {error}; check the path", db=str(db)) from None
    try:
        _check_kind(conn, db)
        migrate(conn, MIGRATIONS)
    except sqlite3.DatabaseError as error:
        conn.close()
        raise ConfigError(
            f"{db} is not a usable SQLite database ({error}); pass a service database", db=str(db)
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _check_kind(conn: sqlite3.Connection, db: Path) -> None:
    application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if application_id == APPLICATION_ID:
        return
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if application_id != 0 or tables:
        raise ConfigError(
            f"{db} is not a synth_opt service database (it holds {', '.join(sorted(tables)) or 'another format'}); "
            "pass a new or existing service database path, not a run's workspace.sqlite",
            db=str(db),
        )
