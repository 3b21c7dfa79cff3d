"""Cache keys: a hash of namespace, boundary and the request with its volatile parts removed.

Volatile parts are what changes between two runs of one config without changing the answer: run and rollout ids,
timestamps, durations, paths and URLs of launched processes, and secrets (which must never reach a key anyway).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["VOLATILE_KEYS", "cache_key", "normalize_request"]

VOLATILE_KEYS = frozenset(
    {
        "rollout_id",
        "run_id",
        "ts",
        "timestamp",
        "created_at",
        "updated_at",
        "duration_seconds",
        "path",
        "paths",
        "url",
        "base_url",
        "cwd",
        "codex_home",
        "workdir",
    }
)
SECRET_MARKERS = ("api_key", "apikey", "token", "secret", "password", "authorization")


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return not lowered.endswith("_env") and any(marker in lowered for marker in SECRET_MARKERS)


def normalize_request(value: Any) -> Any:
    """Drop volatile and secret-named keys at every depth; keep everything else exactly."""
    if isinstance(value, dict):
        return {
            str(k): normalize_request(v)
            for k, v in value.items()
            if str(k) not in VOLATILE_KEYS and not _is_secret_name(str(k))
        }
    if isinstance(value, list | tuple):
        return [normalize_request(v) for v in value]
    return value


def cache_key(namespace: str, boundary: str, request: Any) -> str:
    canonical = json.dumps(
        {"namespace": namespace, "boundary": boundary, "request": normalize_request(request)},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
