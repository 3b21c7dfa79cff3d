"""The service database in PostgreSQL: the same tables as SQLite's (:mod:`~synth_opt.service.queue.schema`), their
versioned migrations, and the translation of the shared plans' SQL to psycopg's parameter style.

The plans (:mod:`~synth_opt.service.queue.plans`) are written once in the SQL both databases accept; what differs
is translated here, statement by statement (cached): ``?`` and ``:name`` parameters become ``%s`` and
``%(name)s``, and SQLite's implicit ``rowid`` (insertion order) is the ``seq`` column PostgreSQL's tables declare.

Migrations are numbered; ``synth_opt_schema`` holds the version applied. A process that opens the database takes
an advisory lock for the migration, so two processes starting at once migrate it once.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from synth_opt.service.queue.schema import (
    LIVE_STATUSES,
    OPERATION_KINDS,
    REQUEST_EVENTS,
    REQUEST_RESOURCES,
    REQUEST_STATUSES,
)

__all__ = ["MIGRATION_LOCK", "PG_MIGRATIONS", "PG_SCHEMA_VERSION", "WRITE_LOCK", "migrate_pg", "pg_sql"]

# advisory lock keys (any two 64-bit numbers of this application's own)
MIGRATION_LOCK = 0x53594E51_0001  # "SYNQ" 1: one process migrates at a time
WRITE_LOCK = 0x53594E51_0002  # "SYNQ" 2: queue writes run one at a time, as SQLite's BEGIN IMMEDIATE


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


_V1: tuple[str, ...] = (
    f"""CREATE TABLE run_requests (
        seq BIGSERIAL UNIQUE,
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
        lease_expires_at DOUBLE PRECISION,
        lease_seconds DOUBLE PRECISION,
        attempts INTEGER NOT NULL DEFAULT 0,
        submitted_at DOUBLE PRECISION NOT NULL,
        leased_at DOUBLE PRECISION,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        heartbeat_at DOUBLE PRECISION,
        error_json TEXT,
        cancel_json TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        workspace_db_path TEXT,
        manifest_path TEXT,
        best_candidate_id TEXT,
        cost_usd DOUBLE PRECISION,
        usage_json TEXT,
        result_json TEXT,
        fresh INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX run_requests_claim ON run_requests (status, priority DESC, submitted_at)",
    f"CREATE UNIQUE INDEX run_requests_live_run ON run_requests (run_id) WHERE status IN ({_quoted(LIVE_STATUSES)})",
    "CREATE INDEX run_requests_container ON run_requests (container_url) WHERE container_url IS NOT NULL",
    "CREATE INDEX run_requests_namespace ON run_requests (cache_namespace) WHERE cache_namespace IS NOT NULL",
    f"""CREATE TABLE operations (
        operation_id BIGSERIAL PRIMARY KEY,
        request_id TEXT REFERENCES run_requests (request_id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ({_quoted(OPERATION_KINDS)})),
        status TEXT NOT NULL CHECK (status IN ('succeeded', 'rejected', 'deduplicated')),
        worker_id TEXT,
        at DOUBLE PRECISION NOT NULL,
        detail_json TEXT NOT NULL DEFAULT '{{}}'
    )""",
    "CREATE INDEX operations_request ON operations (request_id, operation_id)",
    """CREATE TABLE resource_leases (
        lease_id BIGSERIAL PRIMARY KEY,
        request_id TEXT NOT NULL REFERENCES run_requests (request_id) ON DELETE CASCADE,
        resource_kind TEXT NOT NULL CHECK (resource_kind IN ('container_url', 'cache_namespace')),
        resource_key TEXT NOT NULL,
        owner TEXT NOT NULL,
        lease_token TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'released', 'expired')),
        acquired_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        released_at DOUBLE PRECISION
    )""",
    "CREATE INDEX resource_leases_active ON resource_leases (request_id, lease_token) WHERE status = 'active'",
    """CREATE TABLE projection_freshness (
        run_id TEXT NOT NULL, table_name TEXT NOT NULL, source TEXT NOT NULL, source_rows INTEGER NOT NULL,
        derived_rows INTEGER NOT NULL, missing_rows INTEGER NOT NULL, status TEXT NOT NULL,
        missing_sample_json TEXT NOT NULL, checked_at TEXT NOT NULL,
        PRIMARY KEY (run_id, table_name)
    )""",
    """CREATE TABLE invariant_reports (
        report_id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, checked_at TEXT NOT NULL,
        status TEXT NOT NULL, missing_json TEXT NOT NULL, stale_tables_json TEXT NOT NULL, repair_hint TEXT,
        report_json TEXT NOT NULL
    )""",
    "CREATE INDEX invariant_reports_run ON invariant_reports (run_id, report_id)",
)

_V2: tuple[str, ...] = (REQUEST_EVENTS,)  # each attempt's event feed (the same table as SQLite's)
_V3: tuple[str, ...] = REQUEST_RESOURCES  # each live request's resources, one row each (as SQLite's)

PG_MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3)
PG_SCHEMA_VERSION = len(PG_MIGRATIONS)

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_ROWID = re.compile(r"\browid\b")


@lru_cache(maxsize=256)
def pg_sql(sql: str) -> str:
    """A shared plan's statement in psycopg's parameter style, with ``rowid`` as ``seq``."""
    text = sql.replace("%", "%%").replace("?", "%s")
    return _ROWID.sub("seq", _NAMED.sub(r"%(\1)s", text))


def migrate_pg(conn: Any) -> int:
    """Bring a database to :data:`PG_SCHEMA_VERSION` (``conn``: a psycopg connection in autocommit mode); the
    version it had. A database migrated by a newer synth_opt is refused."""
    from synth_opt.errors import ConfigError

    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS synth_opt_schema (version INTEGER NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT max(version) FROM synth_opt_schema").fetchone()
        version = int(row[0] or 0)
        if version > PG_SCHEMA_VERSION:
            raise ConfigError(
                f"the service database is at schema version {version}; this synth_opt knows up to "
                f"{PG_SCHEMA_VERSION}: upgrade synth_opt",
                schema_version=version,
            )
        for number, statements in enumerate(PG_MIGRATIONS[version:], start=version + 1):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO synth_opt_schema (version) VALUES (%s)", (number,))
    return version
