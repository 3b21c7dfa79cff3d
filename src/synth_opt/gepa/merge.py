"""Merge (GEPA's system-aware crossover): combine two frontier candidates that descend from a common ancestor.

For each module, the merged candidate takes the text of the parent that changed it relative to the ancestor; where
both changed it, the text of the parent with the higher mean score. The merged candidate is accepted when, on a
small subsample of pareto rows stratified by which parent does better, it scores at least as well as the better
parent; an accepted merge is then scored on every pareto row like any accepted child.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from synth_opt.gepa.candidates import CandidateRecord, candidate_id

__all__ = ["MergePlan", "ancestors", "plan_merge", "stratified_rows"]

SUBSAMPLE_PER_STRATUM = 2


@dataclass(frozen=True, slots=True)
class MergePlan:
    index: int
    parent_ids: tuple[str, str]
    ancestor_id: str
    payload: dict[str, str]
    rows: tuple[str, ...]
    pool_version: int

    @property
    def candidate_id(self) -> str:
        return candidate_id(self.payload)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "parent_ids": list(self.parent_ids),
            "ancestor_id": self.ancestor_id,
            "candidate_id": self.candidate_id,
            "rows": list(self.rows),
            "pool_version": self.pool_version,
        }


def ancestors(cid: str, by_id: Mapping[str, CandidateRecord]) -> set[str]:
    """Every candidate ``cid`` descends from (not itself)."""
    seen: set[str] = set()
    stack = list(by_id[cid].parent_ids)
    while stack:
        current = stack.pop()
        if current in seen or current not in by_id:
            continue
        seen.add(current)
        stack.extend(by_id[current].parent_ids)
    return seen


def _merged_payload(
    first: CandidateRecord, second: CandidateRecord, ancestor: CandidateRecord
) -> dict[str, str] | None:
    """Module by module; None when the merge would only reproduce one of the parents."""
    payload: dict[str, str] = {}
    for module, base in ancestor.payload.items():
        a, b = first.payload.get(module, base), second.payload.get(module, base)
        if a == base:
            payload[module] = b
        elif b == base:
            payload[module] = a
        else:
            payload[module] = a if first.mean >= second.mean else b
    if payload in (first.payload, second.payload):
        return None
    return payload


def stratified_rows(
    first: CandidateRecord, second: CandidateRecord, row_ids: Sequence[str], rng: random.Random
) -> tuple[str, ...]:
    """Up to two rows where each parent is better and two where they tie, topped up from the rest."""
    strata: list[list[str]] = [[], [], []]
    for row in row_ids:
        a, b = first.scores[row], second.scores[row]
        strata[0 if a > b else 1 if b > a else 2].append(row)
    chosen: list[str] = []
    for stratum in strata:
        rng.shuffle(stratum)
        chosen += stratum[:SUBSAMPLE_PER_STRATUM]
    wanted = min(3 * SUBSAMPLE_PER_STRATUM, len(row_ids))
    rest = [row for stratum in strata for row in stratum[SUBSAMPLE_PER_STRATUM:]]
    chosen += rest[: wanted - len(chosen)]
    order = {row: i for i, row in enumerate(row_ids)}
    return tuple(sorted(chosen, key=order.__getitem__))


def plan_merge(
    *,
    index: int,
    frontier: Sequence[str],
    by_id: Mapping[str, CandidateRecord],
    row_ids: Sequence[str],
    tried: set[str],
    pool_version: int,
    rng: random.Random,
) -> MergePlan | None:
    """Pick a pair of frontier candidates with a common ancestor that yields a new merged payload."""
    pairs = [(a, b) for i, a in enumerate(frontier) for b in frontier[i + 1 :]]
    rng.shuffle(pairs)
    for first_id, second_id in pairs:
        first_anc, second_anc = ancestors(first_id, by_id), ancestors(second_id, by_id)
        if first_id in second_anc or second_id in first_anc:
            continue
        common = sorted(first_anc & second_anc, key=lambda cid: by_id[cid].pool_index)
        for ancestor_id in reversed(common):  # the nearest common ancestor first
            ancestor = by_id[ancestor_id]
            first, second = by_id[first_id], by_id[second_id]
            if ancestor.mean > min(first.mean, second.mean):
                continue
            payload = _merged_payload(first, second, ancestor)
            if payload is None:
                continue
            merged_id = candidate_id(payload)
            if merged_id in by_id or merged_id in tried:
                continue
            rows = stratified_rows(first, second, row_ids, rng)
            return MergePlan(index, (first_id, second_id), ancestor_id, payload, rows, pool_version)
    return None
