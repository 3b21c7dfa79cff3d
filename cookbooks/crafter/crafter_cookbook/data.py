"""The Crafter task rows: one row per world seed, train and test seeds disjoint.

A row is ``{"task_id": "train-007", "world_seed": 10007}``: ``crafter.Env(seed=world_seed)``'s first episode. Train
seeds are ``10000 + i`` and test (heldout) seeds ``20000 + i`` for ``i`` in ``0..COUNT-1``, so no heldout world is
a train world (SPEC §13). Ids are listed in index order; ``{count = N}`` in a config takes the first N.
"""

from __future__ import annotations

__all__ = ["COUNT", "SEED_BASE", "SPLITS", "row", "rows"]

COUNT = 200
SEED_BASE = {"train": 10_000, "test": 20_000}
SPLITS = ("train", "test")


def row(split: str, index: int) -> dict[str, object]:
    return {"task_id": f"{split}-{index:03d}", "world_seed": SEED_BASE[split] + index, "split": split}


def rows(split: str) -> list[dict[str, object]]:
    if split not in SEED_BASE:
        raise KeyError(split)
    return [row(split, index) for index in range(COUNT)]
