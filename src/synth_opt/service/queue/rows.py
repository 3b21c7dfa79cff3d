"""The HTTP API's view of a request, JSON column text, and the run summary a completed request imports from a
GEPA result."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from synth_opt.service.queue.records import RunRequest

__all__ = ["PUBLIC_OMIT", "dumps", "public_view", "summary_columns"]

# what a caller of the HTTP API never sees: the lease token is the worker's proof of ownership
PUBLIC_OMIT = frozenset({"lease_token"})


def dumps(value: Any) -> str | None:
    """JSON text for a column, or NULL for None."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=str)


def public_view(request: RunRequest, *, with_result: bool = True) -> dict[str, Any]:
    """A request as the HTTP API shows it: no lease token; optionally without the (large) full result."""
    return {k: v for k, v in request.to_dict().items() if k not in PUBLIC_OMIT and (with_result or k != "result")}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def summary_columns(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run summary columns from a GEPA result (``GepaResult.to_json()`` or a result manifest): workspace path,
    manifest path, best candidate id, cost, usage and the full result JSON. Missing fields stay NULL."""
    if not result:
        return {
            "workspace_db_path": None,
            "manifest_path": None,
            "best_candidate_id": None,
            "cost_usd": None,
            "usage_json": None,
            "result_json": None,
        }
    usage = result.get("usage")
    return {
        "workspace_db_path": _text(result.get("workspace_db_path")),
        "manifest_path": _text(result.get("manifest_path")),
        "best_candidate_id": _text(result.get("best_candidate_id")),
        "cost_usd": _number(result.get("cost_usd")),
        "usage_json": dumps(usage) if isinstance(usage, dict) else None,
        "result_json": dumps(dict(result)),
    }
