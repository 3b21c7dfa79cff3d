"""Executing one claimed run request: start it, run GEPA under a heartbeat, and write the outcome back, fenced.

While the run goes, a watcher task heartbeats every ``lease_seconds / 3`` (extending the lease) and polls the
request's ``cancel_requested`` every ``poll_seconds``, and a pump copies the run's new event lines into the queue
(:mod:`synth_opt.service.feed`; once more when the run ends, before the outcome is written). A requested cancel
calls ``run.cancel(...)``, which stops the GEPA loop and the processes it launched and records the run as
cancelled. A lost lease (the heartbeat was refused: the request was recovered and maybe reclaimed) stops the run
too, and from then on the worker writes nothing into the run directory (``GepaRun.abandon``), since another worker
owns it now. A run directory that another live process holds fails the request at once with ``run_locked``.

The outcome is written with the lease token: ``completed`` with the run summary, ``failed`` or ``cancelled`` with
``{"code", "message", "detail"}`` (plus whatever summary the run's manifest holds). A worker told to stop (service
shutdown) releases its lease instead, so the request is queued again and resumes from its last checkpoint (on a
worker that shares the run directory; a worker on another host starts the run over: the same decisions). A
LeaseLostError on the final write is logged and re-raised.

Every queue call goes through the async queue (aiosqlite or psycopg); only loading the config file and reading the
feed run in a worker thread.
While a request executes, ``request_id``, ``run_id`` and ``worker_id`` are bound to structlog's context.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from structlog.contextvars import bound_contextvars

from synth_opt.config import GepaConfig, load_config
from synth_opt.errors import (
    ConfigError,
    LeaseLostError,
    RunCancelledError,
    RunFailedError,
    RunLockedError,
    RunStateError,
    SynthOptimizerError,
)
from synth_opt.logs import get_logger
from synth_opt.result import GepaResult
from synth_opt.run import GepaRun
from synth_opt.service.confine import Confinement, config_inside_root
from synth_opt.service.feed import EventPump
from synth_opt.service.functions import request_fields
from synth_opt.service.queue import DEFAULT_LEASE_SECONDS, AsyncRunQueue, RunRequest, open_queue

__all__ = ["Execution", "call_in_thread", "check_unchanged", "config_inside_root", "execute_claimed", "run_next"]

_log = get_logger("synth_opt.service")
CANCEL_REASON = "cancelled through the service"
SHUTDOWN_REASON = "the service worker is shutting down"


@dataclass
class Execution:
    """The handle of one request being executed: who holds it and how to stop it."""

    request_id: str
    run_id: str
    lease_token: str
    attempt: int
    fresh: bool = False
    started_at: float = field(default_factory=time.time)
    run: GepaRun | None = None
    cancel_reason: str | None = None
    shutting_down: bool = False
    lease_lost: LeaseLostError | None = None
    abandoned: bool = False

    def cancel(self, reason: str = CANCEL_REASON) -> None:
        """Stop the run (from the event loop it runs in)."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
        if self.run is not None:
            self.run.cancel(reason)

    def abandon(self, reason: str) -> None:
        """Stop the run and write nothing more into its directory: the lease, and so the run, is another's now."""
        self.abandoned = True
        if self.cancel_reason is None:
            self.cancel_reason = reason
        if self.run is not None:
            self.run.abandon(reason)

    def shutdown(self) -> None:
        self.shutting_down = True
        self.cancel(SHUTDOWN_REASON)

    def describe(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "run_id": self.run_id,
            "attempt": self.attempt,
            "started_at": self.started_at,
            "cancel_reason": self.cancel_reason,
        }


async def call_in_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Blocking file work (loading a config, reading a feed) off the event loop; SQLite goes through aiosqlite."""
    return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs))


async def _watch(queue: AsyncRunQueue, execution: Execution, *, heartbeat_seconds: float, poll_seconds: float) -> None:
    """Heartbeat and poll for a cancel until cancelled by the caller."""
    next_beat = time.monotonic() + heartbeat_seconds
    while True:
        await anyio.sleep(poll_seconds)
        try:
            if time.monotonic() >= next_beat:
                request = await queue.heartbeat(execution.request_id, execution.lease_token)
                next_beat = time.monotonic() + heartbeat_seconds
            else:
                request = await queue.get(execution.request_id)
        except LeaseLostError as lost:
            _log.warning("lease lost while running", error=lost.message)
            execution.lease_lost = lost
            execution.abandon(f"lease lost: {lost.message}")
            return
        except Exception:  # a busy or briefly unreadable database: keep the run going, try again
            _log.exception("heartbeat failed; retrying")
            continue
        if request.lease_token != execution.lease_token:  # recovered, maybe reclaimed: stop at once
            execution.lease_lost = LeaseLostError(
                f"run request {execution.request_id} is no longer leased to this worker (now {request.status}, "
                f"held by {request.lease_owner or 'nobody'}); stopping its run",
                request_id=execution.request_id,
            )
            _log.warning(execution.lease_lost.message)
            execution.abandon("lease lost")
            return
        if request.cancel_requested:
            execution.cancel(CANCEL_REASON)


def _manifest_summary(config: GepaConfig | None) -> dict[str, Any] | None:
    """What a run that ended early left behind: its manifest (cancelled after the seed was scored) or its paths;
    None when there is nothing, or nothing readable (a run directory whose name the file system refuses): the
    request's outcome is written either way."""
    if config is None:
        return None
    try:
        run_dir = config.run_dir()
        manifest = run_dir / "result_manifest.json"
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            data.setdefault("manifest_path", str(manifest))
            return data
        workspace = run_dir / "workspace.sqlite"
        return {"workspace_db_path": str(workspace)} if workspace.exists() else None
    except Exception as error:  # e.g. ENAMETOOLONG: the outcome matters more than the summary
        _log.warning("the run's summary could not be read", error=f"{type(error).__name__}: {error}")
        return None


