"""Projections of what happened at the run's boundaries: rollouts (with their evidence, scores, verifier jobs and
usage), reflections shown to the proposer, proposer calls, budget and stopper state, cache accesses and
checkpoints. Pure: each handler maps one event (and the context) to rows."""

from __future__ import annotations

from typing import Any

from synth_opt.events import Event
from synth_opt.events.types import (
    BudgetUpdated,
    CacheAccess,
    CandidateStatus,
    CheckpointWritten,
    ProposerCalled,
    ProposerFailed,
    ReflectionRequested,
    RolloutCompleted,
    RolloutDegraded,
    RunFinished,
    SearchStopped,
)
from synth_opt.proposers.backends import proposer_boundary  # the usage ledger's name: the cache's
from synth_opt.workspace.rows import (
    BUDGET_STOP_REASONS,
    EventKey,
    ProjectionContext,
    Row,
    dumps,
    float_or_none,
    given,
    int_or_none,
    stage_kind,
    str_or_none,
    usage_columns,
)

__all__ = [
    "ROLLOUT_BOUNDARY",
    "cache_access",
    "candidate_status",
    "checkpoint_written",
    "proposer_boundary",
    "proposer_call",
    "reflection_requested",
    "rollout_finished",
    "stopper_state",
]

ROLLOUT_BOUNDARY = "container.rollout"


def _source(event: Event) -> str:
    """Where a call's reply came from: ``source`` or ``cached`` in the fields of a feed that says (no event of
    this version does: its calls are ``live``, and the cache's own accesses are ``cache.access`` events)."""
    source, cached = event.fields.get("source"), event.fields.get("cached")
    return source if isinstance(source, str) else ("cache" if cached else "live")


