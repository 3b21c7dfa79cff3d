"""GepaResult: what a run returns, and what ``result_manifest.json`` holds."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GepaResult", "artifact_ref"]


def artifact_ref(path: Path, kind: str) -> dict[str, Any]:
    data = path.read_bytes()
    return {"path": str(path), "kind": kind, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


@dataclass(frozen=True, slots=True)
class GepaResult:
    """The outcome of one run.

    Scores are mean rewards on the container's own scale: ``*_train_score`` over the pareto rows,
    ``*_heldout_score`` over the heldout rows evaluated (None where not evaluated).

    ``artifact_refs`` lists each artifact with its sha256 and size; the workspace database is listed without them,
    since it is still written to after the manifest (the workspace keeps its own manifest row).
    """

    run_id: str
    status: str
    best_candidate: dict[str, str]
    best_candidate_id: str
    seed_candidate_id: str
    manifest_path: str
    event_feed_path: str
    normalized_event_feed_path: str | None
    cache_profile_path: str | None
    candidate_registry_path: str
    frontier_path: str
    run_registry_path: str
    workspace_db_path: str | None
    artifact_refs: list[dict[str, Any]]
    cost_usd: float | None
    usage: dict[str, dict[str, Any]]
    state_history: list[dict[str, str]]
    seed_train_score: float | None
    seed_heldout_score: float | None
    best_train_score: float | None
    best_heldout_score: float | None
    rollouts_used: dict[str, int]
    stop_reason: str
    proposals: int = 0
    accepted: int = 0
    proposals_failed: int = 0
    rollouts_reused: dict[str, int] = field(default_factory=lambda: {"train": 0, "heldout": 0, "total": 0})
    overrides_applied: dict[str, str] = field(default_factory=dict)
    heldout_report: dict[str, Any] | None = None  # synth_opt.gepa.report.HeldoutReport, when both were evaluated
    error: str | None = None  # why a failed or cancelled run ended (None for a completed one)
    from_stored_result: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("from_stored_result")
        return data

    @classmethod
    def from_manifest(cls, path: str | os.PathLike[str]) -> GepaResult:
        """The result a run wrote to ``result_manifest.json`` (a ``ValueError`` for a file that holds none)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path} holds no result manifest (a JSON object)")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known and k != "from_stored_result"})
