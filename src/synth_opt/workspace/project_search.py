"""Projections of the search's decisions: run state, candidates and their lineage, proposals, scores, frontier
and acceptance. Pure: each handler maps one event (and the context) to rows."""

from __future__ import annotations

from typing import Any

from synth_opt.events import Event
from synth_opt.events.types import (
    AcceptanceDecided,
    CandidateRegistered,
    FrontierUpdated,
    ProposalCreated,
    ProposalFailed,
    ProposalPlanned,
    RunConfig,
    RunState,
    SeedScored,
)
from synth_opt.workspace.rows import (
    MERGE_MODULE,
    EventKey,
    ProjectionContext,
    Row,
    canonical,
    dumps,
    float_or_none,
    given,
    int_or_none,
    sha256,
    str_or_none,
)

__all__ = [
    "acceptance_decided",
    "candidate_registered",
    "frontier_updated",
    "proposal_created",
    "proposal_planned",
    "run_config",
    "run_state",
    "seed_scored",
]


def run_state(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    data = event.data
    assert isinstance(data, RunState)
    state = str(data.state)
    # the state's own details, as the feed has them (every field but these three)
    detail = {key: value for key, value in event.fields.items() if key not in {"state", "error", "stop_reason"}}
    error = given(data.error)
    run: dict[str, Any] = {"run_id": k.run_id, "status": state, "status_seq": k.seq, "error": error}
    if state == "created":
        run.update(created_at=k.ts, config_path=str_or_none(given(data.config_path)))
    transition = {
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "state": state,
        "at": k.ts,
        "error": str_or_none(error),
        "stop_reason": str_or_none(given(data.stop_reason)),
        "detail_json": dumps(detail),
    }
    return [Row("runs", run), Row("state_transitions", transition)]


def run_config(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    data = event.data
    assert isinstance(data, RunConfig)
    return [Row("runs", {"run_id": k.run_id, "config_digest": str_or_none(data.digest)})]


def candidate_registered(event: Event, k: EventKey, ctx: ProjectionContext) -> list[Row]:
    """The candidate, its payload, one delta per module that differs from each parent, and its lineage links."""
    data = event.data
    assert isinstance(data, CandidateRegistered)
    cid = str(data.candidate_id)
    parents = [str(p) for p in data.parent_ids or []]
    payload = {str(key): str(value) for key, value in (data.payload or {}).items()}
    module = str_or_none(data.module)
    proposal = int_or_none(data.proposal_index)
    text = canonical(payload)
    candidate = {
        "run_id": k.run_id,
        "candidate_id": cid,
        "parent_ids_json": dumps(parents),
        "module": module,
        "proposal_index": proposal,
        "is_seed": int(not parents),
        "sequence_number": k.seq,
        "registered_at": k.ts,
    }
    stored = {
        "run_id": k.run_id,
        "candidate_id": cid,
        "payload_json": text,
        "payload_sha256": sha256(text),
        "module_count": len(payload),
        "sequence_number": k.seq,
    }
    rows = [Row("candidates", candidate), Row("candidate_payloads", stored)]
    kind = "merge" if module == MERGE_MODULE or len(parents) > 1 else "reflection"
    for parent in parents:
        old = ctx.payloads.get(parent)
        changed = [] if old is None else [m for m in sorted(set(payload) | set(old)) if payload.get(m) != old.get(m)]
        for changed_module in changed or [module or "*"]:
            new_text = payload.get(changed_module)
            old_text = None if old is None else old.get(changed_module)
            delta = {
                "run_id": k.run_id,
                "candidate_id": cid,
                "parent_id": parent,
                "module": changed_module,
                "kind": kind,
                "proposal_index": proposal,
                "old_text_sha256": None if old_text is None else sha256(old_text),
                "new_text_sha256": None if new_text is None else sha256(new_text),
                "new_text": new_text,
                "sequence_number": k.seq,
            }
            rows.append(Row("candidate_deltas", delta))
        rows.append(_link(k, "lineage", parent, cid, proposal, kind=kind, module=module))
    return rows


def _link(k: EventKey, link_kind: str, source: str, target: str, proposal: int | None, **extra: Any) -> Row:
    values = {
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "link_kind": link_kind,
        "source_id": source,
        "target_id": target,
        "proposal_index": proposal,
        **extra,
    }
    return Row("plan_links", values)


def _plan_extra(plan: ProposalPlanned | ProposalCreated) -> dict[str, Any]:
    return {
        "kind": str_or_none(plan.kind),
        "module": str_or_none(plan.module),
        "pool_version": int_or_none(plan.pool_version),
    }


def proposal_planned(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """Links from each parent (and a merge's common ancestor) to ``proposal:<index>``."""
    plan = event.data
    assert isinstance(plan, ProposalPlanned)
    index = int_or_none(plan.proposal_index)
    target = f"proposal:{index}"
    parents = [str(p) for p in (plan.parent_ids or [plan.parent_id]) if p is not None]
    rows = [_link(k, "plan_parent", parent, target, index, **_plan_extra(plan)) for parent in parents]
    if plan.ancestor_id:
        rows.append(_link(k, "plan_ancestor", str(plan.ancestor_id), target, index, **_plan_extra(plan)))
    return rows


def proposal_created(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """Links from ``proposal:<index>`` to every candidate it produced and to the one it put up for acceptance, from
    the candidate a rebased proposal was carried onto, and from each proposal in flight whose edit its first reply
    repeated (it was asked again)."""
    created = event.data
    assert isinstance(created, ProposalCreated)
    index = int_or_none(created.proposal_index)
    source = f"proposal:{index}"
    extra = _plan_extra(created)
    rows = [_link(k, "proposal_candidate", source, str(cid), index, **extra) for cid in created.candidate_ids or []]
    if created.candidate_id is not None:
        rows.append(_link(k, "proposal_chosen", source, str(created.candidate_id), index, **extra))
    onto = given(created.rebased_onto)
    if onto is not None:
        rows.append(_link(k, "rebase_target", str(onto), source, index, **extra))
    repeated = given(created.repeated)  # asked again: its first reply repeated these proposals' edits
    for other in repeated if isinstance(repeated, list | tuple) else ():
        rows.append(_link(k, "repeated_edit", f"proposal:{int_or_none(other)}", source, index, **extra))
    return rows


def seed_scored(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """The run's seed (its per-row scores are its ``seed.pareto`` rollouts)."""
    data = event.data
    assert isinstance(data, SeedScored)
    seed = {"run_id": k.run_id, "seed_candidate_id": str_or_none(data.candidate_id)}
    return [Row("runs", seed)]


def frontier_updated(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """One cell per (front key, member) of the fronts that changed; the run's best candidate."""
    data = event.data
    assert isinstance(data, FrontierUpdated)
    version, size = int_or_none(data.pool_version), int_or_none(data.pool_size)
    best = {
        "run_id": k.run_id,
        "best_candidate_id": str_or_none(data.best_candidate_id),
        "best_mean_score": float_or_none(data.best_mean_score),
        "best_seq": k.seq,
    }
    rows = [Row("runs", best)]
    for key, members in (data.fronts or {}).items():
        for cid in members:
            cell = {
                "run_id": k.run_id,
                "sequence_number": k.seq,
                "front_key": str(key),
                "candidate_id": str(cid),
                "pool_version": version,
                "pool_size": size,
            }
            rows.append(Row("frontier_cells", cell))
    return rows


def acceptance_decided(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """``acceptance.decided``, and ``proposal.failed`` (a failed proposal's decision: rejected)."""
    data = event.data
    assert isinstance(data, AcceptanceDecided | ProposalFailed)
    decision = {
        "run_id": k.run_id,
        "proposal_index": int_or_none(data.proposal_index),
        "candidate_id": str(data.candidate_id),
        "accepted": int(bool(data.accepted)),
        "reason": str(data.reason),
        "parent_sum": float_or_none(data.parent_sum),
        "child_sum": float_or_none(data.child_sum),
        "sequence_number": k.seq,
        "decided_at": k.ts,
    }
    return [Row("acceptance_decisions", decision)]
