"""The heldout report: is the best candidate's heldout improvement over the seed real, or noise?

For the rows both were evaluated on, the per-row difference ``best - seed``:

- ``mean_diff`` with a 95% percentile bootstrap interval (``ci95_low``, ``ci95_high``): :data:`RESAMPLES` resamples
  of the rows with replacement from ``random.Random(seed)`` (the run's seed, so a replay gives the same interval);
  the bounds are the resampled means at ranks ``floor(0.025 B)`` and ``ceil(0.975 B) - 1`` of the sorted ``B``;
- ``wins``, ``ties``, ``losses``: rows where the best scores higher, the same, lower;
- ``p_value``: the exact two-sided sign test over the rows that are not tied (1.0 when all are):
  ``min(1, 2 * P[X <= min(wins, losses)])`` for ``X ~ Binomial(wins + losses, 1/2)``;
- ``train_gain`` (best - seed on the pareto rows) and ``heldout_gain`` (the mean difference); ``overfit_flag``
  when the pareto gain exceeds the heldout gain by more than :data:`OVERFIT_MARGIN` and by more than half the
  pareto gain.

Pure: no I/O, one seeded generator.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

__all__ = ["OVERFIT_MARGIN", "RESAMPLES", "HeldoutReport", "describe_report", "heldout_report", "sign_test_p_value"]

RESAMPLES: Final = 10_000
OVERFIT_MARGIN: Final = 0.05


@dataclass(frozen=True, slots=True)
class HeldoutReport:
    n: int
    mean_diff: float
    ci95_low: float
    ci95_high: float
    p_value: float
    wins: int
    ties: int
    losses: int
    train_gain: float | None
    heldout_gain: float
    overfit_flag: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def describe_report(report: Mapping[str, Any]) -> str:
    """A report (:meth:`HeldoutReport.to_json`, as the manifest holds it) in one line, for the CLI and the browser."""
    return (
        f"{report['mean_diff']:+.4f} (95% CI {report['ci95_low']:+.4f} to {report['ci95_high']:+.4f}), "
        f"{report['wins']} better / {report['ties']} same / {report['losses']} worse of {report['n']} rows, "
        f"sign test p = {report['p_value']:.3g}"
    )


def sign_test_p_value(wins: int, losses: int) -> float:
    """The exact two-sided sign test's p-value for ``wins`` against ``losses`` (ties left out)."""
    trials = wins + losses
    if trials == 0:
        return 1.0
    tail = sum(math.comb(trials, k) for k in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / (1 << trials))  # exact integers, one division: no overflow however many rows


def heldout_report(
    seed_scores: Mapping[str, float],
    best_scores: Mapping[str, float],
    *,
    train_gain: float | None,
    seed: int,
    resamples: int = RESAMPLES,
) -> HeldoutReport | None:
    """The report over the rows both candidates were scored on (in the seed's row order); None when there are
    none."""
    rows = [row for row in seed_scores if row in best_scores]
    if not rows:
        return None
    diffs = [best_scores[row] - seed_scores[row] for row in rows]
    n = len(diffs)
    mean_diff = sum(diffs) / n
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    low = means[math.floor(0.025 * resamples)]
    high = means[math.ceil(0.975 * resamples) - 1]
    wins = sum(diff > 0 for diff in diffs)
    losses = sum(diff < 0 for diff in diffs)
    overfit = (
        train_gain is not None and train_gain - mean_diff > OVERFIT_MARGIN and train_gain - mean_diff > train_gain / 2
    )
    return HeldoutReport(
        n=n,
        mean_diff=mean_diff,
        ci95_low=low,
        ci95_high=high,
        p_value=sign_test_p_value(wins, losses),
        wins=wins,
        ties=n - wins - losses,
        losses=losses,
        train_gain=train_gain,
        heldout_gain=mean_diff,
        overfit_flag=overfit,
    )
