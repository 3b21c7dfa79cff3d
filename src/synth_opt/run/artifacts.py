"""What a run writes about itself: the result files in its run directory, the run registry line, the ``latest``
link, and what the end of the run needs from the feed, kept as it goes so the feed is not parsed again.

A run directory holds ``result_manifest.json``, ``candidate_registry.json``, ``frontier.json``,
``events.normalized.jsonl``, ``score_chart.svg`` and ``cache_profile.json`` beside ``events.jsonl``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from synth_opt.actors import SearchOutcome
from synth_opt.cache import CacheStore
from synth_opt.config import GepaConfig
from synth_opt.errors import unwritable
from synth_opt.events import Event, EventBus, utc_now
from synth_opt.events.normalize import read_feed, write_normalized_feed
from synth_opt.events.types import (
    HELDOUT_STAGE,
    AcceptanceDecided,
    CandidateScored,
    CandidateStatus,
    FrontierUpdated,
    HeldoutScored,
    ProposalCreated,
    RolloutCompleted,
    RolloutDegraded,
    RunFinished,
    RunState,
    SearchStopped,
    SeedScored,
)
from synth_opt.gepa import GepaState, mean_score
from synth_opt.gepa.report import heldout_report
from synth_opt.logs import get_logger
from synth_opt.redact import redact_text
from synth_opt.result import GepaResult, artifact_ref
from synth_opt.run.lifecycle import StateHistory, emit_run_state
from synth_opt.run.resume import Discarded
from synth_opt.run.score_chart import HELDOUT_ROLLOUT, TRAIN_ROLLOUT, write_score_chart

__all__ = ["RunArtifacts", "write_json"]

_log = get_logger("synth_opt.run")

_ROLLOUT_TYPES = frozenset({RolloutCompleted.TYPE, RolloutDegraded.TYPE})
_CHART_TYPES = frozenset(
    cls.TYPE
    for cls in (
        RunState,
        SeedScored,
        ProposalCreated,
        CandidateScored,
        AcceptanceDecided,
        CandidateStatus,
        FrontierUpdated,
        SearchStopped,
        HeldoutScored,
        RunFinished,
    )
)


class RunArtifacts:
    """The files one run writes, and the feed digest they are written from.

    Built before the first event is emitted: it follows the bus from then on (and reads back what a resumed run
    has already fed)."""

    def __init__(
        self,
        config: GepaConfig,
        bus: EventBus,
        *,
        feed_path: Path,
        registry_path: Path,
        workspace_db: Path | None,
        resumed: bool,
    ) -> None:
        self.config = config
        self.bus = bus
        self.run_id = config.effective_run_id()
        self.run_dir = config.run_dir()
        self.output_dir = config.output_dir
        self.feed_path = feed_path
        self.registry_path = registry_path
        self.workspace_db = workspace_db
        self.history = StateHistory(bus)
        # What the end of the run needs from the feed, kept as it goes so the feed is not parsed again: the
        # decision events (the normalized feed) and a compact view for the score chart.
        self.decisions: list[Event] = []
        self.chart_events: list[dict[str, Any]] = []
        if resumed:
            for event in read_feed(feed_path):
                self._collect(event)
        bus.on_event(self._collect)

    def _collect(self, event: Event) -> None:
        if event.type in _ROLLOUT_TYPES:  # the type first: most events need no payload read here
            # one call per rollout: the stage is read as the feed holds it (HELDOUT_STAGE's text), not through a
            # payload built for this alone (that doubled this callback's share of the engine's time)
            heldout = str(event.fields.get("stage", "")).startswith(str(HELDOUT_STAGE))
            self.chart_events.append(HELDOUT_ROLLOUT if heldout else TRAIN_ROLLOUT)
            return
        if event.is_decision:
            self.decisions.append(event)
        if event.type in _CHART_TYPES:
            self.chart_events.append({"type": event.type, "fields": event.fields})

    def registry_line(self, status: str, **fields: Any) -> None:
        """Append one line to ``<output_dir>/run_registry.jsonl``."""
        line = {
            "run_id": self.run_id,
            "status": status,
            "at": utc_now(),
            "run_dir": str(self.run_dir),
            **fields,
        }
        with self.registry_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")

    def point_latest(self) -> None:
        """Point ``<output_dir>/latest`` at this run's directory: a new link renamed over the old one, so runs
        started at once in one output folder never find it half-made (the last rename wins)."""
        latest = self.output_dir / "latest"
        if latest.exists() and not latest.is_symlink():  # someone's own file or folder: never replaced
            _log.warning(
                "not pointing latest at this run: something else has that name",
                path=str(latest),
                kind="a folder" if latest.is_dir() else "a file",
            )
            return
        fresh = self.output_dir / f".latest-{os.getpid()}-{self.run_id}"
        fresh.unlink(missing_ok=True)
        fresh.symlink_to(self.run_id, target_is_directory=True)
        try:
            os.replace(fresh, latest)
        except IsADirectoryError:  # a real folder named latest, made meanwhile: left as it is
            fresh.unlink(missing_ok=True)

    def write_result(
        self,
        outcome: SearchOutcome,
        *,
        state: GepaState,
        cache: CacheStore,
        pipeline: dict[str, Any],
        status: str,
        error: str | None = None,
        discarded: Discarded = Discarded(),
    ) -> GepaResult:
        """Write every result file (announcing ``run.finished`` on the way) and the registry line; the result."""
        seed, best = outcome.seed, outcome.best
        heldout = outcome.heldout_scores
        registry_path = self.run_dir / "candidate_registry.json"
        frontier_path = self.run_dir / "frontier.json"
        manifest_path = self.run_dir / "result_manifest.json"
        write_json(registry_path, {"run_id": self.run_id, "candidates": outcome.registry})
        fronts = state.fronts()
        write_json(
            frontier_path,
            {
                "run_id": self.run_id,
                "pool_version": state.pool_version,
                "pareto_ids": list(state.pareto_ids),
                "fronts": {row: list(front) for row, front in fronts.items()},
                "members": sorted({cid for front in fronts.values() for cid in front}),
                "best_candidate_id": best.candidate_id,
                "mean_scores": state.means(),
            },
        )
        self._emit_finished(outcome, status=status, error=error)
        normalized_path = self.run_dir / "events.normalized.jsonl"
        write_normalized_feed(self.decisions, normalized_path)
        chart_path = write_score_chart(self.chart_events, self.run_dir / "score_chart.svg", title=f"GEPA {self.run_id}")
        profile_path = self.run_dir / "cache_profile.json"
        write_json(profile_path, cache.profile())
        usage_total = outcome.rollout_usage + outcome.proposer_usage
        refs = [
            artifact_ref(path, kind)
            for path, kind in (
                (self.feed_path, "event_feed"),
                (normalized_path, "normalized_event_feed"),
                (registry_path, "candidate_registry"),
                (frontier_path, "frontier"),
                (profile_path, "cache_profile"),
                (chart_path, "score_chart"),
            )
        ]
        if self.workspace_db is not None:
            refs.append({"path": str(self.workspace_db), "kind": "workspace_db", "sha256": None, "bytes": None})
        result = GepaResult(
            run_id=self.run_id,
            status=status,
            best_candidate=best.payload,
            best_candidate_id=best.candidate_id,
            seed_candidate_id=seed.candidate_id,
            manifest_path=str(manifest_path),
            event_feed_path=str(self.feed_path),
            normalized_event_feed_path=str(normalized_path),
            cache_profile_path=str(profile_path),
            candidate_registry_path=str(registry_path),
            frontier_path=str(frontier_path),
            run_registry_path=str(self.registry_path),
            workspace_db_path=None if self.workspace_db is None else str(self.workspace_db),
            artifact_refs=refs,
            cost_usd=usage_total.cost_usd,
            usage={
                "rollout": outcome.rollout_usage.to_dict(),
                "proposer": outcome.proposer_usage.to_dict(),
                "total": usage_total.to_dict(),
                "discarded": discarded.to_json(),
            },
            state_history=list(self.history.entries),
            seed_train_score=seed.mean,
            seed_heldout_score=_heldout_mean(heldout, seed.candidate_id),
            best_train_score=best.mean,
            best_heldout_score=_heldout_mean(heldout, best.candidate_id),
            rollouts_used={
                "train": outcome.rollouts_train,
                "heldout": outcome.rollouts_heldout,
                "total": outcome.rollouts_train + outcome.rollouts_heldout,
            },
            stop_reason=outcome.stop_reason,
            proposals=outcome.proposals,
            accepted=outcome.accepted,
            proposals_failed=outcome.proposals_failed,
            rollouts_reused={
                "train": outcome.reused_train,
                "heldout": outcome.reused_heldout,
                "total": outcome.reused_train + outcome.reused_heldout,
            },
            # the environment's values as applied, with a URL's password and query values masked (no secret)
            overrides_applied={name: redact_text(value) for name, value in self.config.overrides_applied.items()},
            heldout_report=self._heldout_report(outcome),
            error=error,
        )
        manifest = {
            **result.to_json(),
            "pipeline": pipeline,
            "config_path": str(self.config.source_path),
        }
        write_json(manifest_path, manifest)
        self.registry_line(status, stop_reason=outcome.stop_reason, best_candidate_id=best.candidate_id, error=error)
        return result

    def _heldout_report(self, outcome: SearchOutcome) -> dict[str, Any] | None:
        """Best against seed on the heldout rows (:mod:`synth_opt.gepa.report`), from the run's seed."""
        seed, best = outcome.seed, outcome.best
        seed_rows = outcome.heldout_scores.get(seed.candidate_id)
        best_rows = outcome.heldout_scores.get(best.candidate_id, seed_rows if best is seed else None)
        if not seed_rows or not best_rows:
            return None
        report = heldout_report(seed_rows, best_rows, train_gain=best.mean - seed.mean, seed=self.config.run.seed)
        return None if report is None else report.to_json()

    def _emit_finished(self, outcome: SearchOutcome, *, status: str, error: str | None) -> None:
        self.bus.emit(
            RunFinished(
                outcome.stop_reason,
                outcome.best.candidate_id,
                outcome.seed.candidate_id,
                outcome.best.mean,
                outcome.seed.mean,
            ),
            f"stop reason {outcome.stop_reason}; best {outcome.best.candidate_id}",
        )
        emit_run_state(self.bus, RunState(status, stop_reason=outcome.stop_reason, error=error))


def _heldout_mean(heldout: dict[str, dict[str, float]], cid: str) -> float | None:
    scores = heldout.get(cid)
    return None if scores is None else mean_score(scores)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically (a temporary file, then a rename). An OS error (a full disk)
    becomes a RunFailedError naming the file, with no temporary file left behind and the previous version intact."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise unwritable(path, error) from None