def rollout_finished(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """``rollout.completed`` / ``rollout.degraded``: the rollout, its evidence frame, one score per objective,
    one row per verifier job, and one usage row (the external call) linked by ``rollout_id``."""
    data = event.data
    assert isinstance(data, RolloutCompleted | RolloutDegraded)
    rid = str(data.rollout_id)
    stage = None if data.stage is None else str(data.stage)
    kind, proposal = stage_kind(stage)
    status = str(data.status or ("degraded" if isinstance(data, RolloutDegraded) else "unknown"))
    reward = float_or_none(data.reward)
    usage = usage_columns(data.usage)
    jobs = [job for job in data.verifier_jobs or [] if isinstance(job, dict)]
    common = {
        "run_id": k.run_id,
        "rollout_id": rid,
        "candidate_id": str_or_none(data.candidate_id),
        "task_id": str_or_none(data.task_id),
        "stage": stage,
    }
    rollout = {
        **common,
        "stage_kind": kind,
        "proposal_index": proposal,
        "status": status,
        "reward": reward,
        "error": str_or_none(data.error),
        "duration_seconds": float_or_none(data.duration_seconds),
        "event_type": event.type,
        "sequence_number": k.seq,
        "completed_at": k.ts,
    }
    frame = {
        **common,
        **usage,
        "frame_kind": kind,
        "status": status,
        "reward": reward,
        "trace_digest": str_or_none(data.trace_digest),
        "feedback": str_or_none(data.feedback),
        "error": str_or_none(data.error),
        "duration_seconds": float_or_none(data.duration_seconds),
        "verifier_job_count": len(jobs),
        "sequence_number": k.seq,
    }
    rows = [Row("rollouts", rollout), Row("evidence_frames", frame)]
    objectives = data.objectives
    values: dict[str, Any] = dict(objectives) if isinstance(objectives, dict) and objectives else {}
    if not values and reward is not None:
        values = {"reward": reward}
    for objective, value in values.items():
        score = {**common, "objective": str(objective), "value": float_or_none(value), "sequence_number": k.seq}
        rows.append(Row("scores", score))
    for position, job in enumerate(jobs):
        verifier = {
            "run_id": k.run_id,
            "rollout_id": rid,
            "position": position,
            "job_id": str_or_none(job.get("job_id", job.get("id"))),
            "kind": str_or_none(job.get("kind", job.get("type", job.get("verifier")))),
            "status": str(job.get("status") or "unknown"),
            "detail_json": dumps(job),
            "sequence_number": k.seq,
        }
        rows.append(Row("verifier_jobs", verifier))
    ledger = {
        **usage,
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "boundary": ROLLOUT_BOUNDARY,
        "rollout_id": rid,
        "proposal_index": proposal,
        "source": _source(event),
        "recorded_at": k.ts,
    }
    rows.append(Row("usage_ledger", ledger))
    return rows


def reflection_requested(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """The feedback shown to the proposer: one annotation per record of the reflection."""
    data = event.data
    assert isinstance(data, ReflectionRequested)
    return [
        Row(
            "trace_annotations",
            {
                "run_id": k.run_id,
                "sequence_number": k.seq,
                "position": position,
                "proposal_index": int_or_none(data.proposal_index),
                "candidate_id": str_or_none(data.candidate_id),
                "module": str_or_none(data.module),
                "task_id": str_or_none(record.get("task_id")),
                "reward": float_or_none(record.get("reward")),
                "feedback": str_or_none(record.get("feedback")),
            },
        )
        for position, record in enumerate(data.records or [])
        if isinstance(record, dict)
    ]


def proposer_call(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """``proposer.called`` / ``proposer.failed``: the invocation and its usage row (linked by sequence number)."""
    data = event.data
    assert isinstance(data, ProposerCalled | ProposerFailed)
    backend = str_or_none(data.backend)
    usage = usage_columns(data.usage)
    proposal = int_or_none(data.proposal_index)
    called = data if isinstance(data, ProposerCalled) else None
    invocation = {
        **usage,
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "proposal_index": proposal,
        "backend": backend,
        "model": str_or_none(data.model),
        "outcome": str(data.outcome or ("error" if called is None else "ok")),
        "error": str_or_none(data.error) if isinstance(data, ProposerFailed) else None,
        "texts": None if called is None else int_or_none(called.texts),
        "duration_seconds": None if called is None else float_or_none(called.duration_seconds),
        "invoked_at": k.ts,
    }
    ledger = {
        **usage,
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "boundary": proposer_boundary(backend),
        "proposal_index": proposal,
        "invocation_sequence_number": k.seq,
        "source": _source(event),
        "recorded_at": k.ts,
    }
    return [Row("subagent_invocations", invocation), Row("usage_ledger", ledger)]


def stopper_state(event: Event, k: EventKey, ctx: ProjectionContext) -> list[Row]:
    """A budget/stopper snapshot at ``budget.updated``, ``search.stopped`` and ``run.finished``; the last two
    carry the previous budget forward and mark the stop or the completion they observed."""
    data = event.data
    assert isinstance(data, BudgetUpdated | SearchStopped | RunFinished)
    rows: list[Row] = []
    budget = data if isinstance(data, BudgetUpdated) else None
    if isinstance(data, BudgetUpdated):
        used, reserved = dict(data.used or {}), dict(data.reserved or {})
        train_cap = int_or_none(data.train_cap)
        generation = (int_or_none(data.proposal_index) or 0) + 1
        accepted, rejected = int_or_none(data.accepted), int_or_none(data.rejected)
        reused = int_or_none(data.reused)
        candidate = ctx.best_candidate_id
    else:
        used, reserved, train_cap = ctx.used, ctx.reserved, ctx.train_cap
        generation, accepted, rejected, reused = ctx.generation, ctx.accepted, ctx.rejected, ctx.reused
        best = data.best_candidate_id if isinstance(data, RunFinished) else None
        candidate = str_or_none(best) or ctx.best_candidate_id
    stop_reason = None if isinstance(data, BudgetUpdated) else str_or_none(data.stop_reason)
    train_used, heldout_used = int_or_none(used.get("train_rollouts")), int_or_none(used.get("heldout_rollouts"))
    remaining = None
    if train_cap is not None and train_used is not None:
        remaining = train_cap - train_used - (int_or_none(reserved.get("train_rollouts")) or 0)
    state = {
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "event_type": event.type,
        "proposal_index": None if budget is None else int_or_none(budget.proposal_index),
        "generation": generation,
        "rollouts_used": None if train_used is None else train_used + (heldout_used or 0),
        "train_rollouts_used": train_used,
        "heldout_rollouts_used": heldout_used,
        "rollouts_reused": reused,
        "train_cap": train_cap,
        "remaining_train_rollouts": remaining,
        "proposer_calls": int_or_none(used.get("proposer_calls")),
        "tokens_used": int_or_none(used.get("tokens")),
        "cost_usd": float_or_none(used.get("cost_usd")),
        "max_cost_usd": ctx.max_cost_usd,
        "candidate_id": candidate,
        "accepted": accepted,
        "rejected": rejected,
        "stop_reason": stop_reason,
        "budget_stop_observed": int(stop_reason in BUDGET_STOP_REASONS),
        "completion_observed": int(isinstance(data, RunFinished)),
        "reserved_json": dumps(reserved),
        "observed_at": k.ts,
    }
    rows.append(Row("stopper_states", state))
    if isinstance(data, SearchStopped):
        rows.append(Row("runs", {"run_id": k.run_id, "stop_reason": stop_reason}))
    elif isinstance(data, RunFinished):
        best_score = float_or_none(data.best_train_score)
        run = {
            "run_id": k.run_id,
            "stop_reason": stop_reason,
            "seed_candidate_id": str_or_none(data.seed_candidate_id),
            "best_candidate_id": str_or_none(data.best_candidate_id),
            "best_mean_score": best_score,
            "best_seq": k.seq,
            "best_train_score": best_score,
            "seed_train_score": float_or_none(data.seed_train_score),
        }
        rows.append(Row("runs", run))
    return rows


def cache_access(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    data = event.data
    assert isinstance(data, CacheAccess)
    # any field beyond the four named ones, as the feed has it
    detail = {
        key: value for key, value in event.fields.items() if key not in {"boundary", "action", "key", "namespace"}
    }
    access = {
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "boundary": str(data.boundary or "unknown"),
        "action": str(data.action or "unknown"),
        "cache_key": str_or_none(data.key),
        "namespace": str(data.namespace or "default"),
        "accessed_at": k.ts,
        "detail_json": dumps(detail),
    }
    return [Row("cache_accesses", access)]


def checkpoint_written(event: Event, k: EventKey, ctx: ProjectionContext) -> list[Row]:
    """A checkpoint and its whole snapshot payload (``events.jsonl`` leaves the payload out: this row is where a
    resume finds it). Summary columns come from the event (commits, generation, best candidate, candidate count),
    else the snapshot (the supervisor's: commits, counters, best candidate, pool size), else what earlier events
    told the context."""
    data = event.data
    assert isinstance(data, CheckpointWritten)
    raw = data.snapshot  # "<in checkpoint.json>" in a feed read back
    payload: dict[str, Any] = raw if isinstance(raw, dict) else {}
    counters = payload.get("counters") if isinstance(payload.get("counters"), dict) else {}

    def snapshot(*names: str) -> Any:
        """The snapshot's first set value of ``names`` (a snapshot dict, not an event: its keys are its own)."""
        for name in names:
            if payload.get(name) is not None:
                return payload[name]
        return None

    def said(value: Any, *names: str) -> Any:
        """The event's own value, else the snapshot's."""
        return value if value is not None else snapshot(*names)

    registry, frontier = snapshot("candidate_registry", "candidates"), snapshot("frontier")
    rollouts = snapshot("rollouts", "rollouts_used")
    if isinstance(rollouts, dict):
        rollouts = rollouts.get("total")
    if rollouts is None and counters:
        rollouts = (int_or_none(counters.get("rollouts_train")) or 0) + (
            int_or_none(counters.get("rollouts_heldout")) or 0
        )
    usage = snapshot("usage")
    if usage is None and counters:
        usage = {"rollout": counters.get("rollout_usage"), "proposer": counters.get("proposer_usage")}
    cost = float_or_none(snapshot("cost_usd"))
    if cost is None and isinstance(usage, dict):
        costs = [float_or_none((part or {}).get("cost_usd")) for part in usage.values() if isinstance(part, dict)]
        cost = None if all(c is None for c in costs) else sum(c or 0.0 for c in costs)
    state = snapshot("run_state", "state")
    commits = int_or_none(said(data.commits, "commits"))
    candidates = int_or_none(said(data.candidate_count, "candidate_count", "pool_size"))
    if candidates is None and isinstance(registry, dict | list):
        candidates = len(registry)
    members = frontier.get("members") if isinstance(frontier, dict) else None
    checkpoint = {
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "commits": commits,
        "state": state if isinstance(state, str) else ctx.run_state,
        "generation": int_or_none(said(data.generation, "generation")) or commits,
        "candidate_id": str_or_none(snapshot("candidate_id")),
        "best_candidate_id": str_or_none(said(data.best_candidate_id, "best_candidate_id")) or ctx.best_candidate_id,
        "candidate_count": candidates,
        "frontier_count": int_or_none(snapshot("frontier_count"))
        or (len(members) if isinstance(members, list) else ctx.frontier_size),
        "rollouts": int_or_none(rollouts),
        "cost_usd": cost,
        "usage_json": None if usage is None else dumps(usage),
        "payload_json": dumps(payload),
        "written_at": k.ts,
    }
    return [Row("checkpoints", checkpoint)]


def candidate_status(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """A candidate registry entry (``candidate.status``): its status, the reason, and the scores it was judged on."""
    data = event.data
    assert isinstance(data, CandidateStatus)
    scores = given(data.scores)
    if scores is None:
        scores = given(data.minibatch_scores)
    entry = {
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "candidate_id": str(data.candidate_id),
        "status": str(data.status or "unknown"),
        "reason": str_or_none(given(data.reason)),
        "proposal_index": int_or_none(data.proposal_index),
        "pool_index": int_or_none(given(data.pool_index)),
        "mean_score": float_or_none(given(data.mean_score)),
        "scores_json": None if scores is None else dumps(scores),
        "entry_json": dumps(event.fields),
    }
    return [Row("candidate_statuses", entry)]
