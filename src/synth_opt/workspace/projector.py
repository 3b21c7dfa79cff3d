"""Pure projection of run events into workspace rows.

``project_event(event, run_id, context)`` returns the rows one event produces and does no I/O, so the live writer,
the end-of-run back-fill and a repair build the tables with the same code. Every event gives its
``event_stream_events`` row (which also records which derived tables the event feeds, for the freshness checks);
the handlers in :mod:`~synth_opt.workspace.project_search` and :mod:`~synth_opt.workspace.project_io` give the
derived rows. The facts a row needs from earlier events live in a :class:`ProjectionContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from synth_opt.events import Event, EventPayload, UnknownEvent
from synth_opt.events import types as t
from synth_opt.events.types import shared_field
from synth_opt.workspace import project_io as io
from synth_opt.workspace import project_search as search
from synth_opt.workspace.rows import EventKey, ProjectionContext, Row, dumps, int_or_none, str_or_none

__all__ = [
    "HANDLED_TYPES",
    "PROJECTION_ERROR",
    "ProjectionContext",
    "Row",
    "project_batch",
    "project_event",
    "touch_run",
]

Handler = Callable[[Event, EventKey, ProjectionContext], list[Row]]

_HANDLERS: dict[type[EventPayload], Handler] = {
    t.RunState: search.run_state,
    t.RunConfig: search.run_config,
    t.CandidateRegistered: search.candidate_registered,
    t.SeedScored: search.seed_scored,
    t.FrontierUpdated: search.frontier_updated,
    t.ProposalPlanned: search.proposal_planned,
    t.ProposalCreated: search.proposal_created,
    t.AcceptanceDecided: search.acceptance_decided,
    t.ProposalFailed: search.acceptance_decided,  # a failed proposal's decision: rejected, reason proposal_failed
    t.RolloutCompleted: io.rollout_finished,
    t.RolloutDegraded: io.rollout_finished,
    t.ReflectionRequested: io.reflection_requested,
    t.ProposerCalled: io.proposer_call,
    t.ProposerFailed: io.proposer_call,
    t.BudgetUpdated: io.stopper_state,
    t.SearchStopped: io.stopper_state,
    t.RunFinished: io.stopper_state,
    t.CacheAccess: io.cache_access,
    t.CheckpointWritten: io.checkpoint_written,
    t.CandidateStatus: io.candidate_status,
}
HANDLED_TYPES = frozenset(cls.TYPE for cls in _HANDLERS)
PROJECTION_ERROR = "projection_error"


def project_event(event: Event, run_id: str, context: ProjectionContext) -> list[Row]:
    """The rows one event produces: its ``event_stream_events`` row first, then the derived rows. Event types
    without a handler (``container.launched``, ``budget.warning``, ...) give only the stream row. An event with
    fewer fields than its class is read partially (:meth:`~synth_opt.events.Event.read_partially`: the handlers
    read every attribute as possibly None); one without a key field of its class (a rollout's id) is malformed."""
    if event.type in HANDLED_TYPES:
        event = event.read_partially()  # an older feed's event may have fewer fields than this version writes
        if isinstance(event.data, UnknownEvent) or any(key not in event.fields for key in event.data.KEY):
            return [_stream_row(event, run_id, [PROJECTION_ERROR])]  # malformed: not even partially its type
    try:
        handler = _HANDLERS.get(type(event.data))
        derived = handler(event, EventKey(run_id, event.sequence_number, event.ts), context) if handler else []
    except (KeyError, TypeError, ValueError, AttributeError):
        # A malformed event must not stop the writer: it is stored, marked, and named by the invariant report.
        return [_stream_row(event, run_id, [PROJECTION_ERROR])]
    tables = sorted({row.table for row in derived if row.table != "runs"})
    return [_stream_row(event, run_id, tables), *derived]


def project_batch(events: Iterable[Event], run_id: str, context: ProjectionContext) -> list[Row]:
    """Project events in order, feeding the context as it goes, and end with the run's :func:`touch_run` row."""
    rows: list[Row] = []
    seen: list[Event] = []
    for event in events:
        rows.extend(project_event(event, run_id, context))
        context.observe(event)
        seen.append(event)
    if seen:
        rows.append(touch_run(run_id, seen))
    return rows


def touch_run(run_id: str, events: Iterable[Event]) -> Row:
    """The run's row, stamped with the oldest and newest of some events (the upsert keeps the extremes)."""
    ordered = sorted(events, key=lambda e: e.sequence_number)
    return Row(
        "runs",
        {
            "run_id": run_id,
            "created_at": ordered[0].ts,
            "updated_at": ordered[-1].ts,
            "last_sequence_number": ordered[-1].sequence_number,
        },
    )


def _stream_row(event: Event, run_id: str, tables: list[str]) -> Row:
    data = event.data
    return Row(
        "event_stream_events",
        {
            "run_id": run_id,
            "sequence_number": event.sequence_number,
            "type": event.type,
            "message": event.message,
            "ts": event.ts,
            "lane": event.lane,
            "is_decision": int(event.is_decision),
            "candidate_id": str_or_none(shared_field(data, "candidate_id")),
            "rollout_id": str_or_none(shared_field(data, "rollout_id")),
            "proposal_index": int_or_none(shared_field(data, "proposal_index")),
            "projected_tables": "," + "".join(f"{table}," for table in tables),
            "payload_json": dumps(event.to_json()),
        },
    )
