"""Tests for the GEPA algorithm state (synth_opt.gepa.state) and content-addressed candidates."""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synth_opt.gepa.candidates import CandidateRecord, candidate_id
from synth_opt.gepa.selection import SELECTORS
from synth_opt.gepa.state import GepaState, ProposalPlan, SearchSettings

FAST = settings(max_examples=60, deadline=None)

ROWS = [f"p{i}" for i in range(5)]
MINI = [f"m{i}" for i in range(12)]
SEED_PAYLOAD = {"system": "You are helpful.", "user": "Answer: {q}"}


def new_state(seed: int = 0, **overrides: Any) -> GepaState:
    options: dict[str, Any] = {"seed": seed, "modules": ("system", "user")}
    options.update(overrides)
    pareto = options.pop("pareto_ids", ROWS)
    minibatch = options.pop("minibatch_ids", MINI)
    return GepaState(SearchSettings(**options), pareto, minibatch)


def row_scores(value: float) -> dict[str, float]:
    return dict.fromkeys(ROWS, value)


def seeded(seed: int = 0, **overrides: Any) -> GepaState:
    state = new_state(seed, **overrides)
    state.add_seed(SEED_PAYLOAD, row_scores(0.5))
    return state


# -- content-addressed ids ---------------------------------------------------------------------------------

payloads = st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=5)


@settings(max_examples=200, deadline=None)
@given(payloads, st.randoms(use_true_random=False))
def test_candidate_id_depends_on_content_not_key_order(payload: dict[str, str], rnd: random.Random) -> None:
    items = list(payload.items())
    rnd.shuffle(items)
    assert candidate_id(dict(items)) == candidate_id(payload)
    assert candidate_id(dict(reversed(list(payload.items())))) == candidate_id(payload)
    assert candidate_id(dict(payload)) == candidate_id(payload)
    assert re.fullmatch(r"cand-[0-9a-f]{16}", candidate_id(payload))


@settings(max_examples=200, deadline=None)
@given(payloads, payloads)
def test_candidate_ids_differ_for_different_payloads(a: dict[str, str], b: dict[str, str]) -> None:
    if a != b:
        assert candidate_id(a) != candidate_id(b)
    else:
        assert candidate_id(a) == candidate_id(b)


def test_candidate_id_is_a_stable_hash_of_the_canonical_payload() -> None:
    payload = {"b": "é", "a": "x"}
    canonical = '{"a":"x","b":"é"}'
    expected = "cand-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    assert candidate_id(payload) == expected
    # the value matters, not only the keys
    assert candidate_id({"a": "x", "b": "e"}) != expected


def test_candidate_record_json_round_trip() -> None:
    state = seeded()
    record = state.pool[0]
    data = json.loads(json.dumps(record.to_json()))
    assert data["mean_score"] == pytest.approx(0.5)
    assert CandidateRecord.from_json(data) == record


# -- seed and pool -----------------------------------------------------------------------------------------


def test_constructor_rejects_empty_modules_or_pareto_rows() -> None:
    with pytest.raises(ValueError, match="target module"):
        new_state(modules=())
    with pytest.raises(ValueError, match="pareto row"):
        new_state(pareto_ids=[])


def test_add_seed_requires_a_score_on_every_pareto_row() -> None:
    state = new_state()
    partial = row_scores(1.0)
    del partial["p3"]
    with pytest.raises(ValueError, match="p3"):
        state.add_seed(SEED_PAYLOAD, partial)
    assert state.pool == []
    assert state.by_id == {}
    # a complete set of scores works afterwards; extra rows are dropped
    record = state.add_seed(SEED_PAYLOAD, {**row_scores(1.0), "not_a_pareto_row": 0.0})
    assert list(record.scores) == ROWS
    assert record.candidate_id == candidate_id(SEED_PAYLOAD)
    assert record.parent_ids == ()
    assert record.pool_index == 0
    assert state.order == [record.candidate_id]


def test_add_seed_only_once() -> None:
    state = seeded()
    with pytest.raises(ValueError, match="already"):
        state.add_seed({"system": "other"}, row_scores(1.0))
    assert len(state.pool) == 1


