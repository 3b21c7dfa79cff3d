"""Tests for parent selection (synth_opt.gepa.selection)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synth_opt.gepa.candidates import mean_score
from synth_opt.gepa.frontier import instance_fronts, lead_counts, prune_dominated
from synth_opt.gepa.selection import EPSILON, SELECTORS, TOP_K, best_candidate, select_parent

SCORE_VALUES = (0.0, 0.25, 0.5, 0.75, 1.0)
FAST = settings(max_examples=150, deadline=None)

Pool = tuple[list[str], list[str], dict[str, dict[str, float]]]


@st.composite
def pools(draw: st.DrawFn) -> Pool:
    """(pool order, pareto row ids, candidate -> row -> score) with a score on every row, as the state keeps."""
    n_candidates = draw(st.integers(1, 7))
    n_rows = draw(st.integers(1, 6))
    candidates = [f"c{i}" for i in range(n_candidates)]
    rows = [f"r{j}" for j in range(n_rows)]
    order = list(draw(st.permutations(candidates)))
    scores = {cid: {row: draw(st.sampled_from(SCORE_VALUES)) for row in rows} for cid in candidates}
    return order, rows, scores


def means_of(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    return {cid: mean_score(row_scores) for cid, row_scores in scores.items()}


def oracle_best(order: list[str], means: dict[str, float]) -> str:
    top = max(means[cid] for cid in order)
    return next(cid for cid in order if means[cid] == top)


def pruned_counts(order: list[str], rows: list[str], scores: dict[str, dict[str, float]]) -> dict[str, int]:
    fronts = prune_dominated(instance_fronts(rows, scores, order), means_of(scores), order)
    return lead_counts(fronts, order)


def draw_parents(selector: str, pool: Pool, seed: int, n: int) -> list[str]:
    order, rows, scores = pool
    rng = random.Random(seed)
    means = means_of(scores)
    return [select_parent(selector, order=order, row_ids=rows, scores=scores, means=means, rng=rng) for _ in range(n)]


# -- best_candidate ----------------------------------------------------------------------------------------


@FAST
@given(
    st.lists(st.sampled_from(SCORE_VALUES), min_size=1, max_size=12),
    st.randoms(use_true_random=False),
)
def test_best_candidate_is_highest_mean_ties_to_older(values: list[float], rnd: random.Random) -> None:
    order = [f"c{i}" for i in range(len(values))]
    means = dict(zip(order, values, strict=True))
    assert best_candidate(order, means) == oracle_best(order, means)
    # the answer follows pool order, not the mapping's insertion order
    items = list(means.items())
    rnd.shuffle(items)
    assert best_candidate(order, dict(items)) == oracle_best(order, means)


def test_best_candidate_ties_go_to_the_older() -> None:
    means = {"old": 0.5, "mid": 0.5, "new": 0.5}
    assert best_candidate(["old", "mid", "new"], means) == "old"
    assert best_candidate(["new", "mid", "old"], means) == "new"
    assert best_candidate(["a", "b", "c"], {"a": 0.1, "b": 0.9, "c": 0.9}) == "b"
    assert best_candidate(["a", "b", "c"], {"a": 0.1, "b": 0.5, "c": 0.9}) == "c"


# -- select_parent -----------------------------------------------------------------------------------------


@FAST
@given(pools(), st.integers(0, 2**32 - 1))
def test_every_selector_returns_a_pool_member(pool: Pool, seed: int) -> None:
    order = pool[0]
    for selector in SELECTORS:
        for parent in draw_parents(selector, pool, seed, 10):
            assert parent in order


@FAST
@given(pools(), st.integers(0, 2**32 - 1))
def test_pareto_picks_only_candidates_that_lead_after_pruning(pool: Pool, seed: int) -> None:
    order, rows, scores = pool
    counts = pruned_counts(order, rows, scores)
    assert counts, "with scores on every row, some candidate always leads"
    for parent in draw_parents("pareto", pool, seed, 25):
        assert parent in counts


@FAST
@given(pools(), st.integers(0, 2**32 - 1))
def test_top_k_pareto_picks_a_leader_among_the_top_k_by_mean(pool: Pool, seed: int) -> None:
    order, rows, scores = pool
    means = means_of(scores)
    top = sorted(order, key=lambda cid: (-means[cid], order.index(cid)))[:TOP_K]
    restricted = [cid for cid in order if cid in top]
    allowed = pruned_counts(restricted, rows, scores)
    for parent in draw_parents("top_k_pareto", pool, seed, 25):
        assert parent in top
        assert parent in allowed


@FAST
@given(pools(), st.integers(0, 2**32 - 1))
def test_same_seed_gives_the_same_choice_sequence(pool: Pool, seed: int) -> None:
    for selector in SELECTORS:
        assert draw_parents(selector, pool, seed, 30) == draw_parents(selector, pool, seed, 30)


@FAST
@given(pools(), st.integers(0, 2**32 - 1))
def test_current_best_is_the_highest_mean_ties_to_older(pool: Pool, seed: int) -> None:
    order, _, scores = pool
    expected = oracle_best(order, means_of(scores))
    assert draw_parents("current_best", pool, seed, 5) == [expected] * 5


def test_current_best_does_not_consume_randomness() -> None:
    order = ["a", "b"]
    scores = {"a": {"r": 0.0}, "b": {"r": 1.0}}
    rng = random.Random(7)
    before = rng.getstate()
    select_parent("current_best", order=order, row_ids=["r"], scores=scores, means=means_of(scores), rng=rng)
    assert rng.getstate() == before


def test_current_best_tie_goes_to_older() -> None:
    scores = {"new": {"r1": 1.0, "r2": 0.0}, "old": {"r1": 0.0, "r2": 1.0}}
    pool: Pool = (["old", "new"], ["r1", "r2"], scores)
    assert draw_parents("current_best", pool, 0, 3) == ["old"] * 3


def test_pareto_frequency_tracks_lead_counts() -> None:
    # rows r0..r5; after pruning a leads 1 row, b leads 2, c leads 3; d leads nothing (never picked).
    rows = [f"r{j}" for j in range(6)]
    scores = {
        "a": {"r0": 1.0, "r1": 0.0, "r2": 0.0, "r3": 0.0, "r4": 0.0, "r5": 0.0},
        "b": {"r0": 0.0, "r1": 1.0, "r2": 1.0, "r3": 0.0, "r4": 0.0, "r5": 0.0},
        "c": {"r0": 0.0, "r1": 0.0, "r2": 0.0, "r3": 1.0, "r4": 1.0, "r5": 1.0},
        "d": {"r0": 0.5, "r1": 0.5, "r2": 0.5, "r3": 0.5, "r4": 0.5, "r5": 0.5},
    }
    order = ["d", "a", "b", "c"]
    assert pruned_counts(order, rows, scores) == {"a": 1, "b": 2, "c": 3}
    n = 12_000
    freq = Counter(draw_parents("pareto", (order, rows, scores), 20240601, n))
    assert set(freq) == {"a", "b", "c"}
    for cid, weight in {"a": 1, "b": 2, "c": 3}.items():
        assert abs(freq[cid] / n - weight / 6) < 0.02, (cid, freq)


def test_pareto_frequency_uses_counts_after_pruning_not_before() -> None:
    # x and y tie on r0 and r1; y has the higher mean (it also scores on r2 where z leads), so x is dominated.
    # Before pruning x would have weight 2 of 5; after pruning it must never be drawn.
    rows = ["r0", "r1", "r2"]
    scores = {
        "x": {"r0": 1.0, "r1": 1.0, "r2": 0.0},
        "y": {"r0": 1.0, "r1": 1.0, "r2": 0.5},
        "z": {"r0": 0.0, "r1": 0.0, "r2": 1.0},
    }
    order = ["x", "y", "z"]
    assert pruned_counts(order, rows, scores) == {"y": 2, "z": 1}
    n = 6_000
    freq = Counter(draw_parents("pareto", (order, rows, scores), 99, n))
    assert freq["x"] == 0
    assert abs(freq["y"] / n - 2 / 3) < 0.03, freq


def test_epsilon_greedy_mostly_exploits() -> None:
    order = ["a", "b", "c", "d"]
    scores = {cid: {"r": v} for cid, v in zip(order, (0.0, 0.25, 1.0, 0.5), strict=True)}
    n = 10_000
    freq = Counter(draw_parents("epsilon_greedy", (order, ["r"], scores), 5, n))
    # the best is returned with probability (1 - eps) + eps / len(order); every other one with eps / len(order)
    assert abs(freq["c"] / n - ((1 - EPSILON) + EPSILON / 4)) < 0.02, freq
    for cid in ("a", "b", "d"):
        assert abs(freq[cid] / n - EPSILON / 4) < 0.015, freq


def test_unknown_selector_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown candidate_selector"):
        draw_parents("roulette", (["a"], ["r"], {"a": {"r": 1.0}}), 0, 1)


def test_single_candidate_pool_always_selects_it() -> None:
    pool: Pool = (["only"], ["r0", "r1"], {"only": {"r0": 0.0, "r1": 0.0}})
    for selector in SELECTORS:
        assert draw_parents(selector, pool, 3, 5) == ["only"] * 5
