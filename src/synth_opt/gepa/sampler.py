"""The epoch-shuffled minibatch sampler.

Each epoch is a fresh shuffle of the minibatch ids, padded to a whole number of batches with its own first ids;
batches are consecutive slices. The sampler owns no randomness: the caller's generator shuffles, so the state's
single generator decides everything.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EpochSampler"]


@dataclass(slots=True)
class EpochSampler:
    ids: tuple[str, ...]
    batch_size: int
    epoch: int = -1
    order: list[str] = field(default_factory=list)
    position: int = 0

    def __post_init__(self) -> None:
        if not self.ids:
            raise ValueError("the minibatch sampler needs at least one id")
        self.batch_size = min(self.batch_size, len(self.ids))

    def next_batch(self, rng: random.Random) -> list[str]:
        if self.position + self.batch_size > len(self.order):
            self._new_epoch(rng)
        batch = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return batch

    def _new_epoch(self, rng: random.Random) -> None:
        order = list(self.ids)
        rng.shuffle(order)
        remainder = len(order) % self.batch_size
        if remainder:
            order += order[: self.batch_size - remainder]
        self.order, self.position, self.epoch = order, 0, self.epoch + 1

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "order": self.order, "position": self.position}

    @classmethod
    def from_json(cls, ids: Sequence[str], batch_size: int, data: dict[str, Any]) -> EpochSampler:
        sampler = cls(tuple(ids), batch_size)
        sampler.epoch, sampler.order, sampler.position = data["epoch"], list(data["order"]), data["position"]
        return sampler
