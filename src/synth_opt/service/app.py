"""``create_app()``: the standing GEPA service (litestar) over a SQLite run queue.

Resources are opened in the lifespan: the queue (recovering expired leases at start-up), its async (aiosqlite) twin
for the routes and, with ``auto_start``, a background worker that claims and runs requests one at a time.
Shutting down stops claiming, asks the running request to stop within ``grace_seconds`` and releases its lease, so
it is queued again.

Logs go through structlog (:mod:`synth_opt.logs`); while a route serves a request that names a run request
(``/runs/{request_id}...``, ``?request_id=``) its ``request_id`` is bound (:class:`BindRequestId`), and the worker
binds ``request_id``, ``run_id`` and ``worker_id`` while it runs one, so every line logged beneath carries them.

Every error reaches the caller as ``{"error": {"code", "message", "detail"}}``: 4xx for the caller's mistakes
(malformed or too deeply nested JSON, and missing, mistyped or unknown fields 400, with the field named in the
message; a submitted config that names a path outside the service's roots or a command the service does not allow
400, naming the key; a bad or missing config or a config path outside the config root 422; an unknown request 404;
a conflict, a lost lease or a request with no run workspace yet 409; a missing or wrong bearer token 401), 503
when the queue's PostgreSQL server stayed unreachable while the queue reconnected, 500 only for a bug. With a
``bearer_token`` every route but ``/health`` (the OpenAPI schema at ``/schema`` included) needs
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
from litestar import Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.types import ASGIApp, Receive, Scope, Send
from structlog.contextvars import bound_contextvars

from synth_opt.errors import ConfigError, LeaseLostError, RunStateError, SynthOptimizerError, UsageError
from synth_opt.logs import get_logger
from synth_opt.service.confine import Confinement
from synth_opt.service.errors import (
    ConfinementError,
    QueueConflictError,
    QueueUnavailableError,
    RunRequestNotFoundError,
    ServiceAuthError,
)
from synth_opt.service.queue import DEFAULT_LEASE_SECONDS, open_queue, queue_location
from synth_opt.service.routes import ROUTES, ServiceContext
from synth_opt.service.worker_loop import ServiceWorker
from synth_opt.version import __version__

__all__ = ["BindRequestId", "create_app", "error_status"]

_log = get_logger("synth_opt.service")

_STATUS: tuple[tuple[type[SynthOptimizerError], int], ...] = (
    (RunRequestNotFoundError, 404),
    (ServiceAuthError, 401),
    (QueueConflictError, 409),
    (LeaseLostError, 409),
    (RunStateError, 409),
    (QueueUnavailableError, 503),
    (ConfinementError, 400),
    (ConfigError, 422),
    (UsageError, 400),
)


def error_status(error: SynthOptimizerError) -> int:
    """The HTTP status of a synth_opt error: 4xx for the caller's mistakes, 500 for everything else."""
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 500)


def _envelope(
    code: str, message: str, detail: Any, status: int, headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        {"error": {"code": code, "message": message, "detail": detail}}, status_code=status, headers=headers
    )


def _synth_error(request: Request[Any, Any, Any], error: SynthOptimizerError) -> Response[Any]:
    status = error_status(error)
    if status == 500:
        _log.error("request failed", method=request.method, path=request.url.path, error=error.one_line())
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return _envelope(error.error_code, error.message, error.detail, status, headers)


def _problem(entry: Any) -> str | None:
    """One litestar validation entry (``{"message", "key", "source"}``) as ``body field priority: Expected ...``."""
    if not isinstance(entry, dict) or not entry.get("message"):
        return None
    key, message = entry.get("key"), str(entry["message"])
    source = getattr(entry.get("source"), "value", entry.get("source"))  # litestar's ParamType enum, or a str
    if key == "data" and source == "body":
        # litestar reports a missing body as the KeyError text "'data'"
        text = "the request body is missing; send a JSON object" if message == "'data'" else message
        return f"body: {text}"
    where = " ".join(str(part) for part in (source, "field" if source == "body" else "parameter", key) if part)
    return f"{where}: {message}" if key else message


