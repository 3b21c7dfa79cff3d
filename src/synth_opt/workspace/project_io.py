"""Projections of what happened at the run's boundaries: rollouts (with their evidence, scores, verifier jobs and
usage), reflections shown to the proposer, proposer calls, budget and stopper state, cache accesses and
checkpoints. Pure: each handler maps one event (and the context) to rows."""

from __future__ import annotations

from typing import Any

from synth_opt.events import Event
from synth_opt.workspace.rows import (
    BUDGET_STOP_REASONS,
    EventKey,
    ProjectionContext,
    Row,
    dumps,
    float_or_none,
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


def proposer_boundary(backend: str | None) -> str:
    return f"proposer.{backend}" if backend else "proposer"


def rollout_finished(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """``rollout.completed`` / ``rollout.degraded``: the rollout, its evidence frame, one score per objective,
    one row per verifier job, and one usage row (the external call) linked by ``rollout_id``."""
    f = event.fields
    rid = str(f["rollout_id"])
    stage = str_or_none(f.get("stage"))
    kind, proposal = stage_kind(stage)
    status = str(f.get("status") or ("degraded" if event.type == "rollout.degraded" else "unknown"))
    reward = float_or_none(f.get("reward"))
    usage = usage_columns(f.get("usage"))
    jobs = [job for job in f.get("verifier_jobs") or [] if isinstance(job, dict)]
    common = {
        "run_id": k.run_id,
        "rollout_id": rid,
        "candidate_id": str_or_none(f.get("candidate_id")),
        "task_id": str_or_none(f.get("task_id")),
        "stage": stage,
    }
    rollout = {
        **common,
        "stage_kind": kind,
        "proposal_index": proposal,
        "status": status,
        "reward": reward,
        "error": str_or_none(f.get("error")),
        "duration_seconds": float_or_none(f.get("duration_seconds")),
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
        "trace_digest": str_or_none(f.get("trace_digest")),
        "feedback": str_or_none(f.get("feedback")),
        "error": str_or_none(f.get("error")),
        "duration_seconds": float_or_none(f.get("duration_seconds")),
        "verifier_job_count": len(jobs),
        "sequence_number": k.seq,
    }
    rows = [Row("rollouts", rollout), Row("evidence_frames", frame)]
    objectives = f.get("objectives")
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
    source = f.get("source") if isinstance(f.get("source"), str) else ("cache" if f.get("cached") else "live")
    ledger = {
        **usage,
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "boundary": ROLLOUT_BOUNDARY,
        "rollout_id": rid,
        "proposal_index": proposal,
        "source": source,
        "recorded_at": k.ts,
    }
    rows.append(Row("usage_ledger", ledger))
    return rows


def reflection_requested(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """The feedback shown to the proposer: one annotation per record of the reflection."""
    f = event.fields
    return [
        Row(
            "trace_annotations",
            {
                "run_id": k.run_id,
                "sequence_number": k.seq,
                "position": position,
                "proposal_index": int_or_none(f.get("proposal_index")),
                "candidate_id": str_or_none(f.get("candidate_id")),
                "module": str_or_none(f.get("module")),
                "task_id": str_or_none(record.get("task_id")),
                "reward": float_or_none(record.get("reward")),
                "feedback": str_or_none(record.get("feedback")),
            },
        )
        for position, record in enumerate(f.get("records") or [])
        if isinstance(record, dict)
    ]


def proposer_call(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """``proposer.called`` / ``proposer.failed``: the invocation and its usage row (linked by sequence number)."""
    f = event.fields
    backend = str_or_none(f.get("backend"))
    usage = usage_columns(f.get("usage"))
    proposal = int_or_none(f.get("proposal_index"))
    invocation = {
        **usage,
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "proposal_index": proposal,
        "backend": backend,
        "model": str_or_none(f.get("model")),
        "outcome": str(f.get("outcome") or ("error" if event.type == "proposer.failed" else "ok")),
        "error": str_or_none(f.get("error")),
        "texts": int_or_none(f.get("texts")),
        "duration_seconds": float_or_none(f.get("duration_seconds")),
        "invoked_at": k.ts,
    }
    source = f.get("source") if isinstance(f.get("source"), str) else ("cache" if f.get("cached") else "live")
    ledger = {
        **usage,
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "boundary": proposer_boundary(backend),
        "proposal_index": proposal,
        "invocation_sequence_number": k.seq,
        "source": source,
        "recorded_at": k.ts,
    }
    return [Row("subagent_invocations", invocation), Row("usage_ledger", ledger)]


def stopper_state(event: Event, k: EventKey, ctx: ProjectionContext) -> list[Row]:
    """A budget/stopper snapshot at ``budget.updated``, ``search.stopped`` and ``run.finished``; the last two
    carry the previous budget forward and mark the stop or the completion they observed."""
    f = event.fields
    rows: list[Row] = []
    if event.type == "budget.updated":
        used, reserved = dict(f.get("used") or {}), dict(f.get("reserved") or {})
        train_cap = int_or_none(f.get("train_cap"))
        generation = (int_or_none(f.get("proposal_index")) or 0) + 1
        accepted, rejected = int_or_none(f.get("accepted")), int_or_none(f.get("rejected"))
        candidate = ctx.best_candidate_id
    else:
        used, reserved, train_cap = ctx.used, ctx.reserved, ctx.train_cap
        generation, accepted, rejected = ctx.generation, ctx.accepted, ctx.rejected
        candidate = str_or_none(f.get("best_candidate_id")) or ctx.best_candidate_id
    stop_reason = str_or_none(f.get("stop_reason"))
    train_used, heldout_used = int_or_none(used.get("train_rollouts")), int_or_none(used.get("heldout_rollouts"))
    remaining = None
    if train_cap is not None and train_used is not None:
        remaining = train_cap - train_used - (int_or_none(reserved.get("train_rollouts")) or 0)
    state = {
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "event_type": event.type,
        "proposal_index": int_or_none(f.get("proposal_index")),
        "generation": generation,
        "rollouts_used": None if train_used is None else train_used + (heldout_used or 0),
        "train_rollouts_used": train_used,
        "heldout_rollouts_used": heldout_used,
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
        "completion_observed": int(event.type == "run.finished"),
        "reserved_json": dumps(reserved),
        "observed_at": k.ts,
    }
    rows.append(Row("stopper_states", state))
    if event.type == "search.stopped":
        rows.append(Row("runs", {"run_id": k.run_id, "stop_reason": stop_reason}))
    elif event.type == "run.finished":
        best_score = float_or_none(f.get("best_train_score"))
        run = {
            "run_id": k.run_id,
            "stop_reason": stop_reason,
            "seed_candidate_id": str_or_none(f.get("seed_candidate_id")),
            "best_candidate_id": str_or_none(f.get("best_candidate_id")),
            "best_mean_score": best_score,
            "best_seq": k.seq,
            "best_train_score": best_score,
            "seed_train_score": float_or_none(f.get("seed_train_score")),
        }
        rows.append(Row("runs", run))
    return rows


def cache_access(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    f = event.fields
    detail = {key: value for key, value in f.items() if key not in {"boundary", "action", "key", "namespace"}}
    access = {
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "boundary": str(f.get("boundary") or "unknown"),
        "action": str(f.get("action") or "unknown"),
        "cache_key": str_or_none(f.get("key")),
        "namespace": str(f.get("namespace") or "default"),
        "accessed_at": k.ts,
        "detail_json": dumps(detail),
    }
    return [Row("cache_accesses", access)]


def checkpoint_written(event: Event, k: EventKey, ctx: ProjectionContext) -> list[Row]:
    """A checkpoint and its whole snapshot payload (``events.jsonl`` leaves the payload out: this row is where a
    resume finds it). Summary columns come from the fields, else the payload (the supervisor's snapshot: commits,
    counters, best candidate, pool size), else what earlier events told the context."""
    f = event.fields
    raw = f.get("payload")
    payload: dict[str, Any] = raw if isinstance(raw, dict) else {}
    counters = payload.get("counters") if isinstance(payload.get("counters"), dict) else {}

    def pick(*names: str) -> Any:
        for name in names:
            for source in (f, payload):
                if source.get(name) is not None:
                    return source[name]
        return None

    registry, frontier = pick("candidate_registry", "candidates"), pick("frontier")
    rollouts = pick("rollouts", "rollouts_used")
    if isinstance(rollouts, dict):
        rollouts = rollouts.get("total")
    if rollouts is None and counters:
        rollouts = (int_or_none(counters.get("rollouts_train")) or 0) + (
            int_or_none(counters.get("rollouts_heldout")) or 0
        )
    usage = pick("usage")
    if usage is None and counters:
        usage = {"rollout": counters.get("rollout_usage"), "proposer": counters.get("proposer_usage")}
    cost = float_or_none(pick("cost_usd"))
    if cost is None and isinstance(usage, dict):
        costs = [float_or_none((part or {}).get("cost_usd")) for part in usage.values() if isinstance(part, dict)]
        cost = None if all(c is None for c in costs) else sum(c or 0.0 for c in costs)
    state = pick("run_state", "state")
    commits = int_or_none(pick("commits"))
    candidates = int_or_none(pick("candidate_count", "pool_size"))
    if candidates is None and isinstance(registry, dict | list):
        candidates = len(registry)
    members = frontier.get("members") if isinstance(frontier, dict) else None
    checkpoint = {
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "commits": commits,
        "state": state if isinstance(state, str) else ctx.run_state,
        "generation": int_or_none(pick("generation")) or commits,
        "candidate_id": str_or_none(pick("candidate_id")),
        "best_candidate_id": str_or_none(pick("best_candidate_id")) or ctx.best_candidate_id,
        "candidate_count": candidates,
        "frontier_count": int_or_none(pick("frontier_count"))
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
    f = event.fields
    scores = f.get("scores") if f.get("scores") is not None else f.get("minibatch_scores")
    entry = {
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "candidate_id": str(f["candidate_id"]),
        "status": str(f.get("status") or "unknown"),
        "reason": str_or_none(f.get("reason")),
        "proposal_index": int_or_none(f.get("proposal_index")),
        "pool_index": int_or_none(f.get("pool_index")),
        "mean_score": float_or_none(f.get("mean_score")),
        "scores_json": None if scores is None else dumps(scores),
        "entry_json": dumps(f),
    }
    return [Row("candidate_statuses", entry)]
