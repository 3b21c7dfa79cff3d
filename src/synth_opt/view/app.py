"""``synth-opt view``: the run browser, a litestar app over a folder of run directories.

Routes: ``/`` (the runs), ``/runs/{run_id}`` (a run: summary, score chart, lineage tree, heldout table, decisions),
``/runs/{run_id}/candidates/{candidate_id}`` (a candidate's text as a diff against its parent, its scores) and
``/runs/{run_id}/score_chart.svg``. Each request reads the run's workspace read-only, so a running run is shown as
it goes. Every response carries a Content-Security-Policy that allows no script. Only files that resolve inside
the run's own directory under the runs folder are read or served (a link leading elsewhere is a 404); a run whose
files cannot be read is a 503 page naming the file and what to do; an unexpected error is logged, and a 500 page.

Loopback by default; binding elsewhere needs a bearer token (as for the service): a client sends it as
``Authorization: Bearer <token>``, or a browser opens any page once with ``?token=<token>`` and keeps it in a
cookie.
"""

from __future__ import annotations

import hmac
import sys
from pathlib import Path
from typing import Any, Final

import uvicorn
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect

from synth_opt.errors import ConfigError
from synth_opt.listening import server_config
from synth_opt.logs import get_logger
from synth_opt.urls import serving_token
from synth_opt.view.data import WORKSPACE, DamagedRun, candidate_detail, list_runs, run_detail, run_file
from synth_opt.view.pages import candidate_page, message_page, run_page, runs_page

__all__ = ["CONTENT_SECURITY_POLICY", "serve_view", "view_app"]

CONTENT_SECURITY_POLICY: Final = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; base-uri 'none'"
_COOKIE: Final = "synth_opt_view"
_HTML: Final = "text/html"  # litestar adds the charset

log = get_logger(__name__)


def _run_dir(state: State, run_id: str) -> Path:
    """The run directory ``run_id`` names: a directory right under the runs folder (once links are resolved)
    holding a workspace; anything else (``..``, a NUL byte, a name too long, a link leading out) is a 404."""
    runs: Path = state.runs_dir
    try:
        found = (runs / run_id).resolve()
        inside = found.parent == runs.resolve() and run_file(found, WORKSPACE) is not None
    except (OSError, ValueError):
        inside = False
    if not inside:
        shown = run_id if len(run_id) <= 80 else run_id[:77] + "..."
        raise NotFoundException(detail=f"no run {shown!r} in {runs}")
    return found


def _html(body: str, status: int = 200) -> Response[str]:
    return Response(body, status_code=status, media_type=_HTML)


@get("/", sync_to_thread=True)
def index(state: State) -> Response[str]:
    return _html(runs_page(list_runs(state.runs_dir), str(state.runs_dir)))


@get("/runs/{run_id:str}", sync_to_thread=True)
def run(state: State, run_id: FromPath[str]) -> Response[str]:
    return _html(run_page(run_detail(_run_dir(state, run_id))))


@get("/runs/{run_id:str}/candidates/{candidate_id:str}", sync_to_thread=True)
def candidate(state: State, run_id: FromPath[str], candidate_id: FromPath[str]) -> Response[str]:
    run_dir = _run_dir(state, run_id)
    detail = candidate_detail(run_dir, candidate_id)
    if detail is None:
        raise NotFoundException(detail=f"no candidate {candidate_id!r} in run {run_id!r}")
    return _html(candidate_page(detail))


@get("/runs/{run_id:str}/score_chart.svg", sync_to_thread=True)
def score_chart(state: State, run_id: FromPath[str]) -> Response[bytes]:
    chart = run_file(_run_dir(state, run_id), "score_chart.svg")
    if chart is None:
        raise NotFoundException(detail=f"run {run_id!r} has no score chart yet")
    return Response(chart.read_bytes(), media_type="image/svg+xml")


def view_app(runs_dir: Path, *, bearer_token: str | None = None) -> Litestar:
    """The browser over ``runs_dir``; with ``bearer_token`` every request must carry it."""

    async def guard(request: Request[Any, Any, Any]) -> Response[Any] | None:
        if bearer_token is None:
            return None
        given = request.query_params.get("token")
        if given is not None and hmac.compare_digest(given.encode(), bearer_token.encode()):
            redirect = Redirect(path=request.url.path)
            redirect.set_cookie(_COOKIE, bearer_token, httponly=True, samesite="strict")
            return redirect
        sent = request.headers.get("authorization", "")
        cookie = request.cookies.get(_COOKIE, "")
        if hmac.compare_digest(sent.encode(), f"Bearer {bearer_token}".encode()) or hmac.compare_digest(
            cookie.encode(), bearer_token.encode()
        ):
            return None
        raise NotAuthorizedException(detail="a bearer token is required (Authorization: Bearer, or ?token= once)")

    def not_found(request: Request[Any, Any, Any], exc: NotFoundException) -> Response[str]:
        return _html(message_page("Not found", str(exc.detail)), status=404)

    def unreadable(request: Request[Any, Any, Any], exc: DamagedRun) -> Response[str]:
        return _html(message_page(f"Cannot read {exc.path.name}", str(exc)), status=503)

    def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
        log.error("view.unexpected_error", path=request.url.path, exc_info=exc)
        return _html(message_page("Unexpected error", "synth-opt view logged what went wrong"), status=500)

    async def secure(response: Response[Any]) -> Response[Any]:
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return Litestar(
        route_handlers=[index, run, candidate, score_chart],
        state=State({"runs_dir": runs_dir}),
        before_request=guard,
        after_request=secure,
        exception_handlers={NotFoundException: not_found, DamagedRun: unreadable, 500: unexpected},
        debug=False,
    )


def serve_view(runs_dir: Path, *, host: str = "127.0.0.1", port: int = 8880, token_env: str | None = None) -> int:
    """Serve the browser until stopped (see the module's docstring for binding beyond loopback)."""
    token = serving_token(host, token_env, flag="--host", shown=host)
    if not runs_dir.is_dir():
        raise ConfigError(f"--runs {runs_dir}: not a directory; point it at a runs folder (run.output_dir)")
    if (runs_dir / WORKSPACE).exists():
        raise ConfigError(
            f"--runs {runs_dir}: a run directory, not a runs folder; pass the folder holding it: "
            f"--runs {runs_dir.resolve().parent}"
        )
    print(f"synth-opt view of {runs_dir.resolve()} on http://{host}:{port}", file=sys.stderr)
    app = view_app(runs_dir.resolve(), bearer_token=token)
    uvicorn.Server(server_config(app, host=host, port=port, log_level="warning", lifespan="on")).run()
    return 0
