"""The stop rules checked after every commit: a score threshold, and too many commits without improvement.

(The budget's own stop, when the next proposal does not fit, is the planner's: see the supervisor.)
"""

from __future__ import annotations

from synth_opt.actors.records import SupervisorSettings
from synth_opt.gepa import CandidateRecord

__all__ = ["commit_stop_rule"]


def commit_stop_rule(
    settings: SupervisorSettings, best: CandidateRecord, commits_since_improvement: int
) -> tuple[str, str] | None:
    """The first rule that stops the search after a commit, as (stop reason, message), or None."""
    if settings.score_threshold is not None and best.mean >= settings.score_threshold:
        return "score_threshold", f"best mean {best.mean:.4f} reached score_threshold {settings.score_threshold}"
    limit = settings.no_improvement_iterations
    if limit is not None and commits_since_improvement >= limit:
        return "no_improvement_iterations", f"no improvement in {limit} proposals"
    return None
