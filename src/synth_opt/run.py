"""GepaRun: builds the actor graph from a config, runs it, and writes the run's artifacts.

A run directory ``<output_dir>/<run_id>/`` holds ``events.jsonl``, ``result_manifest.json``,
``candidate_registry.json`` and ``frontier.json``; ``<output_dir>/run_registry.jsonl`` gets one line when the
run starts and one when it ends, and ``<output_dir>/latest`` points at the newest run directory.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream

from synth_opt.actors import SearchOutcome, Supervisor, SupervisorSettings, propose_handler, rollout_handler
from synth_opt.cache import CachedContainer, CachedProposer, CacheStore
from synth_opt.cancel import CancelHandle
from synth_opt.chart import write_score_chart
from synth_opt.config import CountSelection, GepaConfig, IdSelection, load_config
from synth_opt.container.client import ContainerClient
from synth_opt.container.launch import launched_container
from synth_opt.container.wire import TasksetInfo
from synth_opt.errors import (
    ConfigError,
    RunCancelledError,
    RunStateError,
    SynthOptimizerError,
    collapse_exception_group,
)
from synth_opt.events import Event, EventBus, utc_now
from synth_opt.events.normalize import read_feed, write_normalized_feed
from synth_opt.gepa import BudgetLedger, Estimates, GepaState, Limits, SearchSettings, mean_score
from synth_opt.lanes import lane_plan
from synth_opt.pipeline import PipelineStats, run_pipeline
from synth_opt.proposers.base import Proposer
from synth_opt.proposers.factory import build_proposer
from synth_opt.result import GepaResult, artifact_ref
from synth_opt.resume import ResumePoint, latest_checkpoint, prepare_resume
from synth_opt.workspace import finalize_workspace, run_workspace_writer

__all__ = ["GepaRun", "RunObserver", "RunView"]

CHECKPOINT_INTERVAL_SECONDS = 0.5
_TRAIN_ROLLOUT: dict[str, Any] = {"type": "rollout.completed", "fields": {"stage": "train"}}
_HELDOUT_ROLLOUT: dict[str, Any] = {"type": "rollout.completed", "fields": {"stage": "heldout"}}
_CHART_TYPES = frozenset(
    {
        "run.state",
        "seed.scored",
        "proposal.created",
        "candidate.scored",
        "acceptance.decided",
        "candidate.status",
        "frontier.updated",
        "search.stopped",
        "heldout.scored",
        "run.finished",
    }
)


@dataclass(slots=True)
class RunView:
    """What an observer (the progress display) may read while the run goes."""

    run_id: str
    config: GepaConfig | None
    stats: PipelineStats
    train_cap: int = 0
    heldout_cap: int = 0
    started_monotonic: float = 0.0


RunObserver = Callable[[MemoryObjectReceiveStream[Event], RunView], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class _Seams:
    container_transport: httpx.AsyncBaseTransport | None = None
    proposer: Proposer | None = None
    workspace: bool = True


@dataclass(frozen=True, slots=True)
class _Dataset:
    train_ids: list[str]
    pareto_ids: list[str]
    minibatch_ids: list[str]
    heldout_ids: list[str]
    rows: dict[str, dict[str, Any]]


class GepaRun:
    """One optimization run of one config.

    ``execute()`` is synchronous; callers already inside an event loop use ``await execute_async()``.
    Re-running a config whose run directory holds a finished run returns the stored result without calling out;
    an unfinished run directory is an error that names ``fresh`` (``--fresh``); ``fresh=True`` replaces it.
    """

    def __init__(
        self,
        config: GepaConfig,
        *,
        fresh: bool = False,
        observer: RunObserver | None = None,
        container_transport: httpx.AsyncBaseTransport | None = None,
        proposer: Proposer | None = None,
        workspace: bool = True,
    ) -> None:
        """``container_transport`` and ``proposer`` are seams for tests and embedding: an httpx transport that
        answers for ``[container].url`` (nothing is launched), and a proposer used instead of ``[proposer]``.
        ``workspace=False`` writes no ``workspace.sqlite`` (and so keeps no checkpoints: such a run cannot resume)."""
        self.config = config
        self.fresh = fresh
        self.observer = observer
        self.seams = _Seams(container_transport, proposer, workspace)
        self.cancel_handle = CancelHandle()

    def cancel(self, reason: str = "cancelled by the caller") -> None:
        """Stop the run from the event loop it runs in; it raises RunCancelledError after cleaning up."""
        self.cancel_handle.cancel(reason)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], *, fresh: bool = False) -> GepaRun:
        return cls(load_config(path), fresh=fresh)

    @property
    def run_id(self) -> str:
        return self.config.effective_run_id()

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir()

    def execute(self) -> GepaResult:
        return anyio.run(self.execute_async)

    async def execute_async(self) -> GepaResult:
        prepared = self._prepare_run_dir()
        if isinstance(prepared, GepaResult):
            return prepared
        return await _Execution(self.config, self.observer, self.seams, self.cancel_handle, prepared).run()

    def _prepare_run_dir(self) -> GepaResult | ResumePoint | None:
        """A finished run's stored result, the checkpoint to resume an unfinished one from, or None (fresh)."""
        run_dir = self.run_dir
        manifest = run_dir / "result_manifest.json"
        if run_dir.exists() and not self.fresh:
            if manifest.exists():
                stored = GepaResult.from_manifest(manifest)
                if stored.status == "completed":
                    return _replace_flag(stored)
            checkpoint = latest_checkpoint(run_dir)
            if checkpoint is None:
                raise RunStateError(
                    f"run directory {run_dir} holds an unfinished run with no checkpoint to resume from (it "
                    "stopped before its seed was scored, or its workspace is gone). Re-run with --fresh "
                    "(fresh=True) to replace it.",
                    run_dir=str(run_dir),
                )
            return prepare_resume(run_dir, checkpoint)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        return None


