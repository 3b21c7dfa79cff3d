"""Pure projection of run events into workspace rows.

``project_event(event, run_id, context)`` returns the rows one event produces and does no I/O, so the live writer,
the end-of-run back-fill and a repair build the tables with the same code. Every event gives its
``event_stream_events`` row (which also records which derived tables the event feeds, for the freshness checks);
the handlers in :mod:`~synth_opt.workspace.project_search` and :mod:`~synth_opt.workspace.project_io` give the
derived rows. The facts a row needs from earlier events live in a :class:`ProjectionContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from synth_opt.events import Event
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

_HANDLERS: dict[str, Handler] = {
    "run.state": search.run_state,
    "run.config": search.run_config,
    "candidate.registered": search.candidate_registered,
    "seed.scored": search.seed_scored,
    "frontier.updated": search.frontier_updated,
    "proposal.planned": search.proposal_planned,
    "proposal.created": search.proposal_created,
    "acceptance.decided": search.acceptance_decided,
    "proposal.failed": search.acceptance_decided,  # a failed proposal's decision: rejected, reason proposal_failed
    "rollout.completed": io.rollout_finished,
    "rollout.degraded": io.rollout_finished,
    "reflection.requested": io.reflection_requested,
    "proposer.called": io.proposer_call,
    "proposer.failed": io.proposer_call,
    "budget.updated": io.stopper_state,
    "search.stopped": io.stopper_state,
    "run.finished": io.stopper_state,
    "cache.access": io.cache_access,
    "checkpoint.written": io.checkpoint_written,
    "candidate.status": io.candidate_status,
}
HANDLED_TYPES = frozenset(_HANDLERS)
PROJECTION_ERROR = "projection_error"


def project_event(event: Event, run_id: str, context: ProjectionContext) -> list[Row]:
    """The rows one event produces: its ``event_stream_events`` row first, then the derived rows. Event types
    without a handler (``container.launched``, ``budget.warning``, ...) give only the stream row."""
    handler = _HANDLERS.get(event.type)
    try:
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
    f = event.fields
    proposal = f.get("index") if event.type == "proposal.planned" else f.get("proposal_index")
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
            "candidate_id": str_or_none(f.get("candidate_id")),
            "rollout_id": str_or_none(f.get("rollout_id")),
            "proposal_index": int_or_none(proposal),
            "projected_tables": "," + "".join(f"{table}," for table in tables),
            "payload_json": dumps(event.to_json()),
        },
    )
