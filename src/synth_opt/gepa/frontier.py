"""The per-instance Pareto frontier and dominance pruning (GEPA, arXiv 2507.19457).

For each pareto row the frontier holds the candidates tied for the best score on it. A candidate is dominated
when every row it leads is also led by another surviving candidate; dominated candidates are removed lowest mean
score first. Every iteration order is fixed (pool order), so the result is a pure function of the scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["instance_fronts", "lead_counts", "prune_dominated"]

Fronts = dict[str, tuple[str, ...]]


def instance_fronts(row_ids: Sequence[str], scores: Mapping[str, Mapping[str, float]], order: Sequence[str]) -> Fronts:
    """Row id -> the candidates (in pool ``order``) tied for the best score on that row."""
    fronts: Fronts = {}
    for row in row_ids:
        best: float | None = None
        leaders: list[str] = []
        for cid in order:
            value = scores[cid].get(row)
            if value is None:
                continue
            if best is None or value > best:
                best, leaders = value, [cid]
            elif value == best:
                leaders.append(cid)
        fronts[row] = tuple(leaders)
    return fronts


def prune_dominated(fronts: Fronts, mean_scores: Mapping[str, float], order: Sequence[str]) -> Fronts:
    """Remove dominated candidates from every front (the reference algorithm, with a fixed order).

    Candidates are visited lowest mean first (ties in pool order); one is removed when every front it is in still
    has another surviving member. Removing a candidate never makes another one dominated, so one pass gives the
    reference's fixed point, in time linear in the number of front memberships.
    """
    rank = {cid: i for i, cid in enumerate(order)}
    fronts_of: dict[str, list[str]] = {}
    alive: dict[str, int] = {}
    for key, front in fronts.items():
        alive[key] = len(front)
        for cid in front:
            fronts_of.setdefault(cid, []).append(key)
    dominated: set[str] = set()
    for cid in sorted(fronts_of, key=lambda c: (mean_scores[c], rank[c])):
        keys = fronts_of[cid]
        if all(alive[key] >= 2 for key in keys):
            dominated.add(cid)
            for key in keys:
                alive[key] -= 1
    return {key: tuple(c for c in front if c not in dominated) for key, front in fronts.items()}


def lead_counts(fronts: Fronts, order: Sequence[str]) -> dict[str, int]:
    """Candidate -> the number of rows it leads, in pool order (candidates leading none are left out)."""
    counts = {cid: 0 for cid in order}
    for front in fronts.values():
        for cid in front:
            counts[cid] += 1
    return {cid: n for cid, n in counts.items() if n > 0}
