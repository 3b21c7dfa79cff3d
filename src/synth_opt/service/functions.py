"""The queue functions of the public surface (SPEC §2), re-exported from ``synth_opt``: plain dicts in and out
(the queue's typed records, :class:`~synth_opt.service.queue.RunRequest` and friends, as ``to_dict()``).

::

    request = workspace_submit_run_request("service.sqlite", "gepa.toml")
    claimed = workspace_claim_next_run_request("service.sqlite", "worker-1")
    workspace_start_run_request("service.sqlite", claimed["request_id"], claimed["lease_token"])
    workspace_complete_run_request("service.sqlite", claimed["request_id"], result, lease_token=claimed["lease_token"])

Each call opens the database, does one transaction and closes it. Where a lease token is given the write is fenced:
a lease that expired and was taken by another worker raises :class:`~synth_opt.errors.LeaseLostError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from synth_opt.config import GepaConfig, load_config
from synth_opt.errors import ConfigError, SynthOptimizerError
from synth_opt.redact import redact_url
from synth_opt.service.queue import DEFAULT_LEASE_SECONDS, open_queue

__all__ = [
    "request_fields",
    "workspace_cancel_run_request",
    "workspace_claim_next_run_request",
    "workspace_complete_run_request",
    "workspace_heartbeat_run_request",
    "workspace_recover",
    "workspace_start_run_request",
    "workspace_submit_run_request",
]

Db = str | os.PathLike[str]


def request_fields(config: GepaConfig) -> dict[str, Any]:
    """What a request fixes at submission: the run id (``[run].run_id``, else generated from the config), the config
    path, the run directory, the standing container URL (None for a container the run launches itself, which gets a
    port of its own), the URLs of its container replicas (``[container] urls``: two requests whose replica sets share
    a URL never run at once) and the cache namespace (None with ``[cache] mode = "off"``: such a run touches no
    cache).
    The URL is stored and served without its secrets (:func:`synth_opt.redact.redact_url`): it only names the
    container that two requests may not share (the worker reads the config itself)."""
    url = config.container.url
    return {
        "run_id": config.effective_run_id(),
        "config_path": str(config.source_path),
        "run_dir": str(config.run_dir()),
        "container_url": redact_url(url.rstrip("/")) if url else None,
        "container_urls": [redact_url(replica.rstrip("/")) for replica in config.container.urls or []],
        "cache_namespace": None if config.cache.mode == "off" else config.cache_namespace(),
    }


def _priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigError(f"priority must be an integer (got {priority!r})", field="priority")
    return priority


def _key(idempotency_key: Any) -> str | None:
    if idempotency_key is None:
        return None
    if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 200:
        raise ConfigError(
            "idempotency_key must be a non-empty string of at most 200 characters", field="idempotency_key"
        )
    return idempotency_key


def _worker(worker_id: Any) -> str:
    if not isinstance(worker_id, str) or not worker_id.strip():
        raise ConfigError(f"worker_id must be a non-empty string (got {worker_id!r})", field="worker_id")
    return worker_id


def workspace_submit_run_request(
    db: Db,
    config_path: str | os.PathLike[str],
    priority: int = 0,
    idempotency_key: str | None = None,
    *,
    fresh: bool = False,
) -> dict[str, Any]:
    """Queue a run of ``config_path``. The config is loaded now (a bad config is a ConfigError) to fix the run id,
    container URL and cache namespace. A known idempotency key returns its request (``deduplicated: True``); a run id
    that is already queued, leased or running raises QueueConflictError. ``fresh``: the run directory is started
    over (as ``synth-opt gepa run --fresh``) rather than resumed."""
    fields = request_fields(load_config(config_path))
    with open_queue(db) as queue:
        submission = queue.submit(
            **fields, priority=_priority(priority), idempotency_key=_key(idempotency_key), fresh=bool(fresh)
        )
    return submission.to_dict()


def workspace_claim_next_run_request(
    db: Db, worker_id: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
) -> dict[str, Any] | None:
    """Lease the next request (highest priority, then oldest; skipping requests whose container URL or cache
    namespace a live request holds) to ``worker_id``: the request with its ``request_id``, ``run_id`` and
    ``lease_token``, or None when nothing is claimable."""
    with open_queue(db, lease_seconds=lease_seconds) as queue:
        claimed = queue.claim(_worker(worker_id))
    return None if claimed is None else claimed.to_dict()


def workspace_start_run_request(db: Db, request_id: str, lease_token: str | None = None) -> dict[str, Any]:
    """Mark a leased request running (and extend its lease)."""
    with open_queue(db) as queue:
        return queue.start(request_id, lease_token).to_dict()


def workspace_heartbeat_run_request(db: Db, request_id: str, lease_token: str) -> dict[str, Any]:
    """Extend the lease; the returned request's ``cancel_requested`` tells the worker to stop."""
    with open_queue(db) as queue:
        return queue.heartbeat(request_id, lease_token).to_dict()


def _as_dict(value: Any, what: str) -> Mapping[str, Any] | None:
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, SynthOptimizerError):
        return value.to_dict()
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        data = to_json()
        if isinstance(data, Mapping):
            return data
    raise ConfigError(f"{what} must be a dict (got {type(value).__name__})", field=what)


def workspace_complete_run_request(
    db: Db,
    request_id: str,
    result: Mapping[str, Any] | None = None,
    error: Mapping[str, Any] | None = None,
    lease_token: str | None = None,
) -> dict[str, Any]:
    """End a request: ``completed`` with no error, ``cancelled`` for an error whose code is ``run_cancelled``, else
    ``failed``. ``result`` (a GEPA result dict) is imported as the run summary; ``error`` is ``{"code", "message",
    "detail"}`` (``SynthOptimizerError.to_dict()``; an error instance or a ``GepaResult`` are accepted too)."""
    with open_queue(db) as queue:
        return queue.complete(
            request_id,
            result=_as_dict(result, "result"),
            error=_as_dict(error, "error"),
            lease_token=lease_token,
        ).to_dict()


def workspace_recover(db: Db) -> dict[str, Any]:
    """Requeue expired leased or running requests (cancel those whose cancel was requested; fail those whose lease
    expired for the third time): ``{"recovered", "requeued", "cancelled", "failed", "invariants"}``."""
    with open_queue(db) as queue:
        return queue.recover().to_dict()


def workspace_cancel_run_request(db: Db, request_id: str, reason: str = "cancelled by the caller") -> dict[str, Any]:
    """Cancel a queued request at once, or ask the worker of a leased or running one to stop; returns the request
    (``status``, ``cancel_requested``)."""
    with open_queue(db) as queue:
        return queue.cancel(request_id, reason=reason).to_dict()