FIXED_FIELDS = ("run_id", "container_url", "cache_namespace")


def check_unchanged(claimed: RunRequest, config: GepaConfig) -> None:
    """A ConfigError naming the first field the reloaded config changed since submission: the request's run id,
    container URL(s) and cache namespace were fixed then (SPEC §11), and the claim kept the request from sharing
    its URLs and namespace with another live request. (Its run directory is not: a worker host may keep runs in
    a folder of its own, ``SYNTH_OPTIMIZERS_OUTPUT_DIR``.)"""
    fields = request_fields(config)
    urls = list(dict.fromkeys(fields["container_urls"]))
    now = {**fields, "container_url": fields["container_url"] or (", ".join(urls) if urls else None)}
    for name in FIXED_FIELDS:
        then = getattr(claimed, name)
        if now[name] != then:
            raise ConfigError(
                f"the config {claimed.config_path} changed since run request {claimed.request_id} was submitted: "
                f"its {name} is now {now[name]!r}, the request was submitted with {then!r}; the queue fixes "
                "the run id, container URLs and cache namespace at submission, so submit the config again as a new "
                "request",
                field=name,
                submitted=then,
                now=now[name],
                request_id=claimed.request_id,
            )


async def _run_gepa(execution: Execution, config: GepaConfig) -> GepaResult:
    # a fresh request starts over on its first attempt only: a later one resumes what the first committed
    execution.run = GepaRun(config, fresh=execution.fresh and execution.attempt <= 1)
    if execution.abandoned:  # the lease was lost before the run existed: it must not touch the directory
        execution.run.abandon(execution.cancel_reason or "lease lost")
    elif execution.cancel_reason is not None:
        execution.run.cancel(execution.cancel_reason)
    try:
        return await execution.run.execute_async()
    except RunLockedError:
        raise  # another process holds the run directory: fail this request now, do not wait
    except RunStateError:
        # an earlier attempt died before its first checkpoint: nothing in the run directory can be resumed
        if execution.attempt <= 1 or execution.cancel_reason is not None:
            raise
        _log.warning(
            "no checkpoint to resume; starting fresh", attempt=execution.attempt, run_dir=str(config.run_dir())
        )
        execution.run = GepaRun(config, fresh=True)
        return await execution.run.execute_async()


async def execute_claimed(
    queue: AsyncRunQueue,
    claimed: RunRequest,
    *,
    config_root: Path | None = None,
    confinement: Confinement | None = None,
    poll_seconds: float = 0.5,
    on_start: Callable[[Execution], None] | None = None,
) -> RunRequest:
    """Run a request this worker has claimed, to its end; returns the request as it was finally written. Every line
    logged meanwhile (by the run too) carries the ``request_id``, ``run_id`` and ``worker_id``.

    With ``confinement`` (or just a ``config_root``: its rules with no commands allowed) the config is checked
    again before anything runs, since the file may have changed since it was submitted; a refused config fails the
    request with ``config_not_allowed``."""
    if confinement is None and config_root is not None:
        confinement = Confinement.of(config_root)
    if claimed.lease_token is None:
        raise LeaseLostError(
            f"run request {claimed.request_id} holds no lease; claim it first", request_id=claimed.request_id
        )
    execution = Execution(
        claimed.request_id, claimed.run_id, claimed.lease_token, claimed.attempts, fresh=claimed.fresh
    )
    if on_start is not None:
        on_start(execution)
    with bound_contextvars(request_id=execution.request_id, run_id=execution.run_id, worker_id=claimed.lease_owner):
        return await _execute(queue, claimed, execution, confinement, poll_seconds)