def test_plan_requires_the_seed() -> None:
    with pytest.raises(ValueError, match="seed"):
        new_state().plan()


def test_seed_payload_is_copied() -> None:
    payload = dict(SEED_PAYLOAD)
    state = new_state()
    state.add_seed(payload, row_scores(0.5))
    payload["system"] = "mutated"
    assert state.pool[0].payload == SEED_PAYLOAD


# -- plan / commit -----------------------------------------------------------------------------------------


def test_plan_rotates_modules_round_robin_and_counts_proposals() -> None:
    state = seeded(modules=("a", "b", "c"))
    plans = [state.plan() for _ in range(7)]
    assert [p.module for p in plans] == ["a", "b", "c", "a", "b", "c", "a"]
    assert [p.index for p in plans] == list(range(7))
    assert all(p.pool_version == 0 for p in plans)


def test_module_rotation_does_not_depend_on_commits() -> None:
    state = seeded(modules=("a", "b"))
    modules = []
    for i in range(6):
        plan = state.plan()
        modules.append(plan.module)
        if i % 2:
            state.commit(plan, state.child_payload(plan, f"text {i}"), row_scores(0.1 * i))
        else:
            state.commit(plan)
    assert modules == ["a", "b"] * 3


def test_child_payload_changes_only_the_planned_module() -> None:
    state = seeded()
    plan = state.plan()
    child = state.child_payload(plan, "NEW")
    assert child[plan.module] == "NEW"
    assert {k: v for k, v in child.items() if k != plan.module} == {
        k: v for k, v in SEED_PAYLOAD.items() if k != plan.module
    }
    assert state.pool[0].payload == SEED_PAYLOAD  # the parent is not mutated


def test_the_pool_version_counts_added_candidates_and_commits_count_every_proposal() -> None:
    state = seeded()
    seed_id = state.order[0]

    plan = state.plan()
    assert state.commit(plan) is None  # rejected
    assert (state.pool_version, state.commits) == (0, 1)

    plan = state.plan()
    assert plan.pool_version == 0
    child = state.child_payload(plan, "better")
    record = state.commit(plan, child, row_scores(0.75))
    assert record is not None
    assert (state.pool_version, state.commits) == (1, 2)
    assert record.candidate_id == candidate_id(child)
    assert record.parent_ids == (seed_id,)
    assert record.module_changed == plan.module
    assert record.proposal_index == plan.index == 1
    assert record.pool_index == 1
    assert state.order == [seed_id, record.candidate_id]
    assert state.by_id[record.candidate_id] is record

    plan = state.plan()
    assert plan.pool_version == 1
    # a duplicate payload (same content, other key order) collapses: the pool does not grow
    assert state.commit(plan, dict(reversed(list(child.items()))), row_scores(1.0)) is None
    assert (state.pool_version, state.commits) == (1, 3)
    assert len(state.pool) == 2
    assert state.by_id[record.candidate_id].scores == row_scores(0.75)

    plan = state.plan()
    # a child identical to the seed is a duplicate too
    assert state.commit(plan, dict(SEED_PAYLOAD), row_scores(1.0)) is None
    assert (state.pool_version, state.commits) == (1, 4)
    assert len(state.pool) == 2


def test_commit_with_child_but_no_scores_adds_nothing() -> None:
    state = seeded()
    plan = state.plan()
    assert state.commit(plan, state.child_payload(plan, "x"), None) is None
    assert len(state.pool) == 1
    assert (state.pool_version, state.commits) == (0, 1)


def test_committed_child_needs_every_pareto_score() -> None:
    state = seeded()
    plan = state.plan()
    scores = row_scores(1.0)
    del scores["p0"]
    with pytest.raises(ValueError, match="every pareto row"):
        state.commit(plan, state.child_payload(plan, "x"), scores)
    assert len(state.pool) == 1