def _http_error(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    status = error.status_code
    code = "validation_error" if status == 400 else HTTPStatus(status).phrase.lower().replace(" ", "_")
    detail: dict[str, Any] = {"errors": error.extra} if error.extra else {}
    headers = dict(error.headers or {})
    message = str(error.detail)
    problems = [text for text in map(_problem, error.extra if isinstance(error.extra, list) else []) if text]
    if problems:
        message = f"{message}: {'; '.join(problems)}"
    where = f"{request.method} {request.url.path}"
    if status == 404:
        message = f"no route {where}; the routes are listed in the OpenAPI schema at /schema/openapi.json"
        detail = {"method": request.method, "path": request.url.path}
    elif status == 405:
        allowed = [m.strip() for m in headers.get("allow", headers.get("Allow", "")).split(",") if m.strip()]
        message = f"{where} is not allowed; {request.url.path} takes {', '.join(allowed) or 'other methods'}"
        detail = {"method": request.method, "path": request.url.path, "allowed": allowed}
    elif status == 413:
        limit = request.route_handler.resolve_request_max_body_size()
        message = (
            f"the body of {where} is larger than the service's limit of {limit} bytes; send a smaller body (a run "
            'request is a small JSON object such as {"config_path": "gepa.toml"})'
        )
        detail = {"limit_bytes": limit}
    elif status == 400 and message.startswith("JSON is malformed"):
        message = (
            f"the request body is not valid JSON ({message.removeprefix('JSON is malformed: ')}); the body must be "
            'a JSON object, such as {"config_path": "gepa.toml"}'
        )
    return _envelope(code, message, detail, status, headers or None)


def _recursion(request: Request[Any, Any, Any], error: RecursionError) -> Response[Any]:
    """msgspec refuses JSON nested deeper than the interpreter's recursion limit: the caller's mistake, a 400."""
    if "deserializ" not in str(error):
        return _bug(request, error)
    entry = {"key": "data", "source": "body", "message": str(error)}
    return _envelope("validation_error", "the JSON body is nested too deeply", {"errors": [entry]}, 400)


def _bug(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    _log.error("request failed unexpectedly", method=request.method, path=request.url.path, exc_info=error)
    message = f"unexpected {type(error).__name__}; see the service log"
    return _envelope("internal_error", message, {}, 500)


def _token_guard(token: str | None) -> Any:
    expected = None if token is None else token.encode()

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if expected is None or handler.opt.get("public"):
            return
        scheme, _, given = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise ServiceAuthError("missing or wrong bearer token; send 'Authorization: Bearer <token>'")

    return guard


class BindRequestId:
    """ASGI middleware: while a route serves a request that names a run request (``/runs/{request_id}...`` or
    ``?request_id=``), its ``request_id`` is bound (``structlog.contextvars``), so every line logged meanwhile, the
    error handlers' included, carries it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _named_request(scope)
        if request_id is None:
            await self.app(scope, receive, send)
            return
        with bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send)


def _named_request(scope: Scope) -> str | None:
    named = scope.get("path_params", {}).get("request_id")
    if isinstance(named, str) and named:
        return named
    query = scope.get("query_string", b"")
    found = parse_qs(query.decode("latin-1")).get("request_id") if query else None
    return found[0] if found else None


def create_app(
    db_path: str | Path,
    *,
    worker_id: str,
    config_root: str | Path,
    runs_root: str | Path | None = None,
    allow_commands: bool = False,
    bearer_token: str | None = None,
    auto_start: bool = True,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    poll_seconds: float = 1.0,
    grace_seconds: float = 10.0,
) -> Litestar:
    """The service app. ``config_root`` confines submitted config paths; the paths inside a submitted config must lie
    under it or ``runs_root`` (default: the config root), and the config may start programs of its own only with
    ``allow_commands`` (:mod:`synth_opt.service.confine`). ``auto_start`` starts the background worker at start-up
    (otherwise the first ``POST /runs`` with ``auto_start: true`` does)."""
    if bearer_token is not None and not bearer_token.strip():
        raise ConfigError("the bearer token is empty; set a non-empty token or none", field="bearer_token")
    root = Path(config_root).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"config root {root} is not a directory; pass an existing --config-root", field="config_root")
    runs = None if runs_root is None else Path(runs_root).expanduser().resolve()
    if runs is not None and not runs.is_dir():
        raise ConfigError(f"runs root {runs} is not a directory; pass an existing --runs-root", field="runs_root")
    confinement = Confinement.of(root, runs, allow_commands=allow_commands)
    db = queue_location(db_path)  # a SQLite file (/status reads it itself) or a postgresql:// URL
    service = ServiceContext(db_path=db, config_root=root, worker_id=worker_id, confinement=confinement)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        opened = open_queue(service.db_path, lease_seconds=lease_seconds)  # creates and migrates the file
        try:
            async with opened.open_async() as queue, anyio.create_task_group() as tg:
                service.queue_ = queue
                service.worker_ = ServiceWorker(
                    queue, worker_id=worker_id, confinement=confinement, poll_seconds=poll_seconds
                )
                recovered = await queue.recover()
                if recovered.recovered:
                    _log.warning(
                        "start-up recovery", requeued=list(recovered.requeued), cancelled=list(recovered.cancelled)
                    )
                service.task_group = tg
                if auto_start:
                    await tg.start(service.worker.serve)
                try:
                    yield
                finally:
                    service.stopping = True
                    with anyio.CancelScope(shield=True):
                        await service.worker.shutdown(grace_seconds)
                    tg.cancel_scope.cancel()
        finally:
            service.task_group = None
            service.queue_ = None
            opened.close()

    return Litestar(
        route_handlers=ROUTES,
        state=State({"service": service}),
        lifespan=[lifespan],
        guards=[_token_guard(bearer_token)],
        middleware=[BindRequestId],
        exception_handlers={
            SynthOptimizerError: _synth_error,
            HTTPException: _http_error,
            RecursionError: _recursion,
            Exception: _bug,
        },
        openapi_config=OpenAPIConfig(
            title="synth_opt GEPA service",
            version=__version__,
            path="/schema",
            render_plugins=[JsonRenderPlugin(), SwaggerRenderPlugin()],
        ),
        debug=False,
    )
