"""The typed records a queue backend returns: a :class:`RunRequest` (one ``run_requests`` row), its
:class:`RequestStatus`, a :class:`Submission` (the request plus whether an idempotency key found it) and a
:class:`Recovery` (what ``recover()`` did).

``to_dict()`` gives the plain-dict shape of the public ``workspace_*`` functions and of the HTTP API (JSON columns
under their short names, flags as booleans, the status as its string), so the records change neither.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from synth_opt.errors import ConfigError

__all__ = ["Recovery", "RequestStatus", "RunRequest", "Submission"]


class RequestStatus(StrEnum):
    """A request's lifecycle state; the values are the strings stored in ``run_requests.status`` and served."""

    QUEUED = "queued"
    LEASED = "leased"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def live(self) -> bool:
        """Queued or held by a worker: at most one such request per run id."""
        return self in (RequestStatus.QUEUED, RequestStatus.LEASED, RequestStatus.RUNNING)

    @property
    def terminal(self) -> bool:
        return not self.live

    @classmethod
    def parse(cls, text: str) -> RequestStatus:
        """The status named ``text`` (a ``?status=`` filter); a ConfigError listing the statuses otherwise."""
        try:
            return cls(text)
        except ValueError:
            known = ", ".join(status.value for status in cls)
            raise ConfigError(f"unknown request status {text!r}; use one of {known}", field="status") from None


# row column -> record field, for the columns stored as JSON text
_JSON_COLUMNS = {"error_json": "error", "cancel_json": "cancel", "usage_json": "usage", "result_json": "result"}
_FLAGS = ("cancel_requested", "fresh")


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One run request as stored (fields in the table's column order). ``lease_token`` is the worker's proof of
    ownership: the HTTP API never shows it (:func:`~synth_opt.service.queue.rows.public_view`)."""

    request_id: str
    run_id: str
    config_path: str
    run_dir: str | None
    container_url: str | None
    cache_namespace: str | None
    priority: int
    status: RequestStatus
    idempotency_key: str | None
    lease_owner: str | None
    lease_token: str | None
    lease_expires_at: float | None
    lease_seconds: float | None
    attempts: int
    submitted_at: float
    leased_at: float | None
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    error: dict[str, Any] | None
    cancel: dict[str, Any] | None
    cancel_requested: bool
    workspace_db_path: str | None
    manifest_path: str | None
    best_candidate_id: str | None
    cost_usd: float | None
    usage: dict[str, Any] | None
    result: dict[str, Any] | None
    fresh: bool = False

    @classmethod
    def from_row(cls, row: sqlite3.Row | Mapping[str, Any]) -> RunRequest:
        """A ``run_requests`` row (``SELECT *`` or ``RETURNING *``): JSON columns decoded, flags as booleans."""
        keys = row.keys()
        # a sqlite3.Row iterates over its values, in its keys' order (one pass, no lookup by name per column)
        cells = row if isinstance(row, sqlite3.Row) else [row[k] for k in keys]
        values: dict[str, Any] = dict(zip(keys, cells, strict=True))
        values.pop("seq", None)  # PostgreSQL's insertion order (SQLite's is its rowid)
        for column, attribute in _JSON_COLUMNS.items():
            if column in values:
                value = values.pop(column)
                values[attribute] = None if value is None else json.loads(value)
        for flag in _FLAGS:
            if flag in values:
                values[flag] = bool(values[flag])
        if "status" in values:
            values["status"] = RequestStatus(values["status"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The plain-dict shape (the status as its string)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["status"] = self.status.value
        return data


@dataclass(frozen=True, slots=True)
class Submission:
    """What ``submit()`` returns: the request, and whether its idempotency key named an earlier one."""

    request: RunRequest
    deduplicated: bool

    def to_dict(self) -> dict[str, Any]:
        return {**self.request.to_dict(), "deduplicated": self.deduplicated}


@dataclass(frozen=True, slots=True)
class Recovery:
    """What ``recover()`` did: expired leases requeued (or cancelled, when a cancel was asked, or failed, when the
    request's lease had expired too often: its worker died every time), and the queue's invariant report computed in
    the same transaction."""

    requeued: tuple[str, ...]
    cancelled: tuple[str, ...]
    invariants: dict[str, Any]
    failed: tuple[str, ...] = ()

    @property
    def recovered(self) -> int:
        return len(self.requeued) + len(self.cancelled) + len(self.failed)

    def to_dict(self) -> dict[str, Any]:
        """``{"recovered", "requeued", "cancelled", "failed", "invariants"}``, as ``workspace_recover`` and the API
        return."""
        return {
            "recovered": self.recovered,
            "requeued": list(self.requeued),
            "cancelled": list(self.cancelled),
            "failed": list(self.failed),
            "invariants": self.invariants,
        }
