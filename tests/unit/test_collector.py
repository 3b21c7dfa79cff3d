"""The collector's pace while runs execute: raised during runs, restored after the last one, never lowered."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from synth_opt.run.gc_pacing import YOUNG_THRESHOLD, run_paced_collector


@pytest.fixture(autouse=True)
def default_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_a_run_raises_the_young_threshold_and_restores_it() -> None:
    with run_paced_collector():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_runs_restore_only_when_the_last_ends() -> None:
    first, second = run_paced_collector(), run_paced_collector()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # the second run still executes
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_set_by_the_application_is_kept() -> None:
    gc.set_threshold(50_000, 10, 10)
    with run_paced_collector():
        assert gc.get_threshold()[0] == 50_000
    assert gc.get_threshold()[0] == 50_000


def test_a_failing_run_restores_the_thresholds() -> None:
    with pytest.raises(RuntimeError), run_paced_collector():
        raise RuntimeError("boom")
    assert gc.get_threshold() == (700, 10, 10)
