"""Pure projection of each event type into workspace rows (no database)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from synth_opt.events import Event
from synth_opt.workspace.db import table_columns
from synth_opt.workspace.projector import (
    HANDLED_TYPES,
    PROJECTION_ERROR,
    ProjectionContext,
    Row,
    project_batch,
    project_event,
)
from synth_opt.workspace.rows import sha256, stage_kind

RUN = "run-1"
SEED = {"instruction": "answer w0", "format": "one word"}
CHILD = {"instruction": "answer w0 w3", "format": "one word"}


def ev(seq: int, type: str, lane: str | None = None, **fields: Any) -> Event:
    return Event(seq, f"2026-01-01T00:00:{seq:02d}.000Z", type, f"{type} #{seq}", fields, lane)


def rows_of(rows: list[Row], table: str) -> list[dict[str, Any]]:
    return [values for name, values in rows if name == table]


def tables(rows: list[Row]) -> list[str]:
    return [name for name, _ in rows]


def rollout(seq: int, **over: Any) -> Event:
    fields: dict[str, Any] = {
        "rollout_id": f"ro-{seq}",
        "candidate_id": "cand-seed",
        "task_id": "train-1",
        "stage": "p3.child",
        "reward": 1.0,
        "status": "completed",
        "objectives": {"outcome_reward": 1.0, "latency": 0.5},
        "error": None,
        "feedback": "looks right",
        "trace_digest": "abcd",
        "duration_seconds": 0.01,
        "usage": {"calls": 1, "prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cost_usd": 0.001},
        "verifier_jobs": [{"job_id": "j1", "kind": "judge", "status": "succeeded"}, {"id": "j2"}],
    }
    fields.update(over)
    return ev(seq, "rollout.completed", "rollout", **fields)


def test_every_event_gets_a_stream_row_with_its_whole_payload() -> None:
    event = ev(7, "container.warning", "rollout", detail="no /metadata")
    rows = project_event(event, RUN, ProjectionContext())
    assert tables(rows) == ["event_stream_events"]
    stream = rows[0].values
    assert stream["sequence_number"] == 7 and stream["type"] == "container.warning" and stream["lane"] == "rollout"
    assert json.loads(stream["payload_json"]) == event.to_json()
    assert stream["projected_tables"] == ","
    assert stream["is_decision"] == 0


def test_rows_only_use_columns_their_table_has() -> None:
    context = ProjectionContext()
    events = [
        ev(1, "run.state", state="created", run_id=RUN, config_path="/c.toml"),
        ev(2, "run.config", digest="d", decision_config={"gepa": {"max_cost_usd": 2.0}}),
        ev(3, "candidate.registered", candidate_id="cand-seed", parent_ids=[], module=None, payload=SEED),
        rollout(4),
        ev(5, "cache.access", boundary="container.rollout", action="hit", key="k", namespace="ns"),
        ev(6, "checkpoint.written", commits=1, payload={"state": "searching"}),
        ev(7, "budget.updated", proposal_index=0, used={"train_rollouts": 3}, reserved={}, train_cap=9),
    ]
    for name, values in project_batch(events, RUN, context):
        assert set(values) <= set(table_columns(name)), name


def test_run_state_feeds_runs_and_state_transitions() -> None:
    rows = project_event(
        ev(1, "run.state", state="created", run_id=RUN, config_path="/c.toml"), RUN, ProjectionContext()
    )
    (run,) = rows_of(rows, "runs")
    assert run == {
        "run_id": RUN,
        "status": "created",
        "status_seq": 1,
        "error": None,
        "created_at": "2026-01-01T00:00:01.000Z",
        "config_path": "/c.toml",
    }
    (transition,) = rows_of(rows, "state_transitions")
    assert transition["state"] == "created" and json.loads(transition["detail_json"])["run_id"] == RUN
    failed = project_event(ev(9, "run.state", state="failed", error="boom"), RUN, ProjectionContext())
    assert rows_of(failed, "runs")[0]["error"] == "boom"
    assert rows_of(failed, "state_transitions")[0]["error"] == "boom"


def test_seed_registration_has_a_payload_but_no_delta() -> None:
    event = ev(3, "candidate.registered", candidate_id="cand-seed", parent_ids=[], module=None, payload=SEED)
    rows = project_event(event, RUN, ProjectionContext())
    assert tables(rows) == ["event_stream_events", "candidates", "candidate_payloads"]
    (candidate,) = rows_of(rows, "candidates")
    assert candidate["is_seed"] == 1 and candidate["parent_ids_json"] == "[]"
    (payload,) = rows_of(rows, "candidate_payloads")
    assert json.loads(payload["payload_json"]) == SEED and payload["module_count"] == 2
    assert payload["payload_sha256"] == sha256(payload["payload_json"])
    assert rows[0].values["projected_tables"] == ",candidate_payloads,candidates,"


def test_a_child_gets_one_delta_per_changed_module_and_a_lineage_link() -> None:
    context = ProjectionContext()
    context.observe(ev(3, "candidate.registered", candidate_id="cand-seed", parent_ids=[], payload=SEED))
    event = ev(
        20,
        "candidate.registered",
        candidate_id="cand-c",
        parent_ids=["cand-seed"],
        module="instruction",
        proposal_index=0,
        payload=CHILD,
    )
    rows = project_event(event, RUN, context)
    (delta,) = rows_of(rows, "candidate_deltas")
    assert delta["module"] == "instruction" and delta["parent_id"] == "cand-seed" and delta["kind"] == "reflection"
    assert delta["old_text_sha256"] == sha256(SEED["instruction"])
    assert delta["new_text"] == CHILD["instruction"] and delta["new_text_sha256"] == sha256(CHILD["instruction"])
    (link,) = rows_of(rows, "plan_links")
    assert (link["link_kind"], link["source_id"], link["target_id"]) == ("lineage", "cand-seed", "cand-c")


def test_a_delta_from_an_unknown_parent_still_names_the_module() -> None:
    event = ev(20, "candidate.registered", candidate_id="c", parent_ids=["p"], module="instruction", payload=CHILD)
    (delta,) = rows_of(project_event(event, RUN, ProjectionContext()), "candidate_deltas")
    assert delta["module"] == "instruction" and delta["old_text_sha256"] is None


def test_a_merge_child_has_deltas_against_both_parents() -> None:
    context = ProjectionContext()
    context.observe(ev(1, "candidate.registered", candidate_id="a", parent_ids=[], payload={"x": "1", "y": "2"}))
    context.observe(ev(2, "candidate.registered", candidate_id="b", parent_ids=[], payload={"x": "3", "y": "4"}))
    merged = ev(
        5,
        "candidate.registered",
        candidate_id="m",
        parent_ids=["a", "b"],
        module="*merge*",
        proposal_index=4,
        payload={"x": "1", "y": "4"},
    )
    deltas = rows_of(project_event(merged, RUN, context), "candidate_deltas")
    assert {(d["parent_id"], d["module"], d["kind"]) for d in deltas} == {("a", "y", "merge"), ("b", "x", "merge")}


def test_proposal_planned_and_created_link_parents_proposals_and_candidates() -> None:
    planned = ev(
        4,
        "proposal.planned",
        index=2,
        kind="merge",
        parent_id="a",
        parent_ids=["a", "b"],
        minibatch=["t1"],
        module="*merge*",
        pool_version=3,
        ancestor_id="s",
    )
    links = rows_of(project_event(planned, RUN, ProjectionContext()), "plan_links")
    assert {(x["link_kind"], x["source_id"], x["target_id"]) for x in links} == {
        ("plan_parent", "a", "proposal:2"),
        ("plan_parent", "b", "proposal:2"),
        ("plan_ancestor", "s", "proposal:2"),
    }
    assert project_event(planned, RUN, ProjectionContext())[0].values["proposal_index"] == 2
    created = ev(
        9,
        "proposal.created",
        proposal_index=2,
        candidate_id="c1",
        candidate_ids=["c1", "c2"],
        parent_id="a",
        parent_ids=["a"],
        kind="reflection",
        module="instruction",
        pool_version=3,
        staleness=0,
    )
    links = rows_of(project_event(created, RUN, ProjectionContext()), "plan_links")
    assert {(x["link_kind"], x["target_id"]) for x in links} == {
        ("proposal_candidate", "c1"),
        ("proposal_candidate", "c2"),
        ("proposal_chosen", "c1"),
    }


def created_links(proposal_index: int, **fields: Any) -> list[dict[str, Any]]:
    """The ``plan_links`` rows of proposal ``proposal_index``'s ``proposal.created`` (candidate c1 of parent a),
    with ``fields`` added to it."""
    created = ev(
        9,
        "proposal.created",
        proposal_index=proposal_index,
        candidate_id="c1",
        candidate_ids=["c1"],
        parent_id="a",
        parent_ids=["a"],
        kind="reflection",
        pool_version=1,
        **fields,
    )
    return rows_of(project_event(created, RUN, ProjectionContext()), "plan_links")


def test_a_rebased_proposal_links_the_candidate_it_was_carried_onto() -> None:
    links = created_links(4, staleness=3, rebase="rebased", rebased_onto="t")
    assert ("rebase_target", "t", "proposal:4") in {(x["link_kind"], x["source_id"], x["target_id"]) for x in links}


def test_a_proposal_asked_again_links_the_proposals_whose_edits_it_repeated() -> None:
    links = created_links(6, staleness=0, repeated=[3, 5])
    repeated = {(x["source_id"], x["target_id"]) for x in links if x["link_kind"] == "repeated_edit"}
    assert repeated == {("proposal:3", "proposal:6"), ("proposal:5", "proposal:6")}


def test_an_unchanged_proposal_still_links_the_candidate_it_kept() -> None:
    created = ev(9, "proposal.created", proposal_index=0, candidate_id="p", candidate_ids=[], parent_id="p")
    (link,) = rows_of(project_event(created, RUN, ProjectionContext()), "plan_links")
    assert link["link_kind"] == "proposal_chosen" and link["target_id"] == "p"


def test_acceptance_decided_keeps_the_reason_and_the_sums_compared() -> None:
    event = ev(
        30,
        "acceptance.decided",
        proposal_index=5,
        candidate_id="c",
        accepted=True,
        reason="improved",
        parent_sum=1.0,
        child_sum=2.0,
    )
    (decision,) = rows_of(project_event(event, RUN, ProjectionContext()), "acceptance_decisions")
    assert (decision["proposal_index"], decision["accepted"], decision["reason"]) == (5, 1, "improved")
    assert (decision["parent_sum"], decision["child_sum"]) == (1.0, 2.0)


def test_frontier_updated_gives_one_cell_per_member_and_the_best() -> None:
    event = ev(
        16,
        "frontier.updated",
        pool_version=1,
        pool_size=2,
        members=["a", "b"],
        rows_changed=["t1", "t2"],
        fronts={"t1": ["a", "b"], "t2": ["b"]},
        best_candidate_id="b",
        best_mean_score=0.75,
    )
    rows = project_event(event, RUN, ProjectionContext())
    cells = rows_of(rows, "frontier_cells")
    assert {(c["front_key"], c["candidate_id"]) for c in cells} == {("t1", "a"), ("t1", "b"), ("t2", "b")}
    assert all(c["pool_version"] == 1 for c in cells)
    (run,) = rows_of(rows, "runs")
    assert (run["best_candidate_id"], run["best_mean_score"], run["best_seq"]) == ("b", 0.75, 16)


def test_a_rollout_gives_evidence_scores_verifier_jobs_and_one_usage_row() -> None:
    rows = project_event(rollout(40), RUN, ProjectionContext())
    (row,) = rows_of(rows, "rollouts")
    assert (row["rollout_id"], row["stage_kind"], row["proposal_index"], row["status"]) == (
        "ro-40",
        "child",
        3,
        "completed",
    )
    (frame,) = rows_of(rows, "evidence_frames")
    assert (frame["frame_kind"], frame["trace_digest"], frame["total_tokens"], frame["cost_usd"]) == (
        "child",
        "abcd",
        12,
        0.001,
    )
    assert frame["verifier_job_count"] == 2 and frame["feedback"] == "looks right"
    assert {s["objective"]: s["value"] for s in rows_of(rows, "scores")} == {"outcome_reward": 1.0, "latency": 0.5}
    jobs = rows_of(rows, "verifier_jobs")
    assert [(j["position"], j["job_id"], j["status"]) for j in jobs] == [(0, "j1", "succeeded"), (1, "j2", "unknown")]
    (usage,) = rows_of(rows, "usage_ledger")
    assert (usage["boundary"], usage["rollout_id"], usage["source"], usage["calls"]) == (
        "container.rollout",
        "ro-40",
        "live",
        1,
    )


def test_a_degraded_rollout_has_zero_usage_and_no_scores() -> None:
    event = ev(
        41,
        "rollout.degraded",
        "rollout",
        rollout_id="ro-41",
        candidate_id="c",
        task_id="t",
        stage="heldout",
        reward=None,
        status="degraded",
        objectives=None,
        error="timed out",
        usage=None,
        verifier_jobs=[],
    )
    rows = project_event(event, RUN, ProjectionContext())
    assert "scores" not in tables(rows)
    (frame,) = rows_of(rows, "evidence_frames")
    assert (frame["frame_kind"], frame["status"], frame["error"], frame["total_tokens"]) == (
        "heldout",
        "degraded",
        "timed out",
        0,
    )
    (usage,) = rows_of(rows, "usage_ledger")
    assert usage["calls"] == 0 and usage["cost_usd"] is None


def test_a_rollout_without_objectives_scores_its_reward() -> None:
    rows = project_event(rollout(42, objectives=None, reward=0.25), RUN, ProjectionContext())
    assert [(s["objective"], s["value"]) for s in rows_of(rows, "scores")] == [("reward", 0.25)]


def test_reflection_records_become_trace_annotations() -> None:
    event = ev(
        22,
        "reflection.requested",
        "propose",
        proposal_index=0,
        candidate_id="c",
        module="instruction",
        records=[{"task_id": "t1", "reward": 0.0, "feedback": "wrong label"}, {"task_id": "t2", "reward": 1.0}],
    )
    notes = rows_of(project_event(event, RUN, ProjectionContext()), "trace_annotations")
    assert [(n["position"], n["task_id"], n["feedback"]) for n in notes] == [(0, "t1", "wrong label"), (1, "t2", None)]


@pytest.mark.parametrize("type", ["proposer.called", "proposer.failed"])
def test_proposer_calls_become_invocations_with_a_linked_usage_row(type: str) -> None:
    fields: dict[str, Any] = {"proposal_index": 3, "backend": "codex_app_server", "model": "gpt-x"}
    if type == "proposer.called":
        fields.update(
            outcome="ok", texts=1, duration_seconds=1.5, usage={"calls": 1, "total_tokens": 50, "cost_usd": None}
        )
    else:
        fields.update(outcome="error", error="died")
    rows = project_event(ev(23, type, "propose", **fields), RUN, ProjectionContext())
    (call,) = rows_of(rows, "subagent_invocations")
    (usage,) = rows_of(rows, "usage_ledger")
    assert call["backend"] == "codex_app_server" and call["model"] == "gpt-x"
    assert usage["boundary"] == "proposer.codex" and usage["invocation_sequence_number"] == 23
    assert usage["proposal_index"] == 3 and usage["cost_usd"] is None
    if type == "proposer.failed":
        assert (call["outcome"], call["error"], usage["total_tokens"]) == ("error", "died", 0)
    else:
        assert (call["outcome"], call["total_tokens"], call["duration_seconds"]) == ("ok", 50, 1.5)


def test_stopper_states_carry_the_budget_to_the_stop_and_the_finish() -> None:
    context = ProjectionContext()
    events = [
        ev(2, "run.config", digest="d", decision_config={"gepa": {"max_cost_usd": 2.0}}),
        ev(5, "frontier.updated", fronts={}, best_candidate_id="b", best_mean_score=0.5),
        ev(
            8,
            "budget.updated",
            "supervisor",
            proposal_index=4,
            used={"train_rollouts": 50, "heldout_rollouts": 0, "proposer_calls": 5, "tokens": 700, "cost_usd": 0.25},
            reserved={"train_rollouts": 10, "heldout_rollouts": 20},
            train_cap=100,
            accepted=2,
            rejected=3,
        ),
        ev(9, "search.stopped", stop_reason="max_train_rollouts"),
        ev(
            10,
            "run.finished",
            stop_reason="max_train_rollouts",
            best_candidate_id="b",
            seed_candidate_id="s",
            best_train_score=0.5,
            seed_train_score=0.25,
        ),
    ]
    rows = project_batch(events, RUN, context)
    budget, stopped, finished = rows_of(rows, "stopper_states")
    assert (budget["rollouts_used"], budget["remaining_train_rollouts"], budget["generation"]) == (50, 40, 5)
    assert (budget["cost_usd"], budget["max_cost_usd"], budget["candidate_id"]) == (0.25, 2.0, "b")
    assert budget["budget_stop_observed"] == 0 and budget["completion_observed"] == 0
    assert stopped["budget_stop_observed"] == 1 and stopped["rollouts_used"] == 50 and stopped["accepted"] == 2
    assert finished["completion_observed"] == 1 and finished["stop_reason"] == "max_train_rollouts"
    run = rows_of(rows, "runs")[-2]
    assert (run["seed_candidate_id"], run["best_train_score"], run["stop_reason"]) == ("s", 0.5, "max_train_rollouts")


def test_a_non_budget_stop_is_not_a_budget_stop() -> None:
    (state,) = rows_of(
        project_event(ev(9, "search.stopped", stop_reason="score_threshold"), RUN, ProjectionContext()),
        "stopper_states",
    )
    assert state["budget_stop_observed"] == 0


def test_cache_accesses_and_checkpoints() -> None:
    access = ev(5, "cache.access", boundary="proposer.codex", action="miss", key="k1", namespace="ns", candidate_id="c")
    (row,) = rows_of(project_event(access, RUN, ProjectionContext()), "cache_accesses")
    assert (row["boundary"], row["action"], row["cache_key"], row["namespace"]) == (
        "proposer.codex",
        "miss",
        "k1",
        "ns",
    )
    assert json.loads(row["detail_json"]) == {"candidate_id": "c"}
    checkpoint = ev(
        6,
        "checkpoint.written",
        commits=4,
        payload={
            "state": "searching",
            "candidate_registry": {"a": {}, "b": {}},
            "frontier": {"members": ["a"]},
            "rollouts_used": {"total": 40},
            "cost_usd": 0.5,
            "usage": {"total": {"calls": 3}},
        },
    )
    (saved,) = rows_of(project_event(checkpoint, RUN, ProjectionContext()), "checkpoints")
    assert (saved["commits"], saved["state"], saved["candidate_count"], saved["frontier_count"]) == (
        4,
        "searching",
        2,
        1,
    )
    assert (saved["rollouts"], saved["cost_usd"]) == (40, 0.5)


def test_a_supervisor_checkpoint_snapshot_fills_the_summary_columns() -> None:
    context = ProjectionContext()
    context.observe(ev(1, "run.state", state="searching"))
    context.observe(ev(2, "frontier.updated", members=["a", "b", "c"], best_candidate_id="b"))
    snapshot = {
        "version": 1,
        "commits": 7,
        "best_candidate_id": "b",
        "pool_size": 4,
        "state": {"pool_ids": ["a"]},
        "counters": {
            "rollouts_train": 30,
            "rollouts_heldout": 0,
            "rollout_usage": {"cost_usd": 0.25},
            "proposer_usage": {"cost_usd": None},
        },
    }
    (saved,) = rows_of(
        project_event(ev(3, "checkpoint.written", commits=7, payload=snapshot), RUN, context), "checkpoints"
    )
    assert (saved["state"], saved["generation"], saved["candidate_count"], saved["frontier_count"]) == (
        "searching",
        7,
        4,
        3,
    )
    assert (saved["rollouts"], saved["cost_usd"], saved["best_candidate_id"]) == (30, 0.25, "b")
    assert json.loads(saved["payload_json"]) == snapshot
    placeholder = ev(4, "checkpoint.written", commits=8, payload="<in workspace.sqlite>")
    (line,) = rows_of(project_event(placeholder, RUN, context), "checkpoints")
    assert line["payload_json"] == "{}" and line["commits"] == 8


def test_candidate_status_entries_keep_the_status_reason_and_scores() -> None:
    event = ev(
        15,
        "candidate.status",
        candidate_id="c",
        parent_ids=["p"],
        status="rejected",
        reason="outscored_by_sibling",
        proposal_index=2,
        minibatch_scores={"t1": 0.0},
    )
    (entry,) = rows_of(project_event(event, RUN, ProjectionContext()), "candidate_statuses")
    assert (entry["status"], entry["reason"], entry["proposal_index"]) == ("rejected", "outscored_by_sibling", 2)
    assert json.loads(entry["scores_json"]) == {"t1": 0.0}


def test_a_malformed_event_is_stored_and_marked_instead_of_raising() -> None:
    rows = project_event(ev(3, "rollout.completed", "rollout", candidate_id="c"), RUN, ProjectionContext())
    assert tables(rows) == ["event_stream_events"]
    assert rows[0].values["projected_tables"] == f",{PROJECTION_ERROR},"


def test_projection_is_pure_and_the_context_changes_only_through_observe() -> None:
    context = ProjectionContext()
    event = ev(3, "candidate.registered", candidate_id="cand-seed", parent_ids=[], payload=SEED)
    assert project_event(event, RUN, context) == project_event(event, RUN, context)
    assert context.payloads == {}
    context.observe(event)
    assert context.payloads == {"cand-seed": SEED}


def test_project_batch_ends_with_the_run_touch_row() -> None:
    rows = project_batch([ev(4, "dataset.resolved"), ev(5, "budget.warning")], RUN, ProjectionContext())
    assert rows[-1] == Row(
        "runs",
        {
            "run_id": RUN,
            "created_at": "2026-01-01T00:00:04.000Z",
            "updated_at": "2026-01-01T00:00:05.000Z",
            "last_sequence_number": 5,
        },
    )


def test_the_catalogue_is_handled() -> None:
    assert {
        "run.state",
        "run.config",
        "candidate.registered",
        "seed.scored",
        "frontier.updated",
        "proposal.planned",
        "rollout.completed",
        "rollout.degraded",
        "reflection.requested",
        "proposer.called",
        "proposer.failed",
        "proposal.created",
        "acceptance.decided",
        "budget.updated",
        "search.stopped",
        "run.finished",
        "cache.access",
        "checkpoint.written",
        "candidate.status",
    } <= HANDLED_TYPES


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("p12.child", ("child", 12)),
        ("p0.parent", ("parent", 0)),
        ("seed.pareto", ("seed", None)),
        ("heldout", ("heldout", None)),
        (None, ("unknown", None)),
    ],
)
def test_stage_kind(stage: str | None, expected: tuple[str, int | None]) -> None:
    assert stage_kind(stage) == expected