def test_staleness_counts_candidates_added_since_the_plan() -> None:
    state = seeded()
    plans = [state.plan() for _ in range(4)]
    assert [state.staleness(p) for p in plans] == [0, 0, 0, 0]
    state.commit(plans[0])  # rejected: the pool is unchanged
    assert [state.staleness(p) for p in plans] == [0, 0, 0, 0]
    state.commit(plans[1], state.child_payload(plans[1], "y"), row_scores(0.9))
    assert [state.staleness(p) for p in plans] == [1, 1, 1, 1]
    state.commit(plans[2], state.child_payload(plans[2], "z"), row_scores(0.8))
    later = state.plan()
    assert later.pool_version == 2
    assert state.staleness(plans[3]) == 2
    assert state.staleness(later) == 0
    state.commit(plans[3], state.child_payload(plans[3], "w"), row_scores(0.7))
    assert state.staleness(later) == 1


def test_best_and_fronts_follow_the_pool() -> None:
    state = seeded()
    seed_id = state.order[0]
    plan = state.plan()
    # same mean as the seed: ties go to the older (the seed)
    tied = state.commit(plan, state.child_payload(plan, "tie"), {**row_scores(0.5), "p0": 1.0, "p1": 0.0})
    assert tied is not None
    assert tied.mean == pytest.approx(state.pool[0].mean)
    assert state.best().candidate_id == seed_id
    fronts = state.fronts()
    assert fronts["p0"] == (tied.candidate_id,)
    assert fronts["p1"] == (seed_id,)
    assert fronts["p2"] == (seed_id, tied.candidate_id)

    plan = state.plan()
    better = state.commit(plan, state.child_payload(plan, "better"), row_scores(0.6))
    assert better is not None
    assert state.best().candidate_id == better.candidate_id


def test_plan_json() -> None:
    plan = ProposalPlan(3, "cand-x", ("a", "b"), "system", 2)
    assert json.loads(json.dumps(plan.to_json())) == {
        "index": 3,
        "kind": "reflection",
        "parent_id": "cand-x",
        "parent_ids": ["cand-x"],
        "minibatch": ["a", "b"],
        "module": "system",
        "pool_version": 2,
    }


def test_plan_minibatches_come_from_the_minibatch_ids() -> None:
    state = seeded(minibatch_size=4)
    seen: set[str] = set()
    for _ in range(3):  # one epoch of 12 ids in batches of 4
        plan = state.plan()
        assert len(plan.minibatch) == 4
        assert len(set(plan.minibatch)) == 4
        seen.update(plan.minibatch)
    assert seen == set(MINI)


# -- decide ------------------------------------------------------------------------------------------------


def test_decide_strict_improvement() -> None:
    state = seeded(acceptance="strict_improvement")
    better = state.decide(1.0, 1.5)
    assert (better.accepted, better.reason, better.parent_sum, better.child_sum) == (True, "improved", 1.0, 1.5)
    equal = state.decide(1.0, 1.0)
    assert (equal.accepted, equal.reason) == (False, "not_improved")
    worse = state.decide(1.0, 0.5)
    assert (worse.accepted, worse.reason) == (False, "not_improved")


def test_decide_improvement_or_equal() -> None:
    state = seeded(acceptance="improvement_or_equal")
    assert (state.decide(1.0, 1.5).accepted, state.decide(1.0, 1.5).reason) == (True, "improved")
    assert (state.decide(1.0, 1.0).accepted, state.decide(1.0, 1.0).reason) == (True, "equal")
    assert (state.decide(1.0, 0.5).accepted, state.decide(1.0, 0.5).reason) == (False, "worse")


def test_decide_unknown_rule() -> None:
    state = seeded(acceptance="maybe")
    with pytest.raises(ValueError, match="unknown acceptance rule"):
        state.decide(0.0, 1.0)


def test_decide_does_not_touch_randomness_or_version() -> None:
    state = seeded()
    rng_state, version = state.rng.getstate(), state.pool_version
    state.decide(0.0, 1.0)
    assert state.rng.getstate() == rng_state
    assert state.pool_version == version


# -- determinism -------------------------------------------------------------------------------------------


def fake_score(payload: dict[str, str], row: str) -> float:
    """A deterministic stand-in for a container: a score in {0, .25, .5, .75, 1} from the payload and row."""
    digest = hashlib.sha256((candidate_id(payload) + row).encode()).digest()
    return digest[0] % 5 / 4