async def _execute(
    queue: AsyncRunQueue,
    claimed: RunRequest,
    execution: Execution,
    confinement: Confinement | None,
    poll_seconds: float,
) -> RunRequest:
    token = execution.lease_token
    started = await queue.start(execution.request_id, token)
    config: GepaConfig | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    pump = EventPump(queue, started, token, lambda: None if config is None else config.run_dir() / "events.jsonl")
    try:
        async with anyio.create_task_group() as tg:
            watch = functools.partial(_watch, queue, execution, heartbeat_seconds=queue.lease_seconds / 3)
            tg.start_soon(functools.partial(watch, poll_seconds=poll_seconds))
            tg.start_soon(pump.run)
            try:
                path: str | Path = claimed.config_path
                if confinement is not None:
                    path = confinement.config_path(path)
                loaded: GepaConfig = await call_in_thread(load_config, path)
                if confinement is not None:
                    confinement.check(loaded)
                check_unchanged(claimed, loaded)
                config = loaded
                result = (await _run_gepa(execution, config)).to_json()
            except SynthOptimizerError as failure:
                error = failure.to_dict()
            except Exception as bug:
                error = _unexpected(bug)
            finally:
                tg.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):  # torn down from outside: give the lease back before going
            try:
                await _release(queue, execution)
            except LeaseLostError:
                pass  # logged; the cancellation goes on
        raise
    except Exception as bug:  # the heartbeat or the event pump broke: the request still gets its outcome
        if result is None and error is None:
            error = _unexpected(bug)
    await _last_events(pump)
    # a lease lost while running still gets its final write: the refusal is audited and raised as LeaseLostError
    if execution.shutting_down and (error or {}).get("code") == RunCancelledError.error_code:
        return await _release(queue, execution)
    if error is not None:
        result = _manifest_summary(config)
    return await _complete(queue, execution, result, error)


def _unexpected(bug: Exception) -> dict[str, Any]:
    _log.error("the request failed unexpectedly", exc_info=bug)
    return RunFailedError(f"the run failed unexpectedly: {type(bug).__name__}: {bug}").to_dict()


async def _complete(
    queue: AsyncRunQueue, execution: Execution, result: dict[str, Any] | None, error: dict[str, Any] | None
) -> RunRequest:
    """Write the outcome, fenced by the lease. An outcome the queue cannot store (a value it cannot encode, say)
    is replaced by an error saying so, so the request never stays running with its lease held. The queue's own
    refusals (a lost lease, a database that stayed unreachable) are raised, as is a second failure: the lease then
    expires and recovery takes over (failing the request once that has happened too often)."""
    token = execution.lease_token
    try:
        return await queue.complete(execution.request_id, result=result, error=error, lease_token=token)
    except LeaseLostError as lost:
        _log.error("the request finished but its result was refused", error=lost.message)
        raise
    except SynthOptimizerError:
        raise
    except Exception as bug:
        _log.error("the request's outcome could not be written; failing it", exc_info=bug)
        text = f"{type(bug).__name__}: {bug}".encode("utf-8", "backslashreplace").decode("utf-8")
        failed = RunFailedError(
            f"the run ended but its outcome could not be written to the queue ({text}); see the worker's log and "
            "submit the config again"
        )
        return await queue.complete(execution.request_id, result=None, error=failed.to_dict(), lease_token=token)


async def _last_events(pump: EventPump) -> None:
    """The feed's last lines, appended before the outcome is written, so a reader that sees the request terminal
    has every line, unless this append fails: that is logged, not raised (the outcome matters more than the
    stream, whose lines stay in the run's ``events.jsonl``)."""
    try:
        await pump.pump()
    except Exception as error:
        _log.warning("the run's last events did not reach the queue", error=str(error))


async def _release(queue: AsyncRunQueue, execution: Execution) -> RunRequest:
    try:
        released = await queue.release(execution.request_id, execution.lease_token, reason=SHUTDOWN_REASON)
    except LeaseLostError as lost:
        _log.error("could not release the request", error=lost.message)
        raise
    return released


async def run_next(
    db_path: str | Path,
    *,
    worker_id: str,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    config_root: Path | None = None,
    confinement: Confinement | None = None,
    poll_seconds: float = 0.5,
    on_start: Callable[[Execution], None] | None = None,
) -> RunRequest | None:
    """Recover expired leases, claim the next request and execute it: the request as finally written, or None
    when nothing was claimable."""
    with open_queue(db_path, lease_seconds=lease_seconds) as opened:  # creates and migrates the file
        async with opened.open_async() as queue:
            await queue.recover()
            claimed = await queue.claim(worker_id)
            if claimed is None:
                return None
            return await execute_claimed(
                queue,
                claimed,
                config_root=config_root,
                confinement=confinement,
                poll_seconds=poll_seconds,
                on_start=on_start,
            )
