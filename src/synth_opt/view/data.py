"""What the run browser shows, read from a run directory: its workspace (``workspace.sqlite``, opened read-only, so
a run that is still going is read while it writes) and, once the run ended, its ``result_manifest.json``.

Plain data out (:class:`RunSummary`, :class:`RunDetail`, :class:`CandidateDetail`); nothing here renders.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "TERMINAL_STATUSES",
    "CandidateDetail",
    "CandidateNode",
    "Decision",
    "RunDetail",
    "RunSummary",
    "candidate_detail",
    "list_runs",
    "run_detail",
]

TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
WORKSPACE: Final = "workspace.sqlite"


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    status: str
    updated_at: str | None
    seed_train_score: float | None
    best_train_score: float | None
    seed_heldout_score: float | None
    best_heldout_score: float | None
    proposals: int
    accepted: int
    cost_usd: float | None
    cost_known: bool
    rollouts_total: int | None
    stop_reason: str | None
    error: str | None
    heldout_report: dict[str, Any] | None = None

    @property
    def live(self) -> bool:
        return self.status not in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class Decision:
    proposal_index: int
    candidate_id: str
    accepted: bool
    reason: str
    parent_sum: float | None
    child_sum: float | None
    rebased_onto: str | None = None  # the candidate a stale proposal's edit was carried onto (staleness "rebase")
    repeated: tuple[int, ...] = ()  # asked again: the proposals in flight whose edits its first reply repeated


@dataclass(slots=True)
class CandidateNode:
    candidate_id: str
    parent_ids: tuple[str, ...]
    proposal_index: int | None
    module: str | None
    status: str  # seed, accepted, rejected (the last status the run gave it), or "proposed" before any
    reason: str | None
    mean_score: float | None  # on the pareto rows (pool members only)
    heldout_score: float | None = None
    decision: Decision | None = None
    children: list[CandidateNode] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunDetail:
    summary: RunSummary
    roots: tuple[CandidateNode, ...]
    nodes: dict[str, CandidateNode]
    decisions: tuple[Decision, ...]
    heldout: tuple[tuple[str, float, int], ...]  # candidate, mean, rows
    best_candidate_id: str | None
    seed_candidate_id: str | None
    has_chart: bool


@dataclass(frozen=True, slots=True)
class CandidateDetail:
    run_id: str
    node: CandidateNode
    payload: dict[str, str]
    parent_id: str | None
    parent_payload: dict[str, str] | None
    scores: dict[str, float]  # pareto row -> reward (pool members)
    live: bool  # the run is still going


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """Every run directory under ``runs_dir`` with a workspace, newest first (the ``latest`` link skipped)."""
    found: list[RunSummary] = []
    if not runs_dir.is_dir():
        return found
    for run_dir in sorted(runs_dir.iterdir()):
        if run_dir.is_symlink() or not (run_dir / WORKSPACE).is_file():
            continue
        try:
            found.append(_summary(run_dir))
        except (sqlite3.Error, OSError, ValueError):
            continue  # a workspace being created, or damaged: not listed
    return sorted(found, key=lambda run: run.updated_at or "", reverse=True)


def run_detail(run_dir: Path) -> RunDetail:
    summary = _summary(run_dir)
    with _read_only(run_dir) as db:
        run_id = summary.run_id
        nodes: dict[str, CandidateNode] = {}
        for row in db.execute(
            "SELECT candidate_id, parent_ids_json, proposal_index, module, is_seed FROM candidates "
            "WHERE run_id = ? ORDER BY sequence_number",
            (run_id,),
        ):
            nodes[row[0]] = CandidateNode(
                candidate_id=row[0],
                parent_ids=tuple(json.loads(row[1])),
                proposal_index=row[2],
                module=row[3],
                status="seed" if row[4] else "proposed",
                reason=None,
                mean_score=None,
            )
        for candidate_id, status, reason, mean in db.execute(
            "SELECT candidate_id, status, reason, mean_score FROM candidate_statuses WHERE run_id = ? "
            "ORDER BY sequence_number",
            (run_id,),
        ):
            node = nodes.get(candidate_id)
            if node is not None:
                node.status, node.reason = status, reason
                node.mean_score = mean if mean is not None else node.mean_score
        onto, repeated = _proposal_links(db, run_id)
        decisions = tuple(
            Decision(row[0], row[1], bool(row[2]), row[3], row[4], row[5], onto.get(row[0]), repeated.get(row[0], ()))
            for row in db.execute(
                "SELECT proposal_index, candidate_id, accepted, reason, parent_sum, child_sum "
                "FROM acceptance_decisions WHERE run_id = ? ORDER BY proposal_index",
                (run_id,),
            )
        )
        heldout: list[tuple[str, float, int]] = []
        for (fields,) in db.execute(
            "SELECT fields_json FROM event_stream_events WHERE run_id = ? AND type = 'heldout.scored' "
            "ORDER BY sequence_number",
            (run_id,),
        ):
            data = json.loads(fields)
            if data.get("mean_score") is not None:
                heldout.append((str(data["candidate_id"]), float(data["mean_score"]), len(data.get("scores") or {})))
        best, seed = db.execute(
            "SELECT best_candidate_id, seed_candidate_id FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone() or (None, None)
    for decision in decisions:  # the decision on the proposal that made the candidate (an unchanged proposal
        node = nodes.get(decision.candidate_id)  # names its parent, and is not that candidate's decision)
        if node is not None and node.proposal_index == decision.proposal_index:
            node.decision = decision
    for candidate_id, mean, _ in heldout:
        if candidate_id in nodes:
            nodes[candidate_id].heldout_score = mean
    roots: list[CandidateNode] = []
    for node in nodes.values():
        parent = nodes.get(node.parent_ids[0]) if node.parent_ids else None
        (parent.children if parent is not None else roots).append(node)
    return RunDetail(
        summary=summary,
        roots=tuple(roots),
        nodes=nodes,
        decisions=decisions,
        heldout=tuple(heldout),
        best_candidate_id=best,
        seed_candidate_id=seed,
        has_chart=(run_dir / "score_chart.svg").is_file(),
    )


def _proposal_links(db: sqlite3.Connection, run_id: str) -> tuple[dict[int, str], dict[int, tuple[int, ...]]]:
    """Per proposal: the candidate its edit was rebased onto, and the proposals whose edits its first reply
    repeated (the workspace's ``rebase_target`` and ``repeated_edit`` links)."""
    onto: dict[int, str] = {}
    repeated: dict[int, list[int]] = {}
    for kind, source, index in db.execute(
        "SELECT link_kind, source_id, proposal_index FROM plan_links WHERE run_id = ? AND proposal_index IS NOT NULL "
        "AND link_kind IN ('rebase_target', 'repeated_edit') ORDER BY sequence_number, source_id",
        (run_id,),
    ):
        if kind == "rebase_target":
            onto[int(index)] = str(source)
        elif str(source).startswith("proposal:") and str(source)[9:].isdigit():
            repeated.setdefault(int(index), []).append(int(str(source)[9:]))
    return onto, {index: tuple(sorted(others)) for index, others in repeated.items()}


def candidate_detail(run_dir: Path, candidate_id: str) -> CandidateDetail | None:
    detail = run_detail(run_dir)
    node = detail.nodes.get(candidate_id)
    if node is None:
        return None
    with _read_only(run_dir) as db:
        payloads = dict(
            db.execute(
                "SELECT candidate_id, payload_json FROM candidate_payloads WHERE run_id = ? AND candidate_id IN (?, ?)",
                (detail.summary.run_id, candidate_id, node.parent_ids[0] if node.parent_ids else ""),
            ).fetchall()
        )
        row = db.execute(
            "SELECT scores_json FROM candidate_statuses WHERE run_id = ? AND candidate_id = ? AND scores_json IS NOT "
            "NULL ORDER BY sequence_number DESC LIMIT 1",
            (detail.summary.run_id, candidate_id),
        ).fetchone()
    parent_id = node.parent_ids[0] if node.parent_ids else None
    parent_payload = payloads.get(parent_id) if parent_id else None
    return CandidateDetail(
        run_id=detail.summary.run_id,
        node=node,
        payload=json.loads(payloads.get(candidate_id, "{}")),
        parent_id=parent_id,
        parent_payload=json.loads(parent_payload) if parent_payload else None,
        scores={str(k): float(v) for k, v in json.loads(row[0]).items()} if row else {},
        live=detail.summary.live,
    )


# -- reading ----------------------------------------------------------------------------------------------------


@contextmanager
def _read_only(run_dir: Path) -> Iterator[sqlite3.Connection]:
    """The run's workspace, read-only (a live run's writer is never blocked or changed by the browser)."""
    db = sqlite3.connect(f"{(run_dir / WORKSPACE).resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        yield db
    finally:
        db.close()


def _summary(run_dir: Path) -> RunSummary:
    with _read_only(run_dir) as db:
        row = db.execute(
            "SELECT run_id, status, updated_at, seed_train_score, best_train_score, stop_reason, error FROM runs "
            "ORDER BY updated_at DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise ValueError(f"{run_dir}: no run in the workspace yet")
        run_id = row[0]
        proposals, accepted = db.execute(
            "SELECT count(*), coalesce(sum(accepted), 0) FROM acceptance_decisions WHERE run_id = ?", (run_id,)
        ).fetchone()
    manifest = _manifest(run_dir)
    usage = manifest.get("usage") or {}
    total = usage.get("total") or {}
    rollouts = manifest.get("rollouts_used") or {}
    return RunSummary(
        run_id=run_id,
        status=str(manifest.get("status") or row[1] or "created"),
        updated_at=row[2],
        seed_train_score=manifest.get("seed_train_score", row[3]),
        best_train_score=manifest.get("best_train_score", row[4]),
        seed_heldout_score=manifest.get("seed_heldout_score"),
        best_heldout_score=manifest.get("best_heldout_score"),
        proposals=int(manifest.get("proposals", proposals)),
        accepted=int(manifest.get("accepted", accepted)),
        cost_usd=total.get("cost_usd") if "cost_usd" in total else manifest.get("cost_usd"),
        cost_known=bool(manifest),
        rollouts_total=rollouts.get("total"),
        stop_reason=manifest.get("stop_reason", row[5]),
        error=manifest.get("error", row[6]),
        heldout_report=manifest.get("heldout_report"),
    )


def _manifest(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / "result_manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
