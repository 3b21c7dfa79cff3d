"""Projections of the search's decisions: run state, candidates and their lineage, proposals, scores, frontier
and acceptance. Pure: each handler maps one event (and the context) to rows."""

from __future__ import annotations

from typing import Any

from synth_opt.events import Event
from synth_opt.workspace.rows import (
    MERGE_MODULE,
    EventKey,
    ProjectionContext,
    Row,
    canonical,
    dumps,
    float_or_none,
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
    f = event.fields
    state = str(f.get("state"))
    detail = {key: value for key, value in f.items() if key not in {"state", "error", "stop_reason"}}
    run: dict[str, Any] = {"run_id": k.run_id, "status": state, "status_seq": k.seq, "error": f.get("error")}
    if state == "created":
        run.update(created_at=k.ts, config_path=str_or_none(f.get("config_path")))
    transition = {
        "run_id": k.run_id,
        "sequence_number": k.seq,
        "state": state,
        "at": k.ts,
        "error": str_or_none(f.get("error")),
        "stop_reason": str_or_none(f.get("stop_reason")),
        "detail_json": dumps(detail),
    }
    return [Row("runs", run), Row("state_transitions", transition)]


def run_config(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    return [Row("runs", {"run_id": k.run_id, "config_digest": str_or_none(event.fields.get("digest"))})]


def candidate_registered(event: Event, k: EventKey, ctx: ProjectionContext) -> list[Row]:
    """The candidate, its payload, one delta per module that differs from each parent, and its lineage links."""
    f = event.fields
    cid = str(f["candidate_id"])
    parents = [str(p) for p in f.get("parent_ids") or []]
    payload = {str(key): str(value) for key, value in (f.get("payload") or {}).items()}
    module = str_or_none(f.get("module"))
    proposal = int_or_none(f.get("proposal_index"))
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


def _plan_extra(f: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": str_or_none(f.get("kind")),
        "module": str_or_none(f.get("module")),
        "pool_version": int_or_none(f.get("pool_version")),
    }


def proposal_planned(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """Links from each parent (and a merge's common ancestor) to ``proposal:<index>``."""
    f = event.fields
    index = int_or_none(f.get("index"))
    target = f"proposal:{index}"
    parents = [str(p) for p in (f.get("parent_ids") or [f.get("parent_id")]) if p is not None]
    rows = [_link(k, "plan_parent", parent, target, index, **_plan_extra(f)) for parent in parents]
    if f.get("ancestor_id"):
        rows.append(_link(k, "plan_ancestor", str(f["ancestor_id"]), target, index, **_plan_extra(f)))
    return rows


def proposal_created(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """Links from ``proposal:<index>`` to every candidate it produced and to the one it put up for acceptance, and
    from the candidate a rebased proposal was carried onto."""
    f = event.fields
    index = int_or_none(f.get("proposal_index"))
    source = f"proposal:{index}"
    extra = _plan_extra(f)
    rows = [_link(k, "proposal_candidate", source, str(cid), index, **extra) for cid in f.get("candidate_ids") or []]
    if f.get("candidate_id") is not None:
        rows.append(_link(k, "proposal_chosen", source, str(f["candidate_id"]), index, **extra))
    if f.get("rebased_onto") is not None:
        rows.append(_link(k, "rebase_target", str(f["rebased_onto"]), source, index, **extra))
    return rows


def seed_scored(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """The run's seed (its per-row scores are its ``seed.pareto`` rollouts)."""
    seed = {"run_id": k.run_id, "seed_candidate_id": str_or_none(event.fields.get("candidate_id"))}
    return [Row("runs", seed)]


def frontier_updated(event: Event, k: EventKey, _: ProjectionContext) -> list[Row]:
    """One cell per (front key, member) of the fronts that changed; the run's best candidate."""
    f = event.fields
    version, size = int_or_none(f.get("pool_version")), int_or_none(f.get("pool_size"))
    best = {
        "run_id": k.run_id,
        "best_candidate_id": str_or_none(f.get("best_candidate_id")),
        "best_mean_score": float_or_none(f.get("best_mean_score")),
        "best_seq": k.seq,
    }
    rows = [Row("runs", best)]
    for key, members in (f.get("fronts") or {}).items():
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
    f = event.fields
    decision = {
        "run_id": k.run_id,
        "proposal_index": int_or_none(f.get("proposal_index")),
        "candidate_id": str(f.get("candidate_id")),
        "accepted": int(bool(f.get("accepted"))),
        "reason": str(f.get("reason")),
        "parent_sum": float_or_none(f.get("parent_sum")),
        "child_sum": float_or_none(f.get("child_sum")),
        "sequence_number": k.seq,
        "decided_at": k.ts,
    }
    return [Row("acceptance_decisions", decision)]
