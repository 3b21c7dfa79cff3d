"""The values projections are made of: a row, the event it came from, the context earlier events leave behind,
and the small conversions every projection uses. Nothing here does I/O."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from synth_opt.events import Event
from synth_opt.events.types import (
    UNSET,
    BudgetUpdated,
    CandidateRegistered,
    FrontierUpdated,
    RunConfig,
    RunState,
    Stage,
)

__all__ = [
    "BUDGET_STOP_REASONS",
    "MERGE_MODULE",
    "EventKey",
    "ProjectionContext",
    "Row",
    "canonical",
    "dumps",
    "float_or_none",
    "given",
    "int_or_none",
    "sha256",
    "stage_kind",
    "str_or_none",
    "usage_columns",
]

BUDGET_STOP_REASONS = frozenset(
    {"max_total_rollouts", "max_train_rollouts", "max_cost_usd", "max_total_tokens", "max_time_seconds"}
)
MERGE_MODULE = "*merge*"


class Row(NamedTuple):
    """One row for ``table``; columns the dict leaves out are stored as NULL."""

    table: str
    values: dict[str, Any]


class EventKey(NamedTuple):
    """Which run and event a derived row comes from."""

    run_id: str
    seq: int
    ts: str


@dataclass(slots=True)
class ProjectionContext:
    """What projections of later events need to know about earlier ones. Feed it every event, in order, with
    :meth:`observe` after projecting the event."""

    payloads: dict[str, dict[str, str]] = field(default_factory=dict)
    max_cost_usd: float | None = None
    best_candidate_id: str | None = None
    frontier_size: int | None = None
    run_state: str | None = None
    used: dict[str, Any] = field(default_factory=dict)
    reserved: dict[str, Any] = field(default_factory=dict)
    train_cap: int | None = None
    generation: int = 0
    accepted: int = 0
    rejected: int = 0
    reused: int | None = None

    def observe(self, event: Event) -> None:
        if event.type not in _OBSERVED:  # most events (every rollout's) need no payload
            return
        data = event.read_partially().data  # an older feed's event may lack fields: its attributes are None
        if isinstance(data, CandidateRegistered):
            if isinstance(data.payload, dict):
                payload = {str(k): str(v) for k, v in data.payload.items()}
                self.payloads.setdefault(str(data.candidate_id), payload)
        elif isinstance(data, RunConfig):
            gepa = (data.decision_config or {}).get("gepa") or {}
            cost = float_or_none(gepa.get("max_cost_usd"))
            self.max_cost_usd = cost if cost is not None and cost > 0 else None
        elif isinstance(data, FrontierUpdated):
            self.best_candidate_id = str_or_none(data.best_candidate_id) or self.best_candidate_id
            members = data.members
            self.frontier_size = len(members) if isinstance(members, list | tuple) else self.frontier_size
        elif isinstance(data, RunState):
            self.run_state = str_or_none(data.state)
        elif isinstance(data, BudgetUpdated):
            self.used = dict(data.used or {})
            self.reserved = dict(data.reserved or {})
            self.train_cap = int_or_none(data.train_cap)
            self.generation = (int_or_none(data.proposal_index) or 0) + 1
            self.accepted = int_or_none(data.accepted) or 0
            self.rejected = int_or_none(data.rejected) or 0
            self.reused = int_or_none(data.reused)


_OBSERVED = frozenset(cls.TYPE for cls in (CandidateRegistered, RunConfig, FrontierUpdated, RunState, BudgetUpdated))


def stage_kind(stage: str | None) -> tuple[str, int | None]:
    """``"p3.child"`` -> ``("child", 3)``, ``"seed.pareto"`` -> ``("seed", None)``, ``"heldout"`` ->
    ``("heldout", None)`` (:class:`~synth_opt.events.types.Stage`)."""
    if not stage:
        return "unknown", None
    parsed = Stage.parse(stage)
    if parsed.proposal is not None:
        return parsed.step, parsed.proposal
    return parsed.step.split(".", 1)[0], None


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str, sort_keys=True)


def dumps(value: Any) -> str:
    """Compact JSON, keys in their given order (one shared encoder: ``json.dumps`` with options builds a new one
    per call, which the live writer would pay for every row)."""
    return _ENCODER.encode(value)


def canonical(value: Any) -> str:
    """Compact JSON with sorted keys, for content hashes."""
    return _CANONICAL.encode(value)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def given(value: Any) -> Any:
    """A payload field's value, None for one its event left out (:data:`~synth_opt.events.types.UNSET`)."""
    return None if value is UNSET else value


def str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def int_or_none(value: Any) -> int | None:
    """An int from an int, float or numeric string; None otherwise (bools included). Hot: called for most
    columns of every row, so it tests exact types."""
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is float:
        return int(value)
    if kind is str:
        try:
            return int(value)
        except ValueError:
            return None
    return None


def float_or_none(value: Any) -> float | None:
    kind = type(value)
    return float(value) if kind is float or kind is int else None


def usage_columns(data: Any) -> dict[str, Any]:
    """A usage block as ledger columns; an unknown cost stays NULL (SUM skips it, as ``Usage.__add__`` does)."""
    d = data if isinstance(data, dict) else {}
    return {
        "calls": int_or_none(d.get("calls")) or 0,
        "prompt_tokens": int_or_none(d.get("prompt_tokens")) or 0,
        "completion_tokens": int_or_none(d.get("completion_tokens")) or 0,
        "total_tokens": int_or_none(d.get("total_tokens")) or 0,
        "cost_usd": float_or_none(d.get("cost_usd")),
    }
