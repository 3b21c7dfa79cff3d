"""What the run browser shows, read from a run directory: its workspace (``workspace.sqlite``, opened read-only, so
a run that is still going is read while it writes) and, once the run ended, its ``result_manifest.json``.

Plain data out (:class:`RunSummary`, :class:`RunDetail`, :class:`CandidateDetail`); nothing here renders. Every
file is read only where it resolves inside the run's own directory (a link leading elsewhere is not followed), and a
file that cannot be read or holds a value of the wrong type is a :class:`DamagedRun` naming the file and what to do.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

from synth_opt.logs import get_logger
from synth_opt.workspace.status import cannot_write_beside

__all__ = [
    "TERMINAL_STATUSES",
    "WORKSPACE",
    "CandidateDetail",
    "CandidateNode",
    "DamagedRun",
    "Decision",
    "RunDetail",
    "RunSummary",
    "candidate_detail",
    "list_runs",
    "run_detail",
    "run_file",
]

TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
WORKSPACE: Final = "workspace.sqlite"
MANIFEST: Final = "result_manifest.json"
_MANIFEST_REMEDY: Final = "fix it, or move it aside (the browser then shows the workspace's own numbers)"
_REPORT_KEYS: Final = ("n", "mean_diff", "ci95_low", "ci95_high", "p_value", "wins", "ties", "losses")
_BUSY: Final = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)

log = get_logger(__name__)


class DamagedRun(Exception):
    """A run's file the browser cannot read or make sense of: the file, what is wrong with it, and what to do."""

    def __init__(self, path: Path, problem: str, remedy: str) -> None:
        super().__init__(f"{path}: {problem}; {remedy}")
        self.path = path
        self.problem = problem
        self.remedy = remedy


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    directory: str  # the run directory's name under the runs folder (the browser's links use it)
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
    problem: str | None = None  # its files cannot be read: what is wrong and what to do

    @property
    def live(self) -> bool:
        return self.problem is None and self.status not in TERMINAL_STATUSES


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
    directory: str
    node: CandidateNode
    payload: dict[str, str]
    parent_id: str | None
    parent_payload: dict[str, str] | None
    scores: dict[str, float]  # pareto row -> reward (pool members)
    live: bool  # the run is still going


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """Every run directory under ``runs_dir`` with a workspace, newest first (the ``latest`` link skipped); a run
    whose files cannot be read is listed as such, with what is wrong and what to do."""
    found: list[RunSummary] = []
    if not runs_dir.is_dir():
        return found
    for run_dir in sorted(runs_dir.iterdir()):
        if run_dir.is_symlink() or run_file(run_dir, WORKSPACE) is None:
            continue
        try:
            found.append(_summary(run_dir))
        except DamagedRun as exc:
            found.append(_unreadable(run_dir, str(exc)))
        except Exception:  # one run's surprise never takes the others down
            log.exception("view.run_unreadable", run_dir=str(run_dir))
            found.append(_unreadable(run_dir, "an unexpected error reading this run (logged by synth-opt view)"))
    return sorted(found, key=lambda run: run.updated_at or "", reverse=True)


def run_file(run_dir: Path, name: str) -> Path | None:
    """``run_dir/name`` resolved, when it is a file inside the run's own directory; None for a missing file or a
    link leading anywhere else (the browser reads nothing outside the runs folder)."""
    try:
        home = run_dir.resolve()
        path = (home / name).resolve()
        return path if path.parent == home and path.is_file() else None
    except (OSError, ValueError):  # a name too long, a NUL byte, a directory it may not read
        return None


