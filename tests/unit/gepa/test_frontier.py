"""Property tests for the per-instance Pareto frontier and dominance pruning (synth_opt.gepa.frontier)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from synth_opt.gepa.candidates import mean_score
from synth_opt.gepa.frontier import instance_fronts, lead_counts, prune_dominated

# Dyadic score values: few distinct values give many ties, and sums of them are exact in floating point, so a
# mean does not depend on the order the scores are added in.
SCORE_VALUES = (0.0, 0.25, 0.5, 0.75, 1.0)
FAST = settings(max_examples=200, deadline=None)


@st.composite
def pools(draw: st.DrawFn, *, allow_missing: bool = False) -> tuple[list[str], list[str], dict[str, dict[str, float]]]:
    """(pool order, row ids, candidate -> row -> score); the pool order is a random permutation of the ids."""
    n_candidates = draw(st.integers(1, 7))
    n_rows = draw(st.integers(1, 6))
    candidates = [f"c{i}" for i in range(n_candidates)]
    rows = [f"r{j}" for j in range(n_rows)]
    order = draw(st.permutations(candidates))
    score = st.sampled_from(SCORE_VALUES)
    value = st.one_of(st.none(), score) if allow_missing else score
    scores: dict[str, dict[str, float]] = {}
    for cid in candidates:
        row_scores = {row: draw(value) for row in rows}
        scores[cid] = {row: v for row, v in row_scores.items() if v is not None}
    return list(order), rows, scores


def means_of(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    return {cid: mean_score(row_scores) for cid, row_scores in scores.items()}


def pruned(order: list[str], rows: list[str], scores: dict[str, dict[str, float]]) -> dict[str, tuple[str, ...]]:
    return prune_dominated(instance_fronts(rows, scores, order), means_of(scores), order)


def survivors(fronts: dict[str, tuple[str, ...]]) -> set[str]:
    return {cid for front in fronts.values() for cid in front}


# -- instance_fronts ---------------------------------------------------------------------------------------


@FAST
@given(pools(allow_missing=True))
def test_instance_fronts_leaders_are_exactly_the_max_scorers_in_pool_order(
    pool: tuple[list[str], list[str], dict[str, dict[str, float]]],
) -> None:
    order, rows, scores = pool
    fronts = instance_fronts(rows, scores, order)
    assert list(fronts) == rows
    for row in rows:
        present = {cid: scores[cid][row] for cid in order if row in scores[cid]}
        front = fronts[row]
        if not present:
            assert front == ()
            continue
        top = max(present.values())
        # every leader has the max score on the row
        assert all(scores[cid][row] == top for cid in front)
        # every candidate with the max score is a leader
        assert {cid for cid, v in present.items() if v == top} == set(front)
        # no duplicates, and leaders keep pool order
        assert len(set(front)) == len(front)
        assert list(front) == [cid for cid in order if cid in front]


def test_instance_fronts_example() -> None:
    scores = {"a": {"r1": 1.0, "r2": 0.0}, "b": {"r1": 1.0, "r2": 0.5}, "c": {"r1": 0.2}}
    fronts = instance_fronts(["r1", "r2", "r3"], scores, ["c", "b", "a"])
    assert fronts == {"r1": ("b", "a"), "r2": ("b",), "r3": ()}


def test_instance_fronts_ignores_candidates_outside_order() -> None:
    scores = {"a": {"r": 0.1}, "ghost": {"r": 9.0}}
    assert instance_fronts(["r"], scores, ["a"]) == {"r": ("a",)}


# -- prune_dominated ---------------------------------------------------------------------------------------


@FAST
@given(pools(allow_missing=True))
def test_prune_never_empties_a_front_and_only_removes(
    pool: tuple[list[str], list[str], dict[str, dict[str, float]]],
) -> None:
    order, rows, scores = pool
    fronts = instance_fronts(rows, scores, order)
    result = prune_dominated(fronts, means_of(scores), order)
    assert list(result) == list(fronts)
    for row, front in fronts.items():
        kept = result[row]
        assert set(kept) <= set(front)
        # relative (pool) order is kept
        assert list(kept) == [cid for cid in front if cid in kept]
        if front:
            assert kept, f"row {row} lost all its leaders"


@FAST
@given(pools(allow_missing=True))
def test_prune_survivors_lead_a_row_and_are_not_dominated(
    pool: tuple[list[str], list[str], dict[str, dict[str, float]]],
) -> None:
    order, rows, scores = pool
    fronts = instance_fronts(rows, scores, order)
    result = prune_dominated(fronts, means_of(scores), order)
    alive = survivors(result)
    for cid in alive:
        led = [row for row, front in fronts.items() if cid in front]
        assert led, f"{cid} survives without leading any row"
        # a survivor keeps every row it led (only dominated candidates are removed from fronts)
        assert all(cid in result[row] for row in led)
        # not dominated: some row it leads has no other surviving leader
        assert any(not (set(fronts[row]) & (alive - {cid})) for row in led), f"{cid} is dominated"


@FAST
@given(pools(allow_missing=True))
def test_prune_removes_only_candidates_whose_rows_stay_covered(
    pool: tuple[list[str], list[str], dict[str, dict[str, float]]],
) -> None:
    order, rows, scores = pool
    fronts = instance_fronts(rows, scores, order)
    result = prune_dominated(fronts, means_of(scores), order)
    removed = survivors(fronts) - survivors(result)
    for cid in removed:
        for row, front in fronts.items():
            if cid in front:
                assert result[row], f"removed {cid} left row {row} without a leader"


@FAST
@given(pools(allow_missing=True))
def test_prune_is_identity_when_every_front_is_a_single_candidate(
    pool: tuple[list[str], list[str], dict[str, dict[str, float]]],
) -> None:
    order, rows, scores = pool
    fronts = instance_fronts(rows, scores, order)
    if all(len(front) <= 1 for front in fronts.values()):
        assert prune_dominated(fronts, means_of(scores), order) == fronts


@FAST
@given(pools(allow_missing=True))
def test_prune_is_deterministic(pool: tuple[list[str], list[str], dict[str, dict[str, float]]]) -> None:
    order, rows, scores = pool
    first = pruned(order, rows, scores)
    for _ in range(3):
        assert pruned(order, rows, scores) == first


@FAST
@given(pools(allow_missing=True), st.randoms(use_true_random=False))
def test_prune_does_not_depend_on_dict_insertion_order(
    pool: tuple[list[str], list[str], dict[str, dict[str, float]]], rnd: random.Random
) -> None:
    order, rows, scores = pool
    expected = pruned(order, rows, scores)

    # rebuild the score mapping (outer and inner dicts) with a different insertion order
    outer = list(scores)
    rnd.shuffle(outer)
    shuffled: dict[str, dict[str, float]] = {}
    for cid in outer:
        inner = list(scores[cid].items())
        rnd.shuffle(inner)
        shuffled[cid] = dict(inner)
    assert pruned(order, rows, shuffled) == expected
    for row in rows:
        assert pruned(order, rows, shuffled)[row] == expected[row]

    # the fronts mapping and the mean mapping in another insertion order
    fronts = instance_fronts(rows, scores, order)
    front_items = list(fronts.items())
    rnd.shuffle(front_items)
    mean_items = list(means_of(scores).items())
    rnd.shuffle(mean_items)
    again = prune_dominated(dict(front_items), dict(mean_items), order)
    assert {row: again[row] for row in rows} == {row: expected[row] for row in rows}


def test_prune_removes_the_lowest_mean_dominated_candidate_first() -> None:
    # a and b both lead only r1; a has the lower mean, so a is removed and b survives
    scores = {"a": {"r1": 1.0, "r2": 0.0, "r3": 0.0}, "b": {"r1": 1.0, "r2": 0.5, "r3": 0.0}, "c": {"r3": 1.0}}
    scores["c"].update({"r1": 0.0, "r2": 0.75})
    order = ["a", "b", "c"]
    fronts = instance_fronts(["r1", "r2", "r3"], scores, order)
    assert fronts == {"r1": ("a", "b"), "r2": ("c",), "r3": ("c",)}
    result = prune_dominated(fronts, means_of(scores), order)
    assert result == {"r1": ("b",), "r2": ("c",), "r3": ("c",)}

    # swap the means: now b is lower and is removed instead
    scores["a"]["r2"], scores["b"]["r2"] = 0.5, 0.0
    result = prune_dominated(instance_fronts(["r1", "r2", "r3"], scores, order), means_of(scores), order)
    assert result == {"r1": ("a",), "r2": ("c",), "r3": ("c",)}


def test_prune_mean_ties_are_broken_by_pool_order() -> None:
    # identical scores: the first in pool order is examined (and removed) first
    scores = {"x": {"r1": 1.0, "r2": 0.0}, "y": {"r1": 1.0, "r2": 0.0}, "z": {"r1": 0.0, "r2": 1.0}}
    for order in (["x", "y", "z"], ["y", "x", "z"]):
        result = pruned(order, ["r1", "r2"], scores)
        assert result == {"r1": (order[1],), "r2": ("z",)}


def test_prune_keeps_a_candidate_that_alone_covers_rows_shared_by_dominated_ones() -> None:
    # c leads both rows; a and b each lead one of them; a and b go, c stays
    scores = {"a": {"r1": 1.0, "r2": 0.0}, "b": {"r1": 0.0, "r2": 1.0}, "c": {"r1": 1.0, "r2": 1.0}}
    assert pruned(["a", "b", "c"], ["r1", "r2"], scores) == {"r1": ("c",), "r2": ("c",)}


# -- lead_counts -------------------------------------------------------------------------------------------


@FAST
@given(pools(allow_missing=True))
def test_lead_counts_counts_rows_in_pool_order(pool: tuple[list[str], list[str], dict[str, dict[str, float]]]) -> None:
    order, rows, scores = pool
    fronts = pruned(order, rows, scores)
    counts = lead_counts(fronts, order)
    assert list(counts) == [cid for cid in order if cid in counts]
    assert all(n > 0 for n in counts.values())
    for cid in order:
        n = sum(cid in front for front in fronts.values())
        assert counts.get(cid, 0) == n
    assert sum(counts.values()) == sum(len(front) for front in fronts.values())