def drive(state: GepaState, iterations: int, *, in_flight: int = 1) -> list[dict[str, Any]]:
    """Run plan / decide / commit like the supervisor, ``in_flight`` plans per round; return a log."""
    log: list[dict[str, Any]] = []
    planned = 0
    while planned < iterations:
        plans = [state.plan() for _ in range(min(in_flight, iterations - planned))]
        planned += len(plans)
        for plan in plans:
            child = state.child_payload(plan, f"proposal {plan.index} from {plan.parent_id}")
            parent = state.by_id[plan.parent_id].payload
            parent_sum = sum(fake_score(parent, row) for row in plan.minibatch)
            child_sum = sum(fake_score(child, row) for row in plan.minibatch)
            decision = state.decide(parent_sum, child_sum)
            staleness = state.staleness(plan)
            if decision.accepted:
                record = state.commit(plan, child, {row: fake_score(child, row) for row in state.pareto_ids})
            else:
                record = state.commit(plan)
            log.append(
                {
                    "plan": plan.to_json(),
                    "accepted": decision.accepted,
                    "staleness": staleness,
                    "added": None if record is None else record.candidate_id,
                }
            )
    return log


def seed_state(seed: int, selector: str, modules: tuple[str, ...]) -> GepaState:
    state = new_state(seed, selector=selector, modules=modules, minibatch_size=3)
    payload = dict.fromkeys(modules, "seed text")
    state.add_seed(payload, {row: fake_score(payload, row) for row in ROWS})
    return state


@FAST
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(list(SELECTORS)),
    st.sampled_from([("a",), ("a", "b"), ("a", "b", "c")]),
    st.sampled_from([1, 3]),
)
def test_same_seed_and_calls_give_identical_runs(
    seed: int, selector: str, modules: tuple[str, ...], in_flight: int
) -> None:
    first, second = seed_state(seed, selector, modules), seed_state(seed, selector, modules)
    log_first = drive(first, 15, in_flight=in_flight)
    log_second = drive(second, 15, in_flight=in_flight)
    assert log_first == log_second
    assert first.order == second.order
    assert first.rng.getstate() == second.rng.getstate()
    assert first.sampler.to_json() == second.sampler.to_json()
    assert [r.to_json() for r in first.pool] == [r.to_json() for r in second.pool]


def test_the_driven_search_makes_progress() -> None:
    # guards the determinism test against being vacuous: children are accepted and selection varies
    state = seed_state(0, "pareto", ("a", "b"))
    log = drive(state, 40)
    assert any(entry["accepted"] for entry in log)
    assert len(state.pool) > 2
    assert len({entry["plan"]["parent_id"] for entry in log}) > 1


def test_different_seeds_give_different_minibatch_sequences() -> None:
    ids = [f"t{i}" for i in range(40)]
    sequences = set()
    for seed in range(6):
        state = new_state(seed, minibatch_ids=ids, minibatch_size=3)
        state.add_seed(SEED_PAYLOAD, row_scores(0.5))
        sequences.add(tuple(state.plan().minibatch for _ in range(8)))
    assert len(sequences) == 6


def test_the_state_owns_its_randomness() -> None:
    # global random state neither affects nor is affected by the algorithm
    random.seed(1)
    first = seeded(5)
    a = [first.plan() for _ in range(6)]
    random.seed(2)
    second = seeded(5)
    b = [second.plan() for _ in range(6)]
    assert a == b
    random.seed(3)
    before = random.getstate()
    drive(seed_state(9, "pareto", ("a", "b")), 10)
    assert random.getstate() == before


def test_pipelined_plans_are_based_on_older_pool_versions() -> None:
    state = seed_state(2, "pareto", ("a", "b"))
    log = drive(state, 12, in_flight=3)
    added = [entry["added"] is not None for entry in log]
    assert any(added) and not all(added)
    for round_start in range(0, 12, 3):
        round_ = log[round_start : round_start + 3]
        base = sum(added[:round_start])
        assert [entry["plan"]["pool_version"] for entry in round_] == [base] * 3
        assert [entry["staleness"] for entry in round_] == [sum(added[round_start : round_start + i]) for i in range(3)]
    assert state.pool_version == sum(added) and state.commits == 12


# -- frontier types ----------------------------------------------------------------------------------------


