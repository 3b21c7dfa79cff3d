"""Pipeline presets: how many workers each lane runs and how many candidates may be in flight.

``sync_serial`` is the same graph as ``async_pipelined`` with one worker per lane and one candidate in flight;
there is no second code path.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LanePlan", "lane_plan"]


@dataclass(frozen=True, slots=True)
class LanePlan:
    mode: str
    propose_workers: int
    rollout_workers: int
    evaluate_workers: int
    max_in_flight: int

    @property
    def job_capacity(self) -> int:
        """Buffer of the rollout and propose inboxes."""
        return max(2 * self.rollout_workers, 2)

    @property
    def result_capacity(self) -> int:
        """Buffer of the supervisor's inbox: room for every batch and proposer result that can be outstanding,
        so the lanes never block on the supervisor while it blocks on them."""
        return 2 * self.max_in_flight + 4

    def to_json(self) -> dict[str, int | str]:
        return {
            "mode": self.mode,
            "propose": self.propose_workers,
            "rollout": self.rollout_workers,
            "evaluate": self.evaluate_workers,
            "max_in_flight_candidates": self.max_in_flight,
        }


def lane_plan(mode: str, *, propose: int, rollout: int, evaluate: int, max_in_flight: int) -> LanePlan:
    if mode == "sync_serial":
        return LanePlan(mode, 1, 1, 1, 1)
    if mode == "async_pipelined":
        return LanePlan(mode, propose, rollout, evaluate, max_in_flight)
    raise ValueError(f"unknown pipeline mode {mode!r}; use sync_serial or async_pipelined")
