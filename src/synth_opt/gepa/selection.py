"""Parent selection strategies: each one a small class behind the :class:`ParentSelector` protocol, pure (a
function of the pool's scores and the state's generator), registered by name in :data:`SELECTORS`.

Adding a selector is one class and :func:`register_selector`; the config accepts every registered name
(``gepa.candidate_selector``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from synth_opt.gepa.frontier import instance_fronts, lead_counts, prune_dominated
from synth_opt.registry import Registry

__all__ = [
    "SELECTORS",
    "CurrentBest",
    "EpsilonGreedy",
    "ParentSelector",
    "Pareto",
    "SelectionView",
    "TopKPareto",
    "best_candidate",
    "get_selector",
    "register_selector",
    "select_parent",
]

EPSILON = 0.1
TOP_K = 3


@dataclass(frozen=True, slots=True)
class SelectionView:
    """What a selector may read: the pool in order, the frontier keys (pareto rows, objectives) and each
    candidate's score on them, the mean pareto scores, and the dominance-pruned fronts of the whole pool (computed
    on demand; the state caches them)."""

    order: Sequence[str]
    row_ids: Sequence[str]
    scores: Mapping[str, Mapping[str, float]]
    means: Mapping[str, float]
    pool_fronts: Callable[[], Mapping[str, tuple[str, ...]]]

    def fronts_of(self, order: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The dominance-pruned fronts of the candidates in ``order`` only."""
        return prune_dominated(instance_fronts(self.row_ids, self.scores, order), self.means, order)


class ParentSelector(Protocol):
    """Chooses the parent of the next proposal. ``name`` is the config's value for it."""

    @property
    def name(self) -> str: ...

    def select(self, view: SelectionView, rng: random.Random) -> str: ...


def best_candidate(order: Sequence[str], means: Mapping[str, float]) -> str:
    """Highest mean pareto score; ties go to the older candidate (earlier in pool order)."""
    best = order[0]
    for cid in order[1:]:
        if means[cid] > means[best]:
            best = cid
    return best


def sample_by_leads(
    fronts: Mapping[str, tuple[str, ...]], *, order: Sequence[str], means: Mapping[str, float], rng: random.Random
) -> str:
    """Sample a candidate with weight = the number of fronts it is in (the best candidate when none leads)."""
    counts = lead_counts(dict(fronts), order)
    if not counts:
        return best_candidate(order, means)
    pick = rng.randrange(sum(counts.values()))
    for cid, weight in counts.items():
        if pick < weight:
            return cid
        pick -= weight
    raise AssertionError("unreachable: pick is below the total weight")


@dataclass(frozen=True, slots=True)
class Pareto:
    """GEPA's rule: sample from the pool's Pareto fronts, weighted by how many fronts a candidate leads."""

    name: str = "pareto"

    def select(self, view: SelectionView, rng: random.Random) -> str:
        return sample_by_leads(view.pool_fronts(), order=view.order, means=view.means, rng=rng)


@dataclass(frozen=True, slots=True)
class CurrentBest:
    """Always the candidate with the best mean pareto score."""

    name: str = "current_best"

    def select(self, view: SelectionView, rng: random.Random) -> str:
        return best_candidate(view.order, view.means)


@dataclass(frozen=True, slots=True)
class EpsilonGreedy:
    """The best candidate, or with probability ``epsilon`` a uniformly random one."""

    name: str = "epsilon_greedy"
    epsilon: float = EPSILON

    def select(self, view: SelectionView, rng: random.Random) -> str:
        if rng.random() < self.epsilon:
            return view.order[rng.randrange(len(view.order))]
        return best_candidate(view.order, view.means)


@dataclass(frozen=True, slots=True)
class TopKPareto:
    """Pareto sampling among the ``k`` candidates with the best means only."""

    name: str = "top_k_pareto"
    k: int = TOP_K

    def select(self, view: SelectionView, rng: random.Random) -> str:
        ranked = sorted(view.order, key=lambda cid: (-view.means[cid], view.order.index(cid)))[: self.k]
        order = [cid for cid in view.order if cid in ranked]
        return sample_by_leads(view.fronts_of(order), order=order, means=view.means, rng=rng)


SELECTORS: Registry[ParentSelector] = Registry("candidate_selector")
"""The registered parent selectors by name (the values ``gepa.candidate_selector`` accepts)."""


def register_selector(selector: ParentSelector) -> ParentSelector:
    """Register ``selector`` under its name; a name already taken by another selector is a ``ValueError``."""
    return SELECTORS.register(selector)


def get_selector(name: str) -> ParentSelector:
    """The selector registered as ``name``; an unknown name is a ``ValueError`` listing the known ones."""
    return SELECTORS.named(name)


for _builtin in (Pareto(), CurrentBest(), EpsilonGreedy(), TopKPareto()):
    register_selector(_builtin)


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
    """The parent the selector registered as ``selector`` chooses. ``pruned_fronts``, when given, are the
    dominance-pruned fronts of the whole pool (a cache the state keeps); otherwise they are computed when asked."""
    chosen = get_selector(selector)

    def pool_fronts() -> Mapping[str, tuple[str, ...]]:
        if pruned_fronts is not None:
            return pruned_fronts
        return prune_dominated(instance_fronts(row_ids, scores, order), means, order)

    view = SelectionView(order=order, row_ids=row_ids, scores=scores, means=means, pool_fronts=pool_fronts)
    return chosen.select(view, rng)
