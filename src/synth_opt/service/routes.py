"""The service's HTTP routes (SPEC §11). Handlers are thin: they validate, call the queue or the worker, and return
plain dicts; every SynthOptimizerError they raise becomes the error envelope in ``app.py``.

Handlers never block the event loop on SQLite: the queue is read and written through its async twin
(:class:`~synth_opt.service.queue.AsyncRunQueue`: aiosqlite, or psycopg's async connection) and workspaces are
read through :mod:`synth_opt.workspace.live` (aiosqlite). Only loading a submitted config (a file) runs in a worker
thread."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage

from synth_opt.errors import ConfigError
from synth_opt.redact import redact_url
from synth_opt.service.confine import Confinement, load_submitted
from synth_opt.service.errors import QueueConflictError
from synth_opt.service.functions import request_fields
from synth_opt.service.queue import AsyncRunQueue, RequestStatus, RunRequest
from synth_opt.service.queue.plans import MAX_LIST
from synth_opt.service.queue.rows import public_view
from synth_opt.service.worker import call_in_thread
from synth_opt.service.worker_loop import ServiceWorker
from synth_opt.workspace.live import live_workspace_status

__all__ = ["ROUTES", "ServiceContext", "SubmitRun", "service_of"]

MAX_PRIORITY = 1_000_000


@dataclass
class ServiceContext:
    """What the routes share; the queue and the worker are opened in the app's lifespan."""

    db_path: Path | str
    """The queue's SQLite file, or its ``postgresql://`` URL."""
    config_root: Path
    worker_id: str
    confinement: Confinement | None = None
    events_poll_seconds: float = 0.25
    queue_: AsyncRunQueue | None = None
    worker_: ServiceWorker | None = None
    task_group: TaskGroup | None = None
    stopping: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rules(self) -> Confinement:
        """The confinement of submitted configs (the config root alone when none was given)."""
        return self.confinement or Confinement.of(self.config_root)

    @property
    def queue(self) -> AsyncRunQueue:
        """The queue (its async twin: aiosqlite), opened in the app's lifespan."""
        if self.queue_ is None:
            raise RuntimeError("the service queue is opened in the app's lifespan; it is not running")
        return self.queue_

    @property
    def worker(self) -> ServiceWorker:
        if self.worker_ is None:
            raise RuntimeError("the service worker is created in the app's lifespan; it is not running")
        return self.worker_

    async def ensure_worker_loop(self) -> None:
        """Start the background worker loop if it is not running (``auto_start`` of ``POST /runs``)."""
        if self.task_group is not None and not self.stopping and not self.worker.loop_running:
            await self.task_group.start(self.worker.serve)


def service_of(state: State) -> ServiceContext:
    """The service context the app keeps in its state (litestar injects ``state`` into every handler)."""
    service: ServiceContext = state.service
    return service


@dataclass
class SubmitRun:
    """A run request: ``config_path`` is resolved against the service's config root and must stay inside it.
    ``fresh`` starts the run directory over (as ``gepa run --fresh``) instead of resuming it or returning the result
    it holds."""

    config_path: str
    priority: int = 0
    auto_start: bool = True
    idempotency_key: str | None = None
    fresh: bool = False


SUBMIT_FIELDS = tuple(f.name for f in dataclasses.fields(SubmitRun))


async def _refuse_unknown_fields(request: Request[Any, Any, Any]) -> None:
    """A misspelt field (``priorty``) is refused rather than silently ignored."""
    body = await request.json()  # already decoded for ``data``: litestar caches it
    unknown = sorted(set(body) - set(SUBMIT_FIELDS)) if isinstance(body, dict) else []
    if unknown:
        known = ", ".join(SUBMIT_FIELDS)
        raise ValidationException(
            f"Validation failed for {request.method} {request.url.path}",
            extra=[
                {"key": key, "source": "body", "message": f"unknown field; the fields are {known}"} for key in unknown
            ],
        )


@get("/health", opt={"public": True}, sync_to_thread=False)
def health(state: State) -> dict[str, Any]:
    """Process liveness (no token needed)."""
    service = service_of(state)
    return {"status": "ok", "worker_id": service.worker_id}


@get("/status")
async def status(state: State) -> dict[str, Any]:
    """``workspace_status`` of the service database, plus the worker's state."""
    service = service_of(state)
    report = await _queue_status(service)
    return {**report, "worker": service.worker.describe(), **service.rules.describe()}


async def _queue_status(service: ServiceContext) -> dict[str, Any]:
    """``workspace_status`` of a SQLite service database; of a PostgreSQL one, the queue's own status counts."""
    if isinstance(service.db_path, Path):
        return await live_workspace_status(service.db_path)
    counts = await service.queue.status()
    return {"runs": [], "db_path": redact_url(service.db_path), "backend": "postgresql", **counts}


@post("/runs")
async def submit_run(
    data: JSONBody[SubmitRun], state: State, request: Request[Any, Any, Any]
) -> Response[dict[str, Any]]:
    """Queue a run of a config under the config root; a known idempotency key returns its request."""
    await _refuse_unknown_fields(request)
    service = service_of(state)
    if not -MAX_PRIORITY <= data.priority <= MAX_PRIORITY:
        raise ConfigError(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}", field="priority")
    if data.idempotency_key is not None and not 0 < len(data.idempotency_key) <= 200:
        raise ConfigError("idempotency_key must be 1 to 200 characters", field="idempotency_key")
    path = service.rules.config_path(data.config_path)  # a ConfigError naming config_path when it cannot resolve
    config = await call_in_thread(load_submitted, path, data.config_path)
    service.rules.check(config)  # again when a worker runs it: the file may change meanwhile
    fields = request_fields(config)
    queued = await service.queue.submit(
        **fields, priority=data.priority, idempotency_key=data.idempotency_key, fresh=data.fresh
    )
    if data.auto_start:
        await service.ensure_worker_loop()
    service.worker.wake()
    queued_request = queued.request
    body = {
        "request_id": queued_request.request_id,
        "run_id": queued_request.run_id,
        "status": queued_request.status.value,
        "deduplicated": queued.deduplicated,
    }
    return Response(body, status_code=200 if queued.deduplicated else 201)


