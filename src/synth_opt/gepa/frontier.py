"""The per-instance Pareto frontier and dominance pruning (GEPA, arXiv 2507.19457).

For each pareto row the frontier holds the candidates tied for the best score on it. A candidate is dominated
when every row it leads is also led by another surviving candidate; dominated candidates are removed one at a time,
lowest mean score first, until none is left. Every iteration order is fixed (pool order), so the result is a pure
function of the scores.
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
    """Remove dominated candidates from every front (the reference algorithm, with a fixed order)."""
    members = [cid for cid in order if any(cid in front for front in fronts.values())]
    rank = {cid: i for i, cid in enumerate(order)}
    members.sort(key=lambda cid: (mean_scores[cid], rank[cid]))
    dominated: set[str] = set()
    changed = True
    while changed:
        changed = False
        for cid in members:
            if cid in dominated:
                continue
            others = {m for m in members if m != cid and m not in dominated}
            if _is_dominated(cid, others, fronts):
                dominated.add(cid)
                changed = True
                break
    return {row: tuple(c for c in front if c not in dominated) for row, front in fronts.items()}


def _is_dominated(cid: str, others: set[str], fronts: Fronts) -> bool:
    led = [front for front in fronts.values() if cid in front]
    if not led:
        return False
    return all(any(other in others for other in front) for front in led)


def lead_counts(fronts: Fronts, order: Sequence[str]) -> dict[str, int]:
    """Candidate -> the number of rows it leads, in pool order (candidates leading none are left out)."""
    counts = {cid: 0 for cid in order}
    for front in fronts.values():
        for cid in front:
            counts[cid] += 1
    return {cid: n for cid, n in counts.items() if n > 0}
