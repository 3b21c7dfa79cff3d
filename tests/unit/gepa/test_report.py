"""The heldout report against values computed here another way: a candidate that wins on exactly k of n rows (and
ties on the rest) has a sign-test p-value equal to the share of the 2^k sign patterns at least as lopsided, and a
bootstrap interval within one row of the exact quantiles of its resampled mean, Binomial(n, k/n) / n."""

from __future__ import annotations

import itertools
import math

import pytest

from synth_opt.gepa.report import heldout_report, sign_test_p_value


def known_difference(k: int, n: int) -> tuple[dict[str, float], dict[str, float]]:
    seed = {str(row): 0.0 for row in range(n)}
    best = {str(row): 1.0 if row < k else 0.0 for row in range(n)}
    return seed, best


def enumerated_p_value(wins: int, losses: int) -> float:
    """Two-sided: the share of all sign patterns of the untied rows whose smaller side is no larger."""
    trials = wins + losses
    smaller = min(wins, losses)
    patterns = itertools.product((0, 1), repeat=trials)
    extreme = sum(1 for signs in patterns if min(sum(signs), trials - sum(signs)) <= smaller)
    return min(1.0, extreme / 2**trials)


def binomial_quantile(n: int, p: float, q: float) -> float:
    """The smallest x / n with P[Binomial(n, p) <= x] >= q."""
    total = 0.0
    for x in range(n + 1):
        total += math.comb(n, x) * p**x * (1 - p) ** (n - x)
        if total >= q:
            return x / n
    return 1.0


@pytest.mark.parametrize(("k", "n"), [(12, 20), (7, 30), (3, 12), (0, 10)])
def test_a_candidate_that_wins_k_of_n_rows(k: int, n: int) -> None:
    seed, best = known_difference(k, n)
    report = heldout_report(seed, best, train_gain=0.2, seed=7)
    assert report is not None
    assert (report.n, report.wins, report.ties, report.losses) == (n, k, n - k, 0)
    assert report.mean_diff == pytest.approx(k / n) and report.heldout_gain == report.mean_diff
    assert report.p_value == pytest.approx(enumerated_p_value(k, 0))
    step = 1 / n
    assert abs(report.ci95_low - binomial_quantile(n, k / n, 0.025)) <= step + 1e-12
    assert abs(report.ci95_high - binomial_quantile(n, k / n, 0.975)) <= step + 1e-12
    assert report.ci95_low <= report.mean_diff <= report.ci95_high


def test_the_sign_test_with_losses_and_ties_ignores_the_ties() -> None:
    seed = {str(row): 0.5 for row in range(14)}
    best = {**seed, **{str(row): 1.0 for row in range(8)}, **{str(row): 0.0 for row in range(8, 11)}}
    report = heldout_report(seed, best, train_gain=None, seed=0)
    assert report is not None and (report.wins, report.losses, report.ties) == (8, 3, 3)
    assert report.p_value == pytest.approx(enumerated_p_value(8, 3))
    assert sign_test_p_value(0, 0) == 1.0
    assert 0.0 <= sign_test_p_value(2000, 100) < 1e-300  # thousands of rows: no overflow


def test_the_interval_comes_from_the_run_seed_only() -> None:
    seed, best = known_difference(9, 25)
    best["24"] = -1.0  # one loss, so resamples vary in both directions
    same = [heldout_report(seed, best, train_gain=None, seed=3) for _ in range(2)]
    assert same[0] == same[1]
    other = heldout_report(seed, best, train_gain=None, seed=4)
    assert other is not None and other.mean_diff == same[0].mean_diff  # type: ignore[union-attr]


def test_overfit_is_a_pareto_gain_far_above_the_heldout_gain() -> None:
    seed, best = known_difference(2, 20)  # heldout gain 0.10
    flagged = heldout_report(seed, best, train_gain=0.30, seed=0)
    close = heldout_report(seed, best, train_gain=0.14, seed=0)  # within 0.05
    small = heldout_report(*known_difference(8, 20), train_gain=0.46, seed=0)  # 0.06 above, not half of 0.46
    assert flagged is not None and flagged.overfit_flag
    assert close is not None and not close.overfit_flag
    assert small is not None and not small.overfit_flag
    assert heldout_report({}, {}, train_gain=None, seed=0) is None