@get("/runs")
async def list_runs(state: State, status: FromQuery[str | None] = None, limit: FromQuery[int] = 100) -> dict[str, Any]:
    """Requests, newest first (without their full result JSON)."""
    if not 1 <= limit <= MAX_LIST:
        raise ValidationException(
            "Validation failed for GET /runs",
            extra=[
                {
                    "key": "limit",
                    "source": "query",
                    "message": f"{limit} is out of range; give the number of requests to list, 1 to {MAX_LIST}",
                }
            ],
        )
    service = service_of(state)
    requests = await service.queue.list_requests(status=status, limit=limit)
    return {"requests": [public_view(r, with_result=False) for r in requests]}


@get("/runs/{request_id:str}")
async def get_run(request_id: FromPath[str], state: State) -> dict[str, Any]:
    """One request, with its run summary once it has finished."""
    service = service_of(state)
    return public_view(await service.queue.get(request_id))


@post("/runs/{request_id:str}/cancel", status_code=200)
async def cancel_run(request_id: FromPath[str], state: State) -> dict[str, Any]:
    """Cancel a queued request at once; stop a running one (its run is recorded as cancelled)."""
    service = service_of(state)
    request = await service.queue.cancel(request_id, reason="cancelled through the service")
    service.worker.cancel_local(request_id)
    return public_view(request, with_result=False)


@get("/runs/{request_id:str}/events")
async def run_events(request_id: FromPath[str], state: State) -> ServerSentEvent:
    """The events of the request's current attempt as server-sent events, live, ending (with an ``end`` event) when
    the request is terminal. They come from the queue's database, where the worker running the request appends
    its run's feed (:mod:`synth_opt.service.feed`), so a run on another host streams as well as one here. Lines an
    earlier attempt or run left in the run directory are never sent: an attempt's stream starts at the
    ``run.state`` (``created`` or ``resumed``) it wrote itself."""
    service = service_of(state)
    request = await service.queue.get(request_id)
    return ServerSentEvent(_follow(service, request))


async def _follow(service: ServiceContext, request: RunRequest) -> AsyncIterator[ServerSentEventMessage]:
    attempt, after = request.attempts, -1
    while True:
        current = await service.queue.get(request.request_id)
        terminal = current.status.terminal  # read before the lines: the worker appends them all before its outcome
        if current.attempts != attempt:  # a new attempt: its stream starts over
            attempt, after = current.attempts, -1
        if current.status is not RequestStatus.QUEUED and attempt > 0:
            while rows := await service.queue.events(current.request_id, attempt, after=after):
                for _, line in rows:
                    yield _message(line)
                after = rows[-1][0]
        if terminal or service.stopping:
            end = {"request_id": current.request_id, "status": current.status.value}
            yield ServerSentEventMessage(data=json.dumps(end), event="end")
            return
        await anyio.sleep(service.events_poll_seconds)


def _message(text: str) -> ServerSentEventMessage:
    try:
        event = json.loads(text)
    except ValueError:
        return ServerSentEventMessage(data=text, event="line")
    if not isinstance(event, dict):
        return ServerSentEventMessage(data=text, event="line")
    return ServerSentEventMessage(data=text, event=str(event.get("type", "event")), id=event.get("sequence_number"))


@get("/workspace")
async def workspace(state: State, request_id: FromQuery[str | None] = None) -> dict[str, Any]:
    """``workspace_status`` of the service database; with ``request_id``, of that request's run workspace (live
    candidate and rollout progress while it runs)."""
    service = service_of(state)
    if request_id is None:
        return await _queue_status(service)
    request = await service.queue.get(request_id)
    run_dir = request.run_dir
    db = request.workspace_db_path or (str(Path(run_dir) / "workspace.sqlite") if run_dir else None)
    if db is None or not await anyio.Path(db).is_file():
        raise QueueConflictError(
            f"run request {request_id} is {request.status} and has no run workspace{f' at {db}' if db else ''}; "
            "it is written once the run starts",
            request_id=request_id,
            status=request.status.value,
        )
    run_report = await live_workspace_status(db)
    return {"request_id": request_id, "run_id": request.run_id, **run_report}


@post("/worker/run-next", status_code=200)
async def worker_run_next(state: State) -> dict[str, Any]:
    """Claim and execute the next queued request now (after the one running, if any); ``request`` is null when
    nothing was claimable."""
    service = service_of(state)
    final = await service.worker.run_next()
    return {"request": None if final is None else public_view(final)}


@post("/worker/recover", status_code=200)
async def worker_recover(state: State) -> dict[str, Any]:
    """Requeue expired leased and running requests."""
    service = service_of(state)
    return (await service.queue.recover()).to_dict()


ROUTES = [
    health,
    status,
    submit_run,
    list_runs,
    get_run,
    cancel_run,
    run_events,
    workspace,
    worker_run_next,
    worker_recover,
]
