"""GepaRun: builds the actor graph from a config, runs it, and writes the run's artifacts.

A run directory ``<output_dir>/<run_id>/`` holds ``events.jsonl``, ``result_manifest.json``,
``candidate_registry.json`` and ``frontier.json``; ``<output_dir>/run_registry.jsonl`` gets one line when the
run starts and one when it ends, and ``<output_dir>/latest`` points at the newest run directory.

This module holds the lifecycle; its parts live beside it: the container (:mod:`synth_opt.run.container`), the
dataset (:mod:`synth_opt.run.dataset`), the search's parts built from the config (:mod:`synth_opt.run.setup`),
checkpoints (:mod:`synth_opt.run.checkpoints`), the state events (:mod:`synth_opt.run.lifecycle`) and the result
files (:mod:`synth_opt.run.artifacts`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from synth_opt.actors import SearchOutcome, Supervisor, propose_handler, rollout_handler
from synth_opt.cache import CacheStore
from synth_opt.config import GepaConfig, load_config
from synth_opt.container.circuit import CircuitStats
from synth_opt.dir_lock import LOCK_FILE, RUN_MARKER, RunDirLock
from synth_opt.errors import (
    CacheMissError,
    ConfigError,
    RunCancelledError,
    RunFailedError,
    RunStateError,
    SynthOptimizerError,
    collapse_exception_group,
    file_failure,
)
from synth_opt.events import Event, EventBus
from synth_opt.events.types import RunConfig, RunDiscarded, RunState
from synth_opt.logs import get_logger
from synth_opt.pipeline import PipelineStats, run_pipeline
from synth_opt.proposers.base import Proposer
from synth_opt.result import GepaResult
from synth_opt.run.artifacts import RunArtifacts, write_json
from synth_opt.run.callbacks import CallbackRelay, checked_callback
from synth_opt.run.cancel import CancelHandle
from synth_opt.run.checkpoints import CHECKPOINT_FILE, CheckpointWriter, emit_checkpoint, replaced_run_dir
from synth_opt.run.container import bearer_token, open_container
from synth_opt.run.container import with_python as with_python  # it was defined here
from synth_opt.run.dataset import resolve_dataset
from synth_opt.run.gc_pacing import run_paced_collector
from synth_opt.run.lifecycle import emit_run_state
from synth_opt.run.resume import (
    Discarded,
    ResumePoint,
    checkpoint_announced,
    latest_checkpoint,
    prepare_resume,
)
from synth_opt.run.same_config import check_same_config
from synth_opt.run.setup import (
    budget_ledger,
    cached_proposer,
    emit_config_warnings,
    preflight_proposer,
    search_state,
    seed_and_modules,
    supervisor_settings,
)
from synth_opt.run.tracking import TRACKER_DRAIN_SECONDS, MlflowTracker, check_tracking
from synth_opt.workspace import complete_workspace, finalize_workspace, run_workspace_writer

__all__ = ["GepaRun", "RunObserver", "RunView"]

_log = get_logger("synth_opt.run")


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


class GepaRun:
    """One optimization run of one config.

    ``execute()`` is synchronous; callers already inside an event loop use ``await execute_async()``.
    Re-running a config whose run directory holds a finished run returns the stored result without calling out;
    an unfinished one resumes from its last checkpoint (or starts over when it committed nothing); ``fresh=True``
    replaces it. A run holds its directory's lock (:mod:`synth_opt.dir_lock`) from start to end.
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
        callbacks: Sequence[object] = (),
    ) -> None:
        """``container_transport`` and ``proposer`` are seams for tests and embedding: an httpx transport that
        answers for ``[container].url`` (nothing is launched), and a proposer used instead of ``[proposer]``.
        ``workspace=False`` writes no ``workspace.sqlite`` (and so keeps no checkpoints: such a run cannot resume).
        ``callbacks``: Python observers of the run's events (:class:`~synth_opt.run.callbacks.GepaCallback`),
        called from a thread of their own so they never stall it."""
        if not isinstance(config, GepaConfig):
            raise TypeError(
                f"GepaRun takes a GepaConfig, not {type(config).__name__}: load one with load_config(path), or use "
                "GepaRun.from_toml(path)"
            )
        self.config = config
        self.fresh = fresh
        self.observer = observer
        self.callbacks = tuple(checked_callback(callback) for callback in callbacks)
        self.seams = _Seams(container_transport, proposer, workspace)
        self.cancel_handle = CancelHandle()

    def cancel(self, reason: str = "cancelled by the caller") -> None:
        """Stop the run from the event loop it runs in; it raises RunCancelledError after cleaning up."""
        self.cancel_handle.cancel(reason)

    def abandon(self, reason: str) -> None:
        """Stop the run and write nothing more into its directory (not even that it stopped): for an owner that
        lost its claim on the run, such as a service worker whose lease was taken over. It raises
        RunCancelledError; the directory keeps what was written before, and its lock is released."""
        self.cancel_handle.abandon(reason)

    @classmethod
    def from_toml(
        cls, path: str | os.PathLike[str], *, fresh: bool = False, callbacks: Sequence[object] = ()
    ) -> GepaRun:
        return cls(load_config(path), fresh=fresh, callbacks=callbacks)

    @property
    def run_id(self) -> str:
        return self.config.effective_run_id()

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir()

    def execute(self) -> GepaResult:
        """Run to the end (blocking); inside a running event loop, ``await run.execute_async()`` instead."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return anyio.run(self.execute_async)
        raise RuntimeError("GepaRun.execute() was called inside a running event loop; await run.execute_async()")

    async def execute_async(self) -> GepaResult:
        if self.cancel_handle.abandoned:  # its owner lost its claim before the run started: touch nothing
            raise RunCancelledError(
                f"run {self.run_id} was abandoned before it started ({self.cancel_handle.reason})",
                run_dir=str(self.run_dir),
            )
        check_tracking(self.config)  # before the run directory is touched
        lock = RunDirLock(self.run_dir)
        try:
            if self.run_dir.is_dir():
                lock.acquire()  # another live run of it is named first
            preflighted = False
            if self.fresh or not (self.run_dir / "result_manifest.json").exists():  # (not to show a stored result)
                await self._preflight()  # what the config names but cannot use fails before a run directory is made
                preflighted = True
            with structlog.contextvars.bound_contextvars(run_id=self.run_id):  # on every line logged beneath
                prepared = self._prepare_run_dir(lock)
                if isinstance(prepared, GepaResult):
                    return prepared
                with run_paced_collector():
                    execution = _Execution(
                        self.config, self.observer, self.seams, self.cancel_handle, prepared, self.callbacks
                    )
                    execution.preflighted = preflighted
                    execution.checkpoints.owned = lock.still_held
                    return await execution.run()
        except OSError as error:  # a run file the OS refuses (a folder in its place, a read-only folder)
            failure = file_failure(error)
            if failure is None:
                raise
            raise failure from error
        finally:
            lock.release()
            self.cancel_handle.settle()

    async def _preflight(self) -> None:
        """The checks that need no container: the environment variables the config names are set, a launched
        container's ``cwd`` is a folder, the cache is one (and exists, for a readonly run), the proposer answers
        (its backend's check; not for a readonly run, which contacts nothing)."""
        config = self.config
        bearer_token(config)
        cwd = config.container.cwd
        if config.container.launch_command() and cwd is not None and not cwd.is_dir():
            raise ConfigError(
                f"{config.source_path}: container.cwd: {cwd} is not a folder, so the container cannot start there; "
                "fix the path (relative to the config's folder) or drop the key",
                field="container.cwd",
            )
        cache = config.cache_path()
        run_dir = config.run_dir()
        occupied = _in_the_way(run_dir)
        if occupied:
            raise ConfigError(
                f"{config.source_path}: the run's folder {run_dir} is taken by {occupied}; move it away, or choose "
                "another [run] run_id or output_dir",
                field="run.run_id",
            )
        if config.cache.mode != "off" and cache.resolve().is_relative_to(run_dir.resolve()):
            raise ConfigError(
                f"{config.source_path}: cache.path: {cache} is inside the run's own folder {run_dir}, whose files the "
                "run writes and a resume rebuilds; point it outside that folder (the default is "
                f"{config.output_dir / 'cache.sqlite'})",
                field="cache.path",
            )
        if config.cache.mode == "readonly" and not cache.is_file():
            raise CacheMissError(
                f"{config.source_path}: cache.mode: readonly, but the cache {cache} does not exist; run the config "
                "once with cache.mode = 'readwrite' first",
                path=str(cache),
            )
        if config.cache.mode != "off" and cache.is_file():
            CacheStore(cache, mode=config.cache.mode, namespace=config.cache_namespace()).close()  # not a cache?
        if self.seams.proposer is None and config.cache.mode != "readonly":
            await preflight_proposer(config)

    def _prepare_run_dir(self, lock: RunDirLock) -> GepaResult | ResumePoint | None:
        """Lock the run directory, then: a finished run's stored result, the checkpoint to resume an unfinished
        one from, or None (a fresh run in an emptied directory).

        The lock comes first, so nothing changes while another process holds the directory. A directory whose
        run never wrote a checkpoint committed nothing: it starts over. One that announced a checkpoint that is
        gone cannot resume: that needs ``--fresh``. A result or a checkpoint of another config (another decision
        digest) is refused: that needs another run id or ``--fresh``."""
        run_dir = self.run_dir
        lock.acquire()
        started = any(entry.name not in (LOCK_FILE, RUN_MARKER) for entry in run_dir.iterdir())
        if started and not self.fresh:
            manifest = run_dir / "result_manifest.json"
            if manifest.exists():
                stored = _stored_result(manifest)
                if stored.status == "completed":
                    check_same_config(run_dir, self.config)
                    _complete_workspace(run_dir, self.run_id)
                    return _replace_flag(stored)
            checkpoint = latest_checkpoint(run_dir)
            if checkpoint is not None:
                check_same_config(run_dir, self.config)  # (a run that committed nothing starts over, whatever it was)
                lock.mark()
                # thrown-away work is paid again only with the cache off (readwrite serves it from the cache again,
                # readonly pays for nothing)
                return prepare_resume(
                    run_dir,
                    checkpoint,
                    paid_again=self.config.cache.mode == "off",
                    digest=self.config.decision_digest(),
                )
            if checkpoint_announced(run_dir):
                raise RunStateError(
                    f"run directory {run_dir} announced a checkpoint that is gone ({CHECKPOINT_FILE} is missing "
                    "or unreadable), so it cannot resume. Re-run with --fresh (fresh=True) to start it over.",
                    run_dir=str(run_dir),
                )
        lock.clear()  # --fresh, or nothing was committed: start over
        lock.mark()
        return None


def _is_cancellation(error: BaseException) -> bool:
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(error, BaseExceptionGroup):
        return all(_is_cancellation(inner) for inner in error.exceptions)
    return isinstance(error, cancelled | KeyboardInterrupt | RunCancelledError)


async def _watched(observer: RunObserver, events: MemoryObjectReceiveStream[Event], view: RunView) -> None:
    """The observer (the live display), whose failure is logged and ends only it: never the run it shows."""
    try:
        await observer(events, view)
    except Exception as error:
        _log.warning("the run's observer failed; the run goes on without it", error=f"{type(error).__name__}: {error}")
    finally:
        events.close()


def _complete_workspace(run_dir: Path, run_id: str) -> None:
    """A run killed between its manifest and its workspace's last write: the workspace gets what it lacks now (a
    failure is a warning: the stored result stands, and ``workspace repair`` can do it later)."""
    db = run_dir / "workspace.sqlite"
    try:
        if complete_workspace(db, run_dir / "events.jsonl", run_id=run_id):
            _log.info("the workspace of the finished run lacked its manifest; stored it now", db=str(db))
    except (sqlite3.Error, OSError, SynthOptimizerError, ValueError) as error:
        _log.warning(
            f"the workspace of the finished run could not be completed; run synth-opt workspace repair --db {db}",
            error=f"{type(error).__name__}: {error}",
        )


def _stored_result(manifest: Path) -> GepaResult:
    """The result a finished run stored; a damaged manifest is an error naming it."""
    try:
        return GepaResult.from_manifest(manifest)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise RunStateError(
            f"{manifest} is damaged ({type(error).__name__}: {error}). Delete it and re-run the same config to "
            "resume from the run's checkpoint, or re-run with --fresh (fresh=True) to start the run over.",
            path=str(manifest),
        ) from None


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
        callbacks: Sequence[object] = (),
    ) -> None:
        self.config = config
        self.resume = resume
        self.observer = observer
        self.seams = seams
        self.cancel = cancel
        self.supervisor: Supervisor | None = None
        self.cache: CacheStore | None = None
        self.circuit_stats: CircuitStats | None = None  # the live container's outage circuit, for its probes' spend
        self.preflighted = False  # the proposer was checked before the run directory was prepared
        self.run_id = config.effective_run_id()
        self.run_dir = config.run_dir()
        self.output_dir = config.output_dir
        self.feed_path = self.run_dir / "events.jsonl"
        self.registry_path = self.output_dir / "run_registry.jsonl"
        self.bus = EventBus(self.feed_path)
        self.relay = CallbackRelay(callbacks)
        self.bus.on_event(self.relay.offer)
        trackers = [MlflowTracker(config, self.run_id, self.run_dir)] if config.tracking.mlflow_tracking_uri else []
        # apart from user callbacks; the tracker reads the events and changes none, so it gets them uncopied
        self.tracking = CallbackRelay(trackers, drain_seconds=TRACKER_DRAIN_SECONDS, copies=False)
        self.bus.on_event(self.tracking.offer)
        if resume is not None:
            self.bus.sequence_number = resume.sequence_number
        self.workspace_db: Path | None = self.run_dir / "workspace.sqlite" if seams.workspace else None
        # subscribed before the first event, so the writer sees them all
        self.workspace_events = self.bus.subscribe(8192) if seams.workspace else None
        self.artifacts = RunArtifacts(
            config,
            self.bus,
            feed_path=self.feed_path,
            registry_path=self.registry_path,
            workspace_db=self.workspace_db,
            resumed=resume is not None,
        )
        self.checkpoints = CheckpointWriter(
            self.bus, self.run_dir / CHECKPOINT_FILE if seams.workspace else None, digest=config.decision_digest()
        )
        cancel.on_abandon(self._abandon)
        self.view = RunView(self.run_id, config, PipelineStats(), started_monotonic=time.monotonic())

    def _abandon(self) -> None:
        self.bus.go_quiet()
        self.checkpoints.path = None

    def _state(self, state: RunState, message: str | None = None) -> None:
        emit_run_state(self.bus, state, message)

    async def run(self) -> GepaResult:
        self.relay.start()
        self.tracking.start()
        self.artifacts.point_latest()
        if self.resume is None:
            self.artifacts.registry_line("started")
            self._state(RunState("created", run_id=self.run_id, config_path=str(self.config.source_path)))
            self.bus.emit(
                RunConfig(self.config.decision_digest(), self.config.decision_config()),
                f"config digest {self.config.decision_digest()}",
            )
        else:
            await self._finalize_workspace()
            # commits: the seed's scoring and every proposal committed before the checkpoint
            proposals = self.resume.snapshot["commits"]
            self.artifacts.registry_line("resumed", commits=proposals + 1, proposals=proposals)
            self._state(RunState("resumed", commits=self.resume.snapshot["commits"]))
            emit_checkpoint(self.bus, self.resume.snapshot)
            discarded = self.resume.discarded
            self.bus.emit(
                RunDiscarded(**discarded.to_json()),
                f"restarts so far discarded {discarded.rollouts} rollouts and their proposer calls (done again)",
                lane="supervisor",
            )
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
                    tg.start_soon(_watched, self.observer, observing, self.view)
                try:
                    try:
                        outcome = await self._search()
                    except BaseException as error:
                        # a cancel stops between two messages: its pending checkpoint is consistent; a failure
                        # may stop mid-message (counters already moved), so its pending checkpoint is dropped
                        if _is_cancellation(error):
                            self.checkpoints.flush()
                        else:
                            self.checkpoints.drop()
                        raise
                    self.checkpoints.flush()  # stored before the result says completed
                    if not self.checkpoints.owned():
                        raise replaced_run_dir(self.run_dir)
                    result = self._write_result(outcome, status="completed")
                finally:
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
            # bounded, side by side: the callbacks get DRAIN_SECONDS to catch up, the tracker TRACKER_DRAIN_SECONDS
            with anyio.CancelScope(shield=True):
                async with anyio.create_task_group() as closing:
                    closing.start_soon(anyio.to_thread.run_sync, self.relay.close)
                    closing.start_soon(anyio.to_thread.run_sync, self.tracking.close)
            mine = not self.cancel.abandoned and self.checkpoints.owned()
            unfinished = await self._finalize_workspace(quiet=True) if mine else None
        if self.bus.write_error is not None or unfinished is not None:
            # the result was written, but not everything behind it was stored: the manifest must not say completed
            failure = self._storage_failure(unfinished)
            if not self._demote_manifest(failure) and unfinished is not None:
                # no manifest left to repair the workspace from: a re-run finishes the run again from its checkpoint
                failure = RunFailedError(
                    f"could not finish {self.workspace_db}: {unfinished}, nor mark its result failed; free space (or "
                    "fix permissions) and re-run the same config: it finishes from its last checkpoint",
                    path=str(self.workspace_db),
                )
            try:
                self.artifacts.registry_line("failed", error=failure.one_line())
            except OSError:
                pass  # the disk that failed the run: the error says what to do
            raise failure
        return result

    def _storage_failure(self, unfinished: BaseException | None) -> RunFailedError:
        if self.bus.write_error is not None:
            error = self.bus.write_error
            return RunFailedError(
                f"could not write {self.feed_path}: {error.strerror or error}; free space (or fix permissions) and "
                "re-run the same config to resume from its last checkpoint",
                path=str(self.feed_path),
            )
        return RunFailedError(
            f"could not finish {self.workspace_db}: {unfinished}; once the cause is fixed, rebuild it with "
            f"synth-opt workspace repair --db {self.workspace_db}",
            path=str(self.workspace_db),
        )

    def _demote_manifest(self, failure: RunFailedError) -> bool:
        """Mark a written result as failed; False when even that cannot be stored (the manifest is removed, so
        nothing says completed and a re-run resumes)."""
        manifest = self.run_dir / "result_manifest.json"
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            data.update(status="failed", error=failure.one_line())
            write_json(manifest, data)
        except (OSError, ValueError, RunFailedError):
            manifest.unlink(missing_ok=True)
            return False
        return True

    async def _finalize_workspace(self, *, quiet: bool = False) -> Exception | None:
        """Back-fill whatever the live writer missed from ``events.jsonl`` (shielded: it runs on the way out).
        With ``quiet`` a failure is returned instead of raised."""
        if self.workspace_db is None:
            return None
        try:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    functools.partial(
                        finalize_workspace, self.workspace_db, self.feed_path, run_id=self.run_id, manifest=None
                    )
                )
        except Exception as error:
            if not quiet:
                raise
            return error
        return None

    def _failed(self, error: BaseException) -> BaseException:
        """Record why the run ended early, keep everything committed so far, and hand the error back."""
        cancelled = isinstance(error, KeyboardInterrupt | anyio.get_cancelled_exc_class() | RunCancelledError)
        status = "cancelled" if cancelled else "failed"
        reason = error.one_line() if isinstance(error, SynthOptimizerError) else f"{type(error).__name__}: {error}"
        if self.cancel.abandoned or not self.checkpoints.owned():
            return error  # another owner has the run now (or its directory is gone): record nothing here
        try:
            if self.supervisor is not None and self.supervisor.state.pool:
                self.supervisor.release_reservations()
                outcome = self.supervisor.outcome(stop_reason="cancelled" if cancelled else "failed")
                self._write_result(outcome, status=status, error=reason)
            else:
                self._state(RunState(status, error=reason))
                self.artifacts.registry_line(status, error=reason)
            history = self.artifacts.history.entries
            write_json(self.run_dir / "run_status.json", {"status": status, "error": reason, "state_history": history})
        except (OSError, SynthOptimizerError):
            # the storage itself failed (a full disk): nothing more can be recorded, and no manifest written
            # earlier may claim otherwise; the error says why
            self._demote_manifest(RunFailedError(reason))
        return error

    async def _search(self) -> SearchOutcome:
        config = self.config
        async with AsyncExitStack() as stack:
            store = self.cache
            assert store is not None
            if self.seams.proposer is None and config.cache.mode != "readonly" and not self.preflighted:
                await preflight_proposer(config)  # fail before spending: before the container and any rollout
            client = await open_container(
                stack, config, store, self.bus, transport=self.seams.container_transport, run_dir=self.run_dir
            )
            if client.live is not None and client.live.circuit is not None:
                self.circuit_stats = client.live.circuit.stats
            program = await client.program()
            task_info = await client.task_info()
            dataset = await resolve_dataset(
                config,
                self.bus,
                client,
                await client.taskset(),
                announce=self.resume is None,
                recorded=None if self.resume is None else self.resume.dataset,
            )
            seed, modules = seed_and_modules(config, program)
            emit_config_warnings(self.bus, config, modules)  # settings that do nothing: said at start-up
            proposer = cached_proposer(store, config, self.seams.proposer, self.run_dir)
            stack.push_async_callback(proposer.aclose)
            plan = config.lane_plan()
            state = search_state(config, modules, dataset)
            ledger = budget_ledger(config, len(dataset.heldout_ids))
            self.view.train_cap = ledger.limits.train_rollouts
            self.view.heldout_cap = ledger.limits.heldout_rollouts
            supervisor = Supervisor(
                state=state,
                ledger=ledger,
                bus=self.bus,
                settings=supervisor_settings(config, self.run_id, plan.max_in_flight, dataset, task_info),
                seed=seed,
                checkpoint=self.checkpoints.offer if self.workspace_db is not None else None,
            )
            if self.resume is not None:
                supervisor.resume(
                    self.resume.snapshot, self.resume.records, self.resume.registry, self.resume.evaluations
                )
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
                    keep_output=config.gepa.reuse_evaluations,
                ),
                propose=propose_handler(
                    proposer,
                    bus=self.bus,
                    outage_timeout_seconds=config.proposer.outage_timeout_seconds,
                    calls_dir=self.run_dir / "proposer_calls",
                    time_left=supervisor.time_left,
                ),
                stats=self.view.stats,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_result(self, outcome: SearchOutcome, *, status: str, error: str | None = None) -> GepaResult:
        assert self.supervisor is not None and self.cache is not None
        result = self.artifacts.write_result(
            outcome,
            state=self.supervisor.state,
            cache=self.cache,
            pipeline=self.plan_json,
            status=status,
            error=error,
            discarded=self._discarded(),
        )
        self.relay.result(result)
        self.tracking.result(result)
        return result

    def _discarded(self) -> Discarded:
        """Spend thrown away: by earlier attempts (read from the feed at resume) and by this one's outage probes."""
        earlier = Discarded() if self.resume is None else self.resume.discarded
        stats = self.circuit_stats
        if stats is None:
            return earlier
        return earlier + Discarded(probes=stats.canaries_served, probe=stats.canary_usage)


def _in_the_way(run_dir: Path) -> str:
    """What occupies ``run_dir`` when it is no folder ("a file", "a link to /x that leads nowhere"); "" else."""
    if run_dir.is_symlink() and not run_dir.exists():
        return f"a link to {os.readlink(run_dir)} that leads nowhere"
    if not run_dir.exists() or run_dir.is_dir():
        return ""
    mode = run_dir.stat().st_mode
    return "a FIFO (a named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a file"