def two_objective_pool(frontier_type: str) -> tuple[GepaState, str, str, str]:
    """seed: accurate on p0 only and brief; child: accurate on p1..p4 and verbose; third: dominated."""
    state = new_state(frontier_type=frontier_type)
    seed_scores = {row: 1.0 if row == "p0" else 0.0 for row in ROWS}
    brief = {row: {"accuracy": seed_scores[row], "brevity": 1.0} for row in ROWS}
    seed = state.add_seed(SEED_PAYLOAD, seed_scores, brief)
    child_scores = {row: 0.0 if row == "p0" else 1.0 for row in ROWS}
    verbose = {row: {"accuracy": child_scores[row], "brevity": 0.2} for row in ROWS}
    plan = state.plan()
    child = state.commit(plan, state.child_payload(plan, "child"), child_scores, verbose)
    plan = state.plan()
    worse = {row: {"accuracy": 0.0, "brevity": 0.1} for row in ROWS}
    third = state.commit(plan, state.child_payload(plan, "third"), row_scores(0.0), worse)
    assert child is not None and third is not None
    return state, seed.candidate_id, child.candidate_id, third.candidate_id


def test_instance_frontier_is_one_front_per_pareto_row() -> None:
    state, seed, child, _ = two_objective_pool("instance")
    fronts = state.fronts()
    assert set(fronts) == set(ROWS)
    assert fronts["p0"] == (seed,) and all(fronts[row] == (child,) for row in ROWS[1:])


def test_objective_frontier_is_one_front_per_reported_objective() -> None:
    state, seed, child, third = two_objective_pool("objective")
    fronts = state.fronts()
    assert fronts == {"objective:accuracy": (child,), "objective:brevity": (seed,)}
    assert third not in {cid for front in fronts.values() for cid in front}
    assert {state.plan().parent_id for _ in range(30)} == {seed, child}


def test_hybrid_frontier_has_rows_and_objectives() -> None:
    state, seed, child, _ = two_objective_pool("hybrid")
    fronts = state.fronts()
    assert set(fronts) == {*ROWS, "objective:accuracy", "objective:brevity"}
    assert fronts["objective:brevity"] == (seed,) and fronts["p1"] == (child,)


def test_objective_frontier_without_reported_objectives_uses_the_reward() -> None:
    state = new_state(frontier_type="objective")
    seed = state.add_seed(SEED_PAYLOAD, row_scores(0.5))
    plan = state.plan()
    child = state.commit(plan, state.child_payload(plan, "x"), row_scores(0.75))
    assert child is not None
    assert state.fronts() == {"objective:reward": (child.candidate_id,)}
    assert seed.candidate_id not in state.fronts()["objective:reward"]


# -- checkpoints -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("selector", list(SELECTORS))
def test_a_restored_snapshot_continues_exactly(selector: str) -> None:
    original = seed_state(4, selector, ("a", "b"))
    drive(original, 10)
    snapshot = json.loads(json.dumps(original.snapshot()))  # it must survive JSON
    records = {r.candidate_id: CandidateRecord.from_json(json.loads(json.dumps(r.to_json()))) for r in original.pool}
    restored = seed_state(99, selector, ("a", "b"))  # another seed: everything must come from the snapshot
    restored.restore(snapshot, records)
    assert drive(restored, 12) == drive(original, 12)
    assert restored.snapshot() == original.snapshot()


def test_restoring_without_a_pool_record_fails_clearly() -> None:
    state = seeded()
    with pytest.raises(ValueError, match="no record"):
        new_state().restore(state.snapshot(), {})


def test_merge_plans_survive_a_checkpoint() -> None:
    from synth_opt.gepa.merge import MergePlan

    merge = MergePlan(7, ("c1", "c2"), "c0", {"system": "x", "user": "y"}, ("p0", "p1"), 3)
    plan = ProposalPlan(7, "c1", ("p0", "p1"), "*merge*", 3, merge)
    assert ProposalPlan.from_checkpoint(json.loads(json.dumps(plan.to_checkpoint()))) == plan
    plain = ProposalPlan(2, "c1", ("m1",), "system", 1)
    assert ProposalPlan.from_checkpoint(plain.to_checkpoint()) == plain
