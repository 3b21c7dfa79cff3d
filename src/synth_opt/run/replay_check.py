"""The three-run acceptance of a config: fresh, cached (``readwrite``, all hits) and ``readonly`` replay.

Each run has its own run directory (``<run_id>-fresh``, ``-cached``, ``-readonly``) and re-executes every decision;
they share one cache file that the fresh run starts empty, ``<run_id>-acceptance/cache.sqlite``. That directory is
locked (:class:`~synth_opt.dir_lock.RunDirLock`) for the whole acceptance, before the cache is emptied, so a second
acceptance of the config fails with ``run_locked`` and leaves the first one's cache alone. The acceptance holds when
the three normalized feeds are identical, the cached run missed nothing, and the readonly run called nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from synth_opt.config import GepaConfig
from synth_opt.dir_lock import RunDirLock
from synth_opt.events.compare import FeedComparison, compare_feeds
from synth_opt.result import GepaResult
from synth_opt.run import GepaRun

__all__ = ["AcceptanceReport", "accept_config"]

RUNS = (("fresh", "readwrite"), ("cached", "readwrite"), ("readonly", "readonly"))


@dataclass(slots=True)
class AcceptanceReport:
    results: dict[str, GepaResult] = field(default_factory=dict)
    comparisons: dict[str, FeedComparison] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


async def accept_config(config: GepaConfig) -> AcceptanceReport:
    base_id = config.effective_run_id()
    with RunDirLock(config.output_dir / f"{base_id}-acceptance") as lock:
        return await _accept(config, base_id, lock.run_dir / "cache.sqlite")


async def _accept(config: GepaConfig, base_id: str, cache_path: Path) -> AcceptanceReport:
    report = AcceptanceReport()
    _remove_cache(cache_path)
    for label, mode in RUNS:
        run_config = config.model_copy(
            update={
                "run": config.run.model_copy(update={"run_id": f"{base_id}-{label}"}),
                "cache": config.cache.model_copy(update={"mode": mode, "path": cache_path}),
            }
        )
        report.results[label] = await GepaRun(run_config, fresh=True).execute_async()
    fresh = report.results["fresh"]
    for label in ("cached", "readonly"):
        other = report.results[label]
        assert fresh.normalized_event_feed_path is not None and other.normalized_event_feed_path is not None
        comparison = compare_feeds(Path(fresh.normalized_event_feed_path), Path(other.normalized_event_feed_path))
        report.comparisons[label] = comparison
        if not comparison.equal:
            report.problems.append(
                f"the {label} feed differs from the fresh one in {comparison.differing} line(s), first at line "
                f"{comparison.first_difference}"
            )
    problem = _cached_run_problem(report.results["cached"].cache_profile_path)
    if problem:
        report.problems.append(problem)
    return report


def _remove_cache(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _cached_run_problem(profile_path: str | None) -> str | None:
    if profile_path is None or not os.path.exists(profile_path):
        return "the cached run wrote no cache profile"
    data = json.loads(Path(profile_path).read_text())
    if data.get("misses", 0) or data.get("writes", 0) or not data.get("hits", 0):
        return f"the cached run had {data.get('hits')} hits, {data.get('misses')} misses, {data.get('writes')} writes"
    return None