def _replace_flag(result: GepaResult) -> GepaResult:
    data = result.to_json()
    return GepaResult(**data, from_stored_result=True)


class _Execution:
    """Everything one fresh execution holds; its ``run`` is the whole lifecycle."""

    def __init__(
        self,
        config: GepaConfig,
        observer: RunObserver | None,
        seams: _Seams,
        cancel: CancelHandle,
        resume: ResumePoint | None = None,
    ) -> None:
        self.config = config
        self.resume = resume
        self.observer = observer
        self.seams = seams
        self.cancel = cancel
        self.supervisor: Supervisor | None = None
        self.cache: CacheStore | None = None
        self._pending_checkpoint: Callable[[], dict[str, Any] | None] | None = None
        self._last_checkpoint_at = 0.0
        self.run_id = config.effective_run_id()
        self.run_dir = config.run_dir()
        self.output_dir = config.output_dir
        self.feed_path = self.run_dir / "events.jsonl"
        self.registry_path = self.output_dir / "run_registry.jsonl"
        self.bus = EventBus(self.feed_path)
        if resume is not None:
            self.bus.sequence_number = resume.sequence_number
        self.workspace_db: Path | None = self.run_dir / "workspace.sqlite" if seams.workspace else None
        # subscribed before the first event, so the writer sees them all
        self.workspace_events = self.bus.subscribe(8192) if seams.workspace else None
        self.history: list[dict[str, str]] = []
        self.bus.on_event(self._track_state)
        # What the end of the run needs from the feed, kept as it goes so the feed is not parsed again: the
        # decision events (the normalized feed) and a compact view for the score chart.
        self.decisions: list[Event] = []
        self.chart_events: list[dict[str, Any]] = []
        if resume is not None:
            for event in read_feed(self.feed_path):
                self._collect(event)
        self.bus.on_event(self._collect)
        self.view = RunView(self.run_id, config, PipelineStats(), started_monotonic=time.monotonic())

    def _collect(self, event: Event) -> None:
        if event.type in ("rollout.completed", "rollout.degraded"):
            heldout = str(event.fields.get("stage", "")).startswith("heldout")
            self.chart_events.append(_HELDOUT_ROLLOUT if heldout else _TRAIN_ROLLOUT)
            return
        if event.is_decision:
            self.decisions.append(event)
        if event.type in _CHART_TYPES:
            self.chart_events.append({"type": event.type, "fields": event.fields})

    def _track_state(self, event: Event) -> None:
        if event.type == "run.state":
            self.history.append({"state": str(event.fields["state"]), "at": event.ts})

    def _state(self, name: str, message: str | None = None, **fields: Any) -> None:
        self.bus.emit("run.state", message or f"state: {name}", lane="supervisor", state=name, **fields)

    async def run(self) -> GepaResult:
        self._point_latest()
        if self.resume is None:
            self._registry_line("started")
            self._state("created", run_id=self.run_id, config_path=str(self.config.source_path))
            self.bus.emit(
                "run.config",
                f"config digest {self.config.decision_digest()}",
                digest=self.config.decision_digest(),
                decision_config=self.config.decision_config(),
            )
        else:
            await self._finalize_workspace()
            self._registry_line("resumed", commits=self.resume.snapshot["commits"])
            self._state("resumed", commits=self.resume.snapshot["commits"])
            self._emit_checkpoint(self.resume.snapshot)
        observing = None
        if self.observer is not None:  # an observer may name the only event types it reads
            observing = self.bus.subscribe(4096, types=getattr(self.observer, "event_types", None))
        result: GepaResult | None = None
        try:
            self.cache = CacheStore(
                self.config.cache_path(),
                mode=self.config.cache.mode,
                namespace=self.config.cache_namespace(),
                bus=self.bus,
            )
            async with anyio.create_task_group() as tg:
                self.cancel.attach(tg.cancel_scope)
                if self.workspace_db is not None and self.workspace_events is not None:
                    tg.start_soon(
                        functools.partial(
                            run_workspace_writer, self.workspace_db, self.workspace_events, run_id=self.run_id
                        )
                    )
                if observing is not None and self.observer is not None:
                    tg.start_soon(self.observer, observing, self.view)
                try:
                    result = self._write_result(await self._search(), status="completed")
                finally:
                    self._flush_checkpoint()
                    self.bus.close_subscribers()
                    self.cancel.detach()
            if result is None:
                raise RunCancelledError(
                    f"run {self.run_id} was cancelled ({self.cancel.reason}); committed results are kept in "
                    f"{self.run_dir}",
                    run_dir=str(self.run_dir),
                )
        except BaseExceptionGroup as group:
            raise self._failed(collapse_exception_group(group)) from None
        except BaseException as error:
            raise self._failed(error) from None
        finally:
            if self.cache is not None:
                self.cache.close()
            self.bus.close()
            await self._finalize_workspace()
        return result

    async def _finalize_workspace(self) -> None:
        """Back-fill whatever the live writer missed from ``events.jsonl`` (shielded: it runs on the way out)."""
        if self.workspace_db is None:
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                functools.partial(
                    finalize_workspace, self.workspace_db, self.feed_path, run_id=self.run_id, manifest=None
                )
            )

    def _failed(self, error: BaseException) -> BaseException:
        """Record why the run ended early, keep everything committed so far, and hand the error back."""
        cancelled = isinstance(error, KeyboardInterrupt | anyio.get_cancelled_exc_class() | RunCancelledError)
        status = "cancelled" if cancelled else "failed"
        reason = error.one_line() if isinstance(error, SynthOptimizerError) else f"{type(error).__name__}: {error}"
        if self.supervisor is not None and self.supervisor.state.pool:
            self.supervisor.release_reservations()
            outcome = self.supervisor.outcome(stop_reason="cancelled" if cancelled else "failed")
            self._write_result(outcome, status=status, error=reason)
        else:
            self._state(status, error=reason)
            self._registry_line(status, error=reason)
        (self.run_dir / "run_status.json").write_text(
            json.dumps({"status": status, "error": reason, "state_history": self.history}, indent=2) + "\n"
        )
        return error

    async def _search(self) -> SearchOutcome:
        config = self.config
        async with AsyncExitStack() as stack:
            store = self.cache
            assert store is not None
            if store.mode == "readonly":
                url = config.container.url or "readonly-cache://container"
                client = CachedContainer(store, None, url=url)
                self._state("replaying_from_cache", cache_path=str(store.path))
            else:
                url = await stack.enter_async_context(self._container())
                live = await stack.enter_async_context(
                    ContainerClient(
                        url,
                        headers=config.container.headers,
                        bearer_token=self._bearer_token(),
                        request_timeout_seconds=config.container.request_timeout_seconds,
                        transport=self.seams.container_transport,
                    )
                )
                client = CachedContainer(store, live, url=url)
                self._state("connecting", container_url=url)
            await client.health()
            if await client.metadata() is None:
                self.bus.emit(
                    "container.warning",
                    f"{url} has no /metadata route; using it as is without a contract check",
                    lane="rollout",
                )
            program = await client.program()
            task_info = await client.task_info()
            dataset = await self._dataset(client, await client.taskset(), announce=self.resume is None)
            seed = dict(config.seed_candidate or program.seed_candidate)
            modules = tuple(config.candidate.target_modules or program.target_modules)
            missing = [m for m in modules if m not in seed]
            if missing:
                raise ConfigError(
                    f"{config.source_path}: candidate.target_modules: {missing[0]!r} is not a field of the seed "
                    f"candidate (fields: {', '.join(sorted(seed))}); name an existing field"
                )
            section = config.proposer
            proposer = CachedProposer(
                store,
                section.backend,
                {"model": section.model, "proposals_per_call": section.proposals_per_call, "config": section.config},
                lambda: (
                    self.seams.proposer
                    or build_proposer(
                        section.model_copy(update={"command": with_python(section.command)}), run_dir=self.run_dir
                    )
                ),
            )
            stack.push_async_callback(proposer.aclose)
            plan = lane_plan(
                config.gepa.pipeline.mode,
                max_in_flight=config.effective_max_in_flight(),
                **config.gepa.pipeline.workers.model_dump(),
            )
            state = GepaState(
                SearchSettings(
                    seed=config.run.seed,
                    modules=modules,
                    minibatch_size=config.gepa.minibatch_size,
                    selector=config.gepa.candidate_selector,
                    acceptance=config.gepa.acceptance,
                    frontier_type=config.gepa.frontier_type,
                    use_merge=config.gepa.use_merge,
                    max_merge_invocations=config.gepa.max_merge_invocations,
                ),
                dataset.pareto_ids,
                dataset.minibatch_ids,
            )
            ledger = self._ledger(len(dataset.heldout_ids))
            self.view.train_cap = ledger.limits.train_rollouts
            self.view.heldout_cap = ledger.limits.heldout_rollouts
            supervisor = Supervisor(
                state=state,
                ledger=ledger,
                bus=self.bus,
                settings=SupervisorSettings(
                    run_id=self.run_id,
                    max_in_flight=plan.max_in_flight,
                    heldout_ids=tuple(dataset.heldout_ids),
                    rows=dataset.rows,
                    task_info=task_info,
                    proposals_per_call=config.proposer.proposals_per_call,
                    failure_tolerance=config.gepa.rollout_failure_rate_tolerance,
                    no_improvement_iterations=config.gepa.no_improvement_iterations,
                    score_threshold=config.gepa.score_threshold,
                    staleness_policy=config.gepa.pipeline.staleness_policy,
                    delta_max=config.gepa.pipeline.delta_max,
                ),
                seed=seed,
                checkpoint=self._offer_checkpoint if self.workspace_db is not None else None,
            )
            if self.resume is not None:
                supervisor.resume(self.resume.snapshot, self.resume.records, self.resume.registry)
            self.plan_json = plan.to_json()
            self.supervisor = supervisor
            policy = config.policy.model_dump(exclude_none=True)
            return await run_pipeline(
                plan=plan,
                supervisor=supervisor,
                rollout=rollout_handler(
                    functools.partial(
                        client.rollout,
                        poll_interval_seconds=config.gepa.rollout_poll_interval_ms / 1000,
                        async_timeout_seconds=config.gepa.rollout_async_timeout_seconds,
                    ),
                    bus=self.bus,
                    policy=policy,
                    submission_mode=config.gepa.rollout_submission_mode,
                    run_id=self.run_id,
                ),
                propose=propose_handler(proposer, bus=self.bus),
                stats=self.view.stats,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def _container(self) -> AsyncIterator[str]:
        section = self.config.container
        if section.command and self.seams.container_transport is None:
            self._state("launching_container", command=section.command)
            async with launched_container(
                with_python(section.command),
                cwd=section.cwd,
                env=section.env,
                startup_timeout_seconds=section.startup_timeout_seconds,
                url=section.url,
                log_path=self.run_dir / "container.log",
            ) as launched:
                self.bus.emit(
                    "container.launched",
                    f"container started at {launched.url} (pid {launched.pid})",
                    lane="rollout",
                    url=launched.url,
                    pid=launched.pid,
                )
                yield launched.url
        else:
            if section.url is None:
                raise ConfigError(f"{self.config.source_path}: container.url: a container transport needs a url")
            yield section.url

    def _bearer_token(self) -> str | None:
        name = self.config.container.auth_bearer_env
        if name is None:
            return None
        token = os.environ.get(name)
        if not token:
            raise ConfigError(
                f"{self.config.source_path}: container.auth_bearer_env: environment variable {name} is not set; "
                "export it or remove auth_bearer_env"
            )
        return token

    async def _dataset(self, client: CachedContainer, taskset: TasksetInfo, *, announce: bool) -> _Dataset:
        ds, source = self.config.dataset, self.config.source_path
        warning = taskset.metadata.get("warning")
        if warning:
            self.bus.emit("container.warning", str(warning), lane="rollout")
        train = _resolve(ds.train_ids, taskset, ds.train_split)
        pareto = _resolve(ds.pareto_ids, taskset, ds.train_split) if ds.pareto_ids is not None else train
        minibatch = _resolve(ds.minibatch_ids, taskset, ds.train_split) if ds.minibatch_ids is not None else train
        heldout = _resolve(ds.heldout_ids, taskset, ds.heldout_split)
        for key, selection, ids in (("train_ids", ds.train_ids, train), ("heldout_ids", ds.heldout_ids, heldout)):
            if isinstance(selection, CountSelection) and len(ids) < selection.count:
                self.bus.emit(
                    "container.warning",
                    f"dataset.{key} asks for {selection.count} ids but the container lists only {len(ids)}",
                    lane="rollout",
                )
        train_set = set(train)
        for key, ids in (("pareto_ids", pareto), ("minibatch_ids", minibatch)):
            outside = [i for i in ids if i not in train_set]
            if outside:
                raise ConfigError(
                    f"{source}: dataset.{key}: id {outside[0]!r} is not in dataset.train_ids; "
                    f"{key} must be a subset of train_ids"
                )
        if not train:
            raise ConfigError(f"{source}: dataset.train_ids: the container lists no ids for split {ds.train_split!r}")
        rows: dict[str, dict[str, Any]] = {}
        for split, ids in ((ds.train_split, train), (ds.heldout_split, heldout)):
            for row_id, row in zip(ids, await client.tasks(split, ids), strict=True):
                rows[row_id] = row
        if announce:
            self.bus.emit(
                "dataset.resolved",
                f"{len(train)} train ids ({len(pareto)} pareto, {len(minibatch)} minibatch), {len(heldout)} heldout ids"
                + (f"; data source: {taskset.metadata['data_source']}" if "data_source" in taskset.metadata else ""),
                train_ids=train,
                pareto_ids=pareto,
                minibatch_ids=minibatch,
                heldout_ids=heldout,
            )
        return _Dataset(train, pareto, minibatch, heldout, rows)

    def _ledger(self, n_heldout: int) -> BudgetLedger:
        g = self.config.gepa
        limits = Limits(
            train_rollouts=self.config.train_cap(n_heldout),
            heldout_rollouts=self.config.heldout_cap(n_heldout),
            total_rollouts=self.config.total_cap(),
            cost_usd=g.max_cost_usd if g.max_cost_usd > 0 else None,
            total_tokens=g.max_total_tokens,
            time_seconds=g.max_time_seconds,
            train_cap_key="max_train_rollouts" if g.max_train_rollouts is not None else "max_total_rollouts",
        )
        estimates = Estimates(
            proposer_cost_usd=g.proposer_estimated_cost_usd or 0.0,
            proposer_tokens=g.proposer_estimated_tokens or 0,
            proposer_seconds=g.proposer_estimated_seconds or 0.0,
            rollout_cost_usd=g.rollout_estimated_cost_usd or 0.0,
            rollout_tokens=g.rollout_estimated_tokens or 0,
            rollout_seconds=g.rollout_estimated_seconds or 0.0,
        )
        return BudgetLedger(limits, estimates)

    # -- artifacts ------------------------------------------------------------------------------------------

    def _write_result(self, outcome: SearchOutcome, *, status: str, error: str | None = None) -> GepaResult:
        seed, best = outcome.seed, outcome.best
        heldout = outcome.heldout_scores
        registry_path = self.run_dir / "candidate_registry.json"
        frontier_path = self.run_dir / "frontier.json"
        manifest_path = self.run_dir / "result_manifest.json"
        _write_json(registry_path, {"run_id": self.run_id, "candidates": outcome.registry})
        assert self.supervisor is not None
        state = self.supervisor.state
        fronts = state.fronts()
        _write_json(
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
        assert self.cache is not None
        self.cache.flush()
        _write_json(profile_path, self.cache.profile())
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
            },
            state_history=list(self.history),
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
            overrides_applied=dict(self.config.overrides_applied),
        )
        manifest = {
            **result.to_json(),
            "error": error,
            "pipeline": self.plan_json,
            "config_path": str(self.config.source_path),
        }
        _write_json(manifest_path, manifest)
        self._registry_line(status, stop_reason=outcome.stop_reason, best_candidate_id=best.candidate_id, error=error)
        return result

    def _emit_finished(self, outcome: SearchOutcome, *, status: str, error: str | None) -> None:
        self.bus.emit(
            "run.finished",
            f"stop reason {outcome.stop_reason}; best {outcome.best.candidate_id}",
            stop_reason=outcome.stop_reason,
            best_candidate_id=outcome.best.candidate_id,
            seed_candidate_id=outcome.seed.candidate_id,
            best_train_score=outcome.best.mean,
            seed_train_score=outcome.seed.mean,
        )
        self._state(status, stop_reason=outcome.stop_reason, error=error)

    # -- checkpoints --------------------------------------------------------------------------------------------

    def _offer_checkpoint(self, take: Callable[[], dict[str, Any] | None]) -> None:
        """The supervisor offers a checkpoint after every commit; one is taken and persisted at most every
        CHECKPOINT_INTERVAL_SECONDS (and at the end), since resuming from any of them is exact."""
        self._pending_checkpoint = take
        if time.monotonic() - self._last_checkpoint_at >= CHECKPOINT_INTERVAL_SECONDS:
            self._flush_checkpoint()

    def _flush_checkpoint(self) -> None:
        if self._pending_checkpoint is not None:
            snapshot = self._pending_checkpoint()
            self._pending_checkpoint = None
            self._last_checkpoint_at = time.monotonic()
            if snapshot is not None:
                self._emit_checkpoint(snapshot)

    def _emit_checkpoint(self, snapshot: dict[str, Any]) -> None:
        self.bus.emit(
            "checkpoint.written",
            f"checkpoint after {snapshot['commits']} commits",
            lane="supervisor",
            commits=snapshot["commits"],
            generation=snapshot["commits"],
            best_candidate_id=snapshot.get("best_candidate_id"),
            candidate_count=snapshot.get("pool_size"),
            payload=snapshot,
        )

    def _registry_line(self, status: str, **fields: Any) -> None:
        line = {
            "run_id": self.run_id,
            "status": status,
            "at": utc_now(),
            "run_dir": str(self.run_dir),
            **fields,
        }
        with self.registry_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")

    def _point_latest(self) -> None:
        latest = self.output_dir / "latest"
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(self.run_id, target_is_directory=True)


def with_python(command: list[str]) -> list[str]:
    """``{python}`` in a command is this interpreter, so cookbook programs run in synth_opt's own environment."""
    return [sys.executable if part == "{python}" else part for part in command]


def _resolve(selection: IdSelection, taskset: TasksetInfo, split: str) -> list[str]:
    if isinstance(selection, CountSelection):
        return taskset.first_ids(split, selection.count)
    return list(selection)


def _heldout_mean(heldout: dict[str, dict[str, float]], cid: str) -> float | None:
    scores = heldout.get(cid)
    return None if scores is None else mean_score(scores)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