def run_detail(run_dir: Path) -> RunDetail:
    summary = _summary(run_dir)
    ws = _Check(run_dir / WORKSPACE, _repair(run_dir / WORKSPACE))
    with _read_only(run_dir) as db:
        run_id = summary.run_id
        nodes: dict[str, CandidateNode] = {}
        for row in db.execute(
            "SELECT candidate_id, parent_ids_json, proposal_index, module, is_seed FROM candidates "
            "WHERE run_id = ? ORDER BY sequence_number",
            (run_id,),
        ):
            parents = ws.json(row[1], f"candidate {row[0]}'s parent_ids_json")
            if not isinstance(parents, list) or not all(isinstance(parent, str) for parent in parents):
                ws.fail(f"candidate {row[0]}'s parent_ids_json is {_shown(parents)}, not a list of ids")
            nodes[row[0]] = CandidateNode(
                candidate_id=row[0],
                parent_ids=tuple(parents),
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
                mean = ws.number(mean, f"candidate {candidate_id}'s mean_score")
                node.mean_score = mean if mean is not None else node.mean_score
        onto, repeated = _proposal_links(db, run_id)
        decisions = tuple(
            Decision(
                row[0],
                row[1],
                bool(row[2]),
                row[3],
                ws.number(row[4], f"proposal {row[0]}'s parent_sum"),
                ws.number(row[5], f"proposal {row[0]}'s child_sum"),
                onto.get(row[0]),
                repeated.get(row[0], ()),
            )
            for row in db.execute(
                "SELECT proposal_index, candidate_id, accepted, reason, parent_sum, child_sum "
                "FROM acceptance_decisions WHERE run_id = ? ORDER BY proposal_index",
                (run_id,),
            )
        )
        heldout: list[tuple[str, float, int]] = []
        for sequence, fields in db.execute(
            "SELECT sequence_number, fields_json FROM event_stream_events WHERE run_id = ? AND type = 'heldout.scored' "
            "ORDER BY sequence_number",
            (run_id,),
        ):
            what = f"event {sequence} (heldout.scored)"
            data = ws.mapping(ws.json(fields, what), what)
            mean = ws.number(data.get("mean_score"), f"{what}'s mean_score")
            if mean is not None:
                scores = data.get("scores")
                heldout.append((str(data.get("candidate_id")), mean, len(scores) if isinstance(scores, dict) else 0))
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
        has_chart=run_file(run_dir, "score_chart.svg") is not None,
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
    ws = _Check(run_dir / WORKSPACE, _repair(run_dir / WORKSPACE))
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
    scores = ws.mapping(ws.json(row[0], f"candidate {candidate_id}'s scores_json"), "scores_json") if row else {}
    return CandidateDetail(
        run_id=detail.summary.run_id,
        directory=detail.summary.directory,
        node=node,
        payload=_payload(ws, payloads.get(candidate_id, "{}"), candidate_id),
        parent_id=parent_id,
        parent_payload=_payload(ws, parent_payload, parent_id) if parent_payload and parent_id else None,
        scores={
            str(name): _score(ws, value, f"candidate {candidate_id}'s score on {name}")
            for name, value in scores.items()
        },
        live=detail.summary.live,
    )


def _score(ws: _Check, value: object, what: str) -> float:
    score = ws.number(value, what)
    return ws.fail(f"{what} is null, not a number") if score is None else score


def _payload(ws: _Check, text: object, candidate_id: str) -> dict[str, str]:
    payload = ws.mapping(
        ws.json(text, f"candidate {candidate_id}'s payload_json"), f"candidate {candidate_id}'s payload"
    )
    if not all(isinstance(value, str) for value in payload.values()):
        ws.fail(f"candidate {candidate_id}'s payload has a module whose text is not a string")
    return payload


# -- reading ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Check:
    """Values read from one run file, checked for their type: a wrong one is a :class:`DamagedRun` naming the file."""

    path: Path
    remedy: str

    def fail(self, problem: str) -> NoReturn:
        raise DamagedRun(self.path, problem, self.remedy)

    def json(self, text: object, what: str) -> Any:
        if not isinstance(text, str | bytes):
            self.fail(f"{what} is {_shown(text)}, not JSON text")
        try:
            return json.loads(text)
        except ValueError as exc:
            self.fail(f"{what} is not JSON ({exc})")

    def number(self, value: object, what: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{what} is {_shown(value)}, not a number")
        return float(value)

    def count(self, value: object, what: str) -> int | None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            self.fail(f"{what} is {_shown(value)}, not a count")
        return value

    def text(self, value: object, what: str) -> str | None:
        if value is not None and not isinstance(value, str):
            self.fail(f"{what} is {_shown(value)}, not a text")
        return value

    def mapping(self, value: object, what: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(f"{what} is {_shown(value)}, not an object")
        return value


def _shown(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _repair(workspace: Path) -> str:
    return f"if it stays so, repair it: synth-opt workspace repair --db {workspace}"


@contextmanager
def _read_only(run_dir: Path) -> Iterator[sqlite3.Connection]:
    """The run's workspace, read-only (a live run's writer is never blocked or changed by the browser); an SQLite
    error is a :class:`DamagedRun`."""
    path = run_dir / WORKSPACE
    found = run_file(run_dir, WORKSPACE)
    if found is None or any(run_file(run_dir, WORKSPACE + side) is None for side in _links(run_dir)):
        raise DamagedRun(path, "missing, or a link leading out of the run directory", "the browser does not read it")
    try:
        db = _reading(found)
        try:
            yield db
        finally:
            db.close()
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY:
            raise DamagedRun(path, str(exc), "the run is writing it: try again in a moment") from exc
        raise DamagedRun(path, str(exc), _repair(path)) from exc


def _reading(found: Path) -> sqlite3.Connection:
    """A connection that only reads. With no write-ahead log beside the file (a finished run's workspace) and a
    folder this process may write, a read-write connection held to queries (``query_only``): SQLite makes a
    ``-wal`` and ``-shm`` to read a WAL database and, as the last connection to close, removes them, where a
    read-only one would leave them behind in the run directory. Otherwise a read-only connection; in a folder this
    process cannot write (a read-only mount, an archive), where SQLite cannot make the ``-shm`` a WAL database reads
    through, the file read as ``immutable`` when no write-ahead log lies beside it (then the file holds the whole
    database, and nothing is made beside it)."""
    if not found.with_name(found.name + "-wal").exists() and all(
        os.access(where, os.W_OK) for where in (found, found.parent)
    ):
        db = sqlite3.connect(f"{found.as_uri()}?mode=rw", uri=True, timeout=5)
        db.execute("PRAGMA query_only = ON")
        return db
    db = sqlite3.connect(f"{found.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchall()
    except sqlite3.Error as error:
        wal = found.with_name(found.name + "-wal")
        if not cannot_write_beside(error) or (wal.exists() and wal.stat().st_size > 0):
            db.close()
            raise
        db.close()
        return sqlite3.connect(f"{found.as_uri()}?mode=ro&immutable=1", uri=True, timeout=5)
    return db


def _links(run_dir: Path) -> list[str]:
    """The workspace's side files (SQLite opens them beside it) that are links."""
    return [side for side in ("-wal", "-shm") if (run_dir / (WORKSPACE + side)).is_symlink()]


def _summary(run_dir: Path) -> RunSummary:
    ws = _Check(run_dir / WORKSPACE, _repair(run_dir / WORKSPACE))
    with _read_only(run_dir) as db:
        row = db.execute(
            "SELECT run_id, status, updated_at, seed_train_score, best_train_score, stop_reason, error FROM runs "
            "ORDER BY updated_at DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise DamagedRun(ws.path, "no run in it yet", "a run starting writes it: try again in a moment")
        run_id = str(row[0])
        proposals, accepted = db.execute(
            "SELECT count(*), coalesce(sum(accepted), 0) FROM acceptance_decisions WHERE run_id = ?", (run_id,)
        ).fetchone()
    m = _Check(run_dir / MANIFEST, _MANIFEST_REMEDY)
    manifest = _manifest(run_dir, m)
    total = m.mapping(m.mapping(manifest.get("usage"), "usage").get("total"), "usage.total")
    rollouts = m.mapping(manifest.get("rollouts_used"), "rollouts_used")
    return RunSummary(
        run_id=run_id,
        directory=run_dir.name,
        status=m.text(manifest.get("status"), "status") or ws.text(row[1], "runs.status") or "created",
        updated_at=ws.text(row[2], "runs.updated_at"),
        seed_train_score=m.number(manifest.get("seed_train_score", row[3]), "seed_train_score"),
        best_train_score=m.number(manifest.get("best_train_score", row[4]), "best_train_score"),
        seed_heldout_score=m.number(manifest.get("seed_heldout_score"), "seed_heldout_score"),
        best_heldout_score=m.number(manifest.get("best_heldout_score"), "best_heldout_score"),
        proposals=_either(m.count(manifest.get("proposals"), "proposals"), int(proposals)),
        accepted=_either(m.count(manifest.get("accepted"), "accepted"), int(accepted)),
        cost_usd=m.number(total.get("cost_usd") if "cost_usd" in total else manifest.get("cost_usd"), "cost_usd"),
        cost_known=bool(manifest),
        rollouts_total=m.count(rollouts.get("total"), "rollouts_used.total"),
        stop_reason=m.text(manifest.get("stop_reason", row[5]), "stop_reason"),
        error=m.text(manifest.get("error", row[6]), "error"),
        heldout_report=_report(m, manifest.get("heldout_report")),
    )


def _either(value: int | None, otherwise: int) -> int:
    return otherwise if value is None else value


def _report(m: _Check, value: object) -> dict[str, Any] | None:
    report = m.mapping(value, "heldout_report")
    if not report:
        return None
    for key in _REPORT_KEYS:
        if m.number(report.get(key), f"heldout_report.{key}") is None:
            m.fail(f"heldout_report has no {key}")
    return report


def _unreadable(run_dir: Path, problem: str) -> RunSummary:
    """The index's row for a run whose files cannot be read."""
    return RunSummary(
        run_id=run_dir.name,
        directory=run_dir.name,
        status="unreadable",
        updated_at=None,
        seed_train_score=None,
        best_train_score=None,
        seed_heldout_score=None,
        best_heldout_score=None,
        proposals=0,
        accepted=0,
        cost_usd=None,
        cost_known=False,
        rollouts_total=None,
        stop_reason=None,
        error=None,
        problem=problem,
    )


def _manifest(run_dir: Path, m: _Check) -> dict[str, Any]:
    """The run's manifest; empty before the run ends (or when it is a link leading out of the run directory)."""
    path = run_file(run_dir, MANIFEST)
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        return {}  # removed in between, or being replaced
    except ValueError as exc:
        m.fail(f"not JSON ({exc})")
    return m.mapping(data, "the manifest")
