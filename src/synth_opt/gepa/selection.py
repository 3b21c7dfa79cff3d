"""Parent selection strategies. Each is a pure function of the pool's scores and the state's generator."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from synth_opt.gepa.frontier import instance_fronts, lead_counts, prune_dominated

__all__ = ["SELECTORS", "best_candidate", "select_parent"]

SELECTORS = ("pareto", "current_best", "epsilon_greedy", "top_k_pareto")
EPSILON = 0.1
TOP_K = 3


def best_candidate(order: Sequence[str], means: Mapping[str, float]) -> str:
    """Highest mean pareto score; ties go to the older candidate (earlier in pool order)."""
    best = order[0]
    for cid in order[1:]:
        if means[cid] > means[best]:
            best = cid
    return best


def select_parent(
    selector: str,
    *,
    order: Sequence[str],
    row_ids: Sequence[str],
    scores: Mapping[str, Mapping[str, float]],
    means: Mapping[str, float],
    rng: random.Random,
    pruned_fronts: Mapping[str, tuple[str, ...]] | None = None,
) -> str:
    """``pruned_fronts``, when given, are the dominance-pruned fronts of the whole pool (a cache the state keeps);
    they are used as they are by ``pareto`` selection."""
    if selector == "current_best":
        return best_candidate(order, means)
    if selector == "epsilon_greedy":
        if rng.random() < EPSILON:
            return order[rng.randrange(len(order))]
        return best_candidate(order, means)
    if selector == "top_k_pareto":
        ranked = sorted(order, key=lambda cid: (-means[cid], order.index(cid)))[:TOP_K]
        order = [cid for cid in order if cid in ranked]
    elif selector != "pareto":
        raise ValueError(f"unknown candidate_selector {selector!r}; use one of {', '.join(SELECTORS)}")
    elif pruned_fronts is not None:
        return _sample_by_leads(pruned_fronts, order=order, means=means, rng=rng)
    fronts = prune_dominated(instance_fronts(row_ids, scores, order), means, order)
    return _sample_by_leads(fronts, order=order, means=means, rng=rng)


def _sample_by_leads(
    fronts: Mapping[str, tuple[str, ...]], *, order: Sequence[str], means: Mapping[str, float], rng: random.Random
) -> str:
    """Sample a candidate with weight = the number of fronts it is in."""
    counts = lead_counts(dict(fronts), order)
    if not counts:
        return best_candidate(order, means)
    pick = rng.randrange(sum(counts.values()))
    for cid, weight in counts.items():
        if pick < weight:
            return cid
        pick -= weight
    raise AssertionError("unreachable: pick is below the total weight")
