"""The typed event payloads: every registered type writes the very line the untyped ``emit`` wrote (wire names and
field order included), reads back as its class, and names whether it is a decision; stages, unknown types, partial
events and :func:`synth_opt.testing.capture_events`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synth_opt.events import DECISION_TYPES, EVENT_TYPES, UNSET, Event, EventBus, Stage, UnknownEvent
from synth_opt.events import types as t
from synth_opt.events.bus import FEED_OMITTED_FIELDS, _jsonable
from synth_opt.events.normalize import read_feed
from synth_opt.testing import capture_events

TS = "2026-01-01T00:00:00.000Z"
USAGE = {"calls": 1, "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost_usd": None}
ROLLOUT: dict[str, Any] = {
    "rollout_id": "ro-1",
    "candidate_id": "c1",
    "task_id": "t1",
    "stage": "p3.child",
    "reward": 0.5,
    "status": "completed",
    "objectives": {"outcome_reward": 0.5},
    "error": None,
    "feedback": "ok",
    "trace_digest": "d",
    "duration_seconds": 0.25,
    "usage": USAGE,
    "verifier_jobs": [{"job_id": "j1"}],
}

# One instance of every registered class, with the fields (wire names, in order) the untyped emit wrote for it.
EXAMPLES: list[tuple[t.EventPayload, dict[str, Any]]] = [
    (
        t.RunState("created", run_id="r1", config_path="/c.toml"),
        {"state": "created", "run_id": "r1", "config_path": "/c.toml"},
    ),
    (
        t.RunState("completed", stop_reason="max_train_rollouts", error=None),
        {"state": "completed", "stop_reason": "max_train_rollouts", "error": None},
    ),
    (t.RunConfig("dg", {"gepa": {"seed": 1}}), {"digest": "dg", "decision_config": {"gepa": {"seed": 1}}}),
    (t.ConfigWarning("gepa.x"), {"key": "gepa.x"}),
    (t.RunWarning("same", 4), {"feedback": "same", "rows": 4}),
    (
        t.RunFinished("max_train_rollouts", "c2", "c1", 0.75, 0.5),
        {
            "stop_reason": "max_train_rollouts",
            "best_candidate_id": "c2",
            "seed_candidate_id": "c1",
            "best_train_score": 0.75,
            "seed_train_score": 0.5,
        },
    ),
    (
        t.RunDiscarded(2, USAGE, USAGE, 1, USAGE, USAGE),
        {"rollouts": 2, "rollout": USAGE, "proposer": USAGE, "probes": 1, "probe": USAGE, "total": USAGE},
    ),
    (
        t.EventDiscarded("rollout.completed", None, Stage(2, "parent"), USAGE, True),
        {
            "discarded_type": "rollout.completed",
            "proposal_index": None,
            "stage": "p2.parent",
            "discarded_usage": USAGE,
            "paid_again": True,
        },
    ),
    (
        t.CheckpointWritten(3, 3, "c2", 2, {"commits": 3}),
        {"commits": 3, "generation": 3, "best_candidate_id": "c2", "candidate_count": 2, "payload": {"commits": 3}},
    ),
    (
        t.DatasetResolved(("t1", "t2"), ("t1",), ("t2",), ("h1",)),
        {"train_ids": ["t1", "t2"], "pareto_ids": ["t1"], "minibatch_ids": ["t2"], "heldout_ids": ["h1"]},
    ),
    (t.ContainerWarning(), {}),
    (
        t.ContainerChecked("ok", ({"name": "model", "ok": True},)),
        {"status": "ok", "checks": [{"name": "model", "ok": True}]},
    ),
    (t.ContainerLaunched("http://127.0.0.1:5", 42), {"url": "http://127.0.0.1:5", "pid": 42}),
    (
        t.ContainerOutage("probing", "http://h", {"round": 2, "held": 3, "failed_rollouts": 4}),
        {"state": "probing", "url": "http://h", "round": 2, "held": 3, "failed_rollouts": 4},
    ),
    (
        t.ContainerReplica("http://r2", "out", "connection refused"),
        {"url": "http://r2", "state": "out", "reason": "connection refused"},
    ),
    (t.CacheNamespace("ns+model-x", "m"), {"namespace": "ns+model-x", "policy_model": "m"}),
    (
        t.PlanForecast(
            4, 0.6, 21, "max_train_rollouts", {"max_train_rollouts": 21, "max_cost_usd": 30}, {"tokens": 9000.0}
        ),
        {
            "proposal_index": 4,
            "acceptance_rate": 0.6,
            "expected_proposals": 21,
            "stopping_limit": "max_train_rollouts",
            "proposals_by_limit": {"max_train_rollouts": 21, "max_cost_usd": 30},
            "expected_totals": {"tokens": 9000.0},
        },
    ),
    (
        t.CacheAccess("container.rollout", "hit", "k1", "ns"),
        {"boundary": "container.rollout", "action": "hit", "key": "k1", "namespace": "ns"},
    ),
    (t.SeedScored("c1", {"t1": 1.0}, 1.0), {"candidate_id": "c1", "scores": {"t1": 1.0}, "mean_score": 1.0}),
    (
        t.CandidateRegistered("c2", ("c1",), "instruction", 0, {"instruction": "x"}),
        {
            "candidate_id": "c2",
            "parent_ids": ["c1"],
            "module": "instruction",
            "proposal_index": 0,
            "payload": {"instruction": "x"},
        },
    ),
    (  # a seed's entry: its record and its status
        t.CandidateStatus(
            "c1", (), pool_index=0, scores={"t1": 1.0}, objective_scores=None, mean_score=1.0, status="seed"
        ),
        {
            "candidate_id": "c1",
            "parent_ids": [],
            "pool_index": 0,
            "module_changed": None,
            "proposal_index": None,
            "scores": {"t1": 1.0},
            "objective_scores": None,
            "mean_score": 1.0,
            "status": "seed",
        },
    ),
    (  # a rebased child's entry
        t.CandidateStatus(
            "c3",
            ("c1",),
            module_changed="instruction",
            proposal_index=1,
            status="rebased",
            minibatch_scores=None,
            reason="improved",
            rebased_to="c4",
        ),
        {
            "candidate_id": "c3",
            "parent_ids": ["c1"],
            "module_changed": "instruction",
            "proposal_index": 1,
            "status": "rebased",
            "minibatch_scores": None,
            "reason": "improved",
            "rebased_to": "c4",
        },
    ),
    (
        t.CandidateScored("c2", Stage(3, "child"), {"t1": 1.0}, {}, 1.0),
        {"candidate_id": "c2", "stage": "p3.child", "scores": {"t1": 1.0}, "objective_scores": {}, "mean_score": 1.0},
    ),
    (  # the one event that writes the proposal number as ``index``
        t.ProposalPlanned(3, "merge", "c1", ("c1", "c2"), ("t1",), "*merge*", 2, "c0"),
        {
            "index": 3,
            "kind": "merge",
            "parent_id": "c1",
            "parent_ids": ["c1", "c2"],
            "minibatch": ["t1"],
            "module": "*merge*",
            "pool_version": 2,
            "ancestor_id": "c0",
        },
    ),
    (
        t.ProposalCreated(
            3, "c5", ("c5",), "c1", ("c1",), "reflection", "m", 2, 1, rebase="rebased", rebased_onto="c4"
        ),
        {
            "proposal_index": 3,
            "candidate_id": "c5",
            "candidate_ids": ["c5"],
            "parent_id": "c1",
            "parent_ids": ["c1"],
            "kind": "reflection",
            "module": "m",
            "pool_version": 2,
            "staleness": 1,
            "rebase": "rebased",
            "rebased_onto": "c4",
        },
    ),
    (
        t.AcceptanceDecided(3, "c5", True, "improved", 1.0, 2.0),
        {
            "proposal_index": 3,
            "candidate_id": "c5",
            "accepted": True,
            "reason": "improved",
            "parent_sum": 1.0,
            "child_sum": 2.0,
        },
    ),
    (
        t.ProposalFailed(3, "c5", False, "proposal_failed", 1.0, 0.0, "boom"),
        {
            "proposal_index": 3,
            "candidate_id": "c5",
            "accepted": False,
            "reason": "proposal_failed",
            "parent_sum": 1.0,
            "child_sum": 0.0,
            "error": "boom",
        },
    ),
    (
        t.FrontierUpdated(2, 3, ("c1", "c2"), ("t1",), {"t1": ["c2"]}, "c2", 0.75),
        {
            "pool_version": 2,
            "pool_size": 3,
            "members": ["c1", "c2"],
            "rows_changed": ["t1"],
            "fronts": {"t1": ["c2"]},
            "best_candidate_id": "c2",
            "best_mean_score": 0.75,
        },
    ),
    (
        t.BudgetUpdated(3, {"train_rollouts": 8}, {"heldout_rollouts": 2}, 10, 1, 2, 0),
        {
            "proposal_index": 3,
            "used": {"train_rollouts": 8},
            "reserved": {"heldout_rollouts": 2},
            "train_cap": 10,
            "accepted": 1,
            "rejected": 2,
            "since_improvement": 0,
        },
    ),
    (t.BudgetWarning("max_total_rollouts"), {"limit": "max_total_rollouts"}),
    (t.SearchStopped("max_train_rollouts"), {"stop_reason": "max_train_rollouts"}),
    (t.HeldoutScored("c2", {"h1": 0.0}, 0.0), {"candidate_id": "c2", "scores": {"h1": 0.0}, "mean_score": 0.0}),
    (
        t.RolloutCompleted(**{**ROLLOUT, "stage": Stage(3, "child"), "verifier_jobs": ({"job_id": "j1"},)}),
        ROLLOUT,
    ),
    (
        t.RolloutDegraded(
            **{
                **ROLLOUT,
                "stage": Stage(None, "seed.pareto"),
                "reward": None,
                "status": "degraded",
                "objectives": None,
                "error": "task failed",
                "feedback": None,
                "trace_digest": None,
                "usage": None,
                "verifier_jobs": (),
            }
        ),
        {
            **ROLLOUT,
            "stage": "seed.pareto",
            "reward": None,
            "status": "degraded",
            "objectives": None,
            "error": "task failed",
            "feedback": None,
            "trace_digest": None,
            "usage": None,
            "verifier_jobs": [],
        },
    ),
    (
        t.RolloutCompleted(
            **{**ROLLOUT, "stage": Stage(None, "seed.pareto"), "verifier_jobs": (), "output": {"turns": ["hi"]}}
        ),
        {**ROLLOUT, "stage": "seed.pareto", "verifier_jobs": [], "output": {"turns": ["hi"]}},
    ),
    (
        t.RolloutReused("ro-2", "c1", "t1", Stage(4, "parent"), 0.5, "ro-1"),
        {
            "rollout_id": "ro-2",
            "candidate_id": "c1",
            "task_id": "t1",
            "stage": "p4.parent",
            "reward": 0.5,
            "source_rollout_id": "ro-1",
        },
    ),
    (
        t.ReflectionRequested(
            3, "c1", "m", ({"task_id": "t1", "reward": 0.0, "feedback": "f", "cut": 10},), 0, 12, "s"
        ),
        {
            "proposal_index": 3,
            "candidate_id": "c1",
            "module": "m",
            "records": [{"task_id": "t1", "reward": 0.0, "feedback": "f", "cut": 10}],
            "omitted_records": 0,
            "prompt_chars": 12,
            "prompt_sha256": "s",
        },
    ),
    (
        t.ProposerCalled(3, "openai", "m", "ok", 1, 0.5, USAGE, 4, "s", "text", reply_file="calls/p00003.reply.txt"),
        {
            "proposal_index": 3,
            "backend": "openai",
            "model": "m",
            "outcome": "ok",
            "texts": 1,
            "duration_seconds": 0.5,
            "usage": USAGE,
            "reply_chars": 4,
            "reply_sha256": "s",
            "reply": "text",
            "reply_file": "calls/p00003.reply.txt",
        },
    ),
    (
        t.ProposerFailed(3, "openai", None, "error", "timed out", None),
        {
            "proposal_index": 3,
            "backend": "openai",
            "model": None,
            "outcome": "error",
            "error": "timed out",
            "usage": None,
        },
    ),
    (
        t.ProposerOutage("waiting", 3, attempt=1, error="refused"),
        {"state": "waiting", "proposal_index": 3, "attempt": 1, "error": "refused"},
    ),
]


def untyped_line(number: int, type_name: str, message: str, lane: str | None, **fields: Any) -> str:
    """The feed line the untyped ``emit(type, message, lane=..., **fields)`` wrote."""
    fields = _jsonable(fields)
    shown = {k: "<in checkpoint.json>" if k in FEED_OMITTED_FIELDS.get(type_name, ()) else v for k, v in fields.items()}
    line = {"sequence_number": number, "ts": TS, "type": type_name, "message": message, "fields": shown, "lane": lane}
    return json.dumps(line, ensure_ascii=False, allow_nan=False)


def test_every_registered_type_has_an_example() -> None:
    assert {type(payload) for payload, _ in EXAMPLES} == set(EVENT_TYPES.values())
    assert all(cls.TYPE == name for name, cls in EVENT_TYPES.items())


@pytest.mark.parametrize(("payload", "fields"), EXAMPLES, ids=lambda v: getattr(v, "TYPE", ""))
def test_a_typed_event_writes_the_untyped_line_and_reads_back_as_its_class(
    payload: t.EventPayload, fields: dict[str, Any], tmp_path: Path
) -> None:
    feed = tmp_path / "events.jsonl"
    bus = EventBus(feed, clock=lambda: TS)
    seen: list[Event] = []
    bus.on_event(seen.append)
    bus.emit(payload, f"a {payload.event_type}", lane="supervisor")
    bus.close()
    line = feed.read_text(encoding="utf-8")
    assert line == untyped_line(1, payload.event_type, f"a {payload.event_type}", "supervisor", **fields) + "\n"
    assert seen[0].data == payload  # in process: the payload (its feed-omitted fields included)
    (event,) = read_feed(feed)
    assert type(event.data) is type(payload) and event.type == payload.event_type
    if payload.event_type not in FEED_OMITTED_FIELDS:
        assert event.data == payload  # replayed: the same payload
        assert event == Event.from_json(json.loads(line)) and event.to_json() == json.loads(line)
    assert event.is_decision == type(payload).DECISION


def test_the_decision_types_are_the_classes_that_say_so_and_the_same_as_before() -> None:
    assert DECISION_TYPES == frozenset(
        {
            "run.config",
            "dataset.resolved",
            "seed.scored",
            "proposal.planned",
            "proposal.created",
            "candidate.scored",
            "acceptance.decided",
            "proposal.failed",
            "frontier.updated",
            "search.stopped",
            "heldout.scored",
            "run.finished",
        }
    )
    assert DECISION_TYPES == {name for name, cls in EVENT_TYPES.items() if cls.DECISION}


def test_one_attribute_name_per_concept_whatever_the_wire_name() -> None:
    plan = t.ProposalPlanned(7, "reflection", "c1", ("c1",), (), "m", 0)
    assert plan.proposal_index == 7 and plan.to_fields()["index"] == 7 and "proposal_index" not in plan.to_fields()
    checkpoint = t.CheckpointWritten(1, 1, None, None, {"commits": 1})
    assert checkpoint.snapshot == {"commits": 1} and checkpoint.to_fields()["payload"] == {"commits": 1}
    assert t.shared_field(plan, "proposal_index") == 7


@pytest.mark.parametrize(
    ("text", "stage"),
    [
        ("p3.child", Stage(3, "child")),
        ("p12.merge", Stage(12, "merge")),
        ("p0.pareto", Stage(0, "pareto")),
        ("seed.pareto", Stage(None, "seed.pareto")),
        ("heldout", Stage(None, "heldout")),
        ("px.child", Stage(None, "px.child")),
        ("p3.", Stage(None, "p3.")),
    ],
)
def test_a_stage_parses_and_formats_as_the_feed_writes_it(text: str, stage: Stage) -> None:
    assert Stage.parse(text) == stage and str(stage) == text
    assert t.SEED_STAGE == Stage.parse("seed.pareto") and t.HELDOUT_STAGE == Stage.parse("heldout")


def test_an_unknown_type_reads_back_with_its_fields_as_they_are() -> None:
    line = {"sequence_number": 4, "ts": TS, "type": "run.started", "message": "old", "fields": {"run_id": "r1"}}
    event = Event.from_json(line)
    assert event.data == UnknownEvent("run.started", {"run_id": "r1"}) and event.data.event_type == "run.started"
    assert not event.is_decision and event.read_partially() is event


def test_a_known_type_with_fields_missing_reads_as_unknown_or_partially() -> None:
    fields = {"candidate_id": "c1", "scores": {"t1": 1.0}}  # an older feed's seed.scored without its mean
    event = Event(1, TS, "seed.scored", "seed", fields)
    assert event.data == UnknownEvent("seed.scored", fields)
    partial = event.read_partially()
    assert partial.data == t.SeedScored("c1", {"t1": 1.0}, None) and partial.fields == fields
    assert t.payload_of("seed.scored", fields, partial=True) == partial.data
    assert t.payload_of("rollout.completed", {"candidate_id": "c1"}, partial=True).KEY == ("rollout_id",)


def test_fields_a_class_does_not_name_stay_in_an_open_payload() -> None:
    entry = {"candidate_id": "c1", "parent_ids": [], "status": "seed", "note": "new in a later version"}
    status = t.CandidateStatus.from_fields(entry)
    assert isinstance(status, t.CandidateStatus) and status.extra == {"note": "new in a later version"}
    assert status.to_fields() == {**entry, "parent_ids": (), "module_changed": None, "proposal_index": None}
    assert status.pool_index is UNSET and not UNSET


def test_a_checkpoint_s_snapshot_stays_out_of_the_feed_but_reaches_observers(tmp_path: Path) -> None:
    bus = EventBus(tmp_path / "events.jsonl", clock=lambda: TS)
    with capture_events() as events:
        bus.emit(t.CheckpointWritten(1, 1, "c1", 1, {"commits": 1, "state": {}}), "checkpoint", lane="supervisor")
    bus.close()
    assert events.first(t.CheckpointWritten).snapshot == {"commits": 1, "state": {}}
    (replayed,) = read_feed(tmp_path / "events.jsonl")
    assert isinstance(replayed.data, t.CheckpointWritten) and replayed.data.snapshot == "<in checkpoint.json>"


def test_typed_fields_are_redacted_but_task_content_is_kept(tmp_path: Path) -> None:
    bus = EventBus(tmp_path / "events.jsonl")
    records = ({"task_id": "t1", "reward": 0.0, "feedback": "see https://docs.test/?key=kept"},)
    with capture_events() as events:
        bus.emit(t.ContainerLaunched("http://u:secret@h/?token=secret", 1), "at http://u:secret@h/")
        bus.emit(t.ReflectionRequested(0, "c1", "m", records, 0, 1, "s"), "reflect")
    bus.close()
    assert "secret" not in (tmp_path / "events.jsonl").read_text()
    assert events.first(t.ContainerLaunched).url == "http://u:***@h/?token=***"
    assert events[0].message == "at http://u:***@h/"
    assert events.first(t.ReflectionRequested).records == records


def test_capture_events_sees_every_bus_while_open_and_none_after() -> None:
    first, second = EventBus(), EventBus()
    first.emit(t.SearchStopped("before"), "before")
    with capture_events() as events:
        first.emit(t.SearchStopped("max_train_rollouts"), "stop")
        second.emit(t.ContainerWarning(), "warn", lane="rollout")
    first.emit(t.SearchStopped("after"), "after")
    assert events.types() == ["search.stopped", "container.warning"]
    assert [stop.stop_reason for stop in events.of(t.SearchStopped)] == ["max_train_rollouts"]
    assert events.of(t.ContainerWarning) == [t.ContainerWarning()]
    with pytest.raises(LookupError):
        events.first(t.RunFinished)


def test_data_as_gives_the_payload_of_its_own_type_only_and_reads_no_other() -> None:
    bus = EventBus()
    state = bus.emit(t.RunState(state="searching"), "state: searching")
    warning = bus.emit(t.ConfigWarning(key="gepa.use_merge"), "config warning")
    assert state.data_as(t.RunState) == t.RunState(state="searching")
    assert warning.data_as(t.RunState) is None
    assert warning._data is None  # another type's payload was not read to answer
    assert Event.from_json(state.to_json()).data_as(t.RunState) == t.RunState(state="searching")
