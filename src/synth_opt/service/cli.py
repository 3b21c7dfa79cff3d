"""The service's commands, wired into ``synth-opt`` by :mod:`synth_opt.cli`:

- ``synth-opt gepa service --db --bind --worker-id [--config-root] [--runs-root] [--allow-commands] [--token-env]``
  -> :func:`serve`
- ``synth-opt gepa run-next --db [--worker-id] [--config-root [--runs-root] [--allow-commands]]`` ->
  :func:`run_next_command`
- ``synth-opt workspace recover --db`` -> :func:`recover_command`

Each returns the exit code, prints its result (JSON) on stdout and raises SynthOptimizerError for the CLI to print
as one line (a bad ``--bind``, a missing token, a database that is not a service database: exit 2).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
import uvicorn

from synth_opt.errors import ConfigError, collapse_exception_group
from synth_opt.redact import redact_url
from synth_opt.service.confine import Confinement
from synth_opt.service.functions import workspace_recover
from synth_opt.service.queue import DEFAULT_LEASE_SECONDS, RequestStatus, RunRequest, open_queue
from synth_opt.service.worker import Execution, run_next
from synth_opt.urls import is_loopback, serving_token

__all__ = ["DEFAULT_BIND", "is_loopback", "parse_bind", "recover_command", "run_next_command", "serve"]

DEFAULT_BIND = "127.0.0.1:8879"
GRACE_SECONDS = 10.0


def parse_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``; a ConfigError naming ``--bind`` otherwise."""
    host, colon, port = bind.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(
            f"--bind {bind!r} must be HOST:PORT with a port from 1 to 65535, like {DEFAULT_BIND}", field="--bind"
        )
    return host, int(port)


def serve(
    db: Path | str,
    bind: str,
    worker_id: str,
    config_root: Path,
    token_env: str | None,
    *,
    runs_root: Path | None = None,
    allow_commands: bool = False,
    grace_seconds: float = GRACE_SECONDS,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> int:
    """Run the service until SIGINT or SIGTERM; then stop claiming, stop the running request within
    ``grace_seconds`` and release its lease (it is queued again and resumes later). Submitted configs keep their
    paths under ``config_root`` or ``runs_root`` and start programs only with ``allow_commands``."""
    from synth_opt.listening import check_bindable, serve_until_stopped, server_config
    from synth_opt.service.app import create_app

    host, port = parse_bind(bind)
    token = serving_token(host, token_env, flag="--bind", shown=bind)
    open_queue(db).close()  # a bad --db is reported here, as one line, not from inside the server
    check_bindable(host, port, f"--bind {bind}")  # so is a port in use
    app = create_app(
        db,
        worker_id=worker_id,
        config_root=config_root,
        runs_root=runs_root,
        allow_commands=allow_commands,
        bearer_token=token,
        auto_start=True,
        lease_seconds=lease_seconds,
        grace_seconds=grace_seconds,
    )
    runs = f", runs root {runs_root.resolve()}" if runs_root is not None else ""
    print(
        f"synth-opt service on http://{bind} (worker {worker_id}, db {redact_url(str(db))}, config root "
        f"{config_root.resolve()}{runs}"
        f"{', submitted configs may run commands' if allow_commands else ''}"
        f"{', bearer token required' if token else ''})",
        file=sys.stderr,
    )
    server = _GracefulServer(
        server_config(
            app,
            host=host,
            port=port,
            lifespan="on",
            log_level="info",
            timeout_graceful_shutdown=int(grace_seconds),
        )
    )

    def run() -> int:
        server.run()
        return 0

    return serve_until_stopped(run, bind, f"--bind {bind}")


class _GracefulServer(uvicorn.Server):
    """uvicorn re-raises the stop signal once shut down; after a SIGTERM (a requested, graceful stop) we exit 0
    instead. SIGINT is still re-raised, so Ctrl-C ends with exit code 130."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if sig == signal.SIGTERM and isinstance(captured, list) and sig in captured:
            captured.remove(sig)


def _summary(request: RunRequest) -> dict[str, Any]:
    keys = ("request_id", "run_id", "status", "attempts", "error", "manifest_path", "best_candidate_id", "cost_usd")
    data = request.to_dict()
    return {key: data[key] for key in keys}


def run_next_command(
    db: Path | str,
    worker_id: str,
    *,
    config_root: Path | None = None,
    runs_root: Path | None = None,
    allow_commands: bool = False,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> int:
    """Recover expired leases, claim the next request, run it and exit: 0 when it completed (or nothing was
    queued), 1 when it failed or was cancelled, 130 when SIGINT/SIGTERM stopped it (its lease is released, so the
    request is queued again). With ``config_root`` the request's config is held to the service's rules (paths
    under ``config_root`` or ``runs_root``, programs only with ``allow_commands``); without it, it is trusted."""
    open_queue(db).close()
    if config_root is None and (runs_root is not None or allow_commands):
        raise ConfigError("--runs-root and --allow-commands go with --config-root", field="--config-root")
    confinement = None
    if config_root is not None:
        for flag, root in (("--config-root", config_root), ("--runs-root", runs_root)):
            if root is not None and not root.is_dir():
                raise ConfigError(f"{flag} {root} is not a directory; pass an existing one", field=flag)
        confinement = Confinement.of(config_root, runs_root, allow_commands=allow_commands)
    signalled: list[str] = []
    final = anyio.run(_run_next_with_signals, db, worker_id, confinement, lease_seconds, signalled)
    print(json.dumps({"request": None if final is None else _summary(final)}, indent=2))
    if signalled:
        return 130
    return 0 if final is None or final.status is RequestStatus.COMPLETED else 1


async def _run_next_with_signals(
    db: Path | str, worker_id: str, confinement: Confinement | None, lease_seconds: float, signalled: list[str]
) -> RunRequest | None:
    current: list[Execution] = []
    final: RunRequest | None = None
    try:
        async with anyio.create_task_group() as tg:

            async def stop_on_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for received in signals:
                        name = signal.Signals(received).name
                        signalled.append(name)
                        print(f"{name} received: stopping the run and releasing its lease", file=sys.stderr)
                        if current:
                            current[0].shutdown()
                        else:
                            tg.cancel_scope.cancel()

            tg.start_soon(stop_on_signals)
            final = await run_next(
                db, worker_id=worker_id, lease_seconds=lease_seconds, confinement=confinement, on_start=current.append
            )
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise collapse_exception_group(group) from None
    return final


def recover_command(db: Path | str) -> int:
    """Requeue expired leases and print what was recovered (``db``: a SQLite file or a ``postgresql://`` URL)."""
    if isinstance(db, Path) and not db.is_file():
        raise ConfigError(f"service database {db} does not exist; pass the --db the service uses", field="--db")
    print(json.dumps(workspace_recover(db), indent=2, sort_keys=True))
    return 0


def queue_status_command(url: str, command: str) -> int:
    """``workspace status`` of a PostgreSQL queue: its status counts as JSON (``workspace repair`` has nothing to
    rebuild there: the queue keeps no derived tables a repair could redo)."""
    if command != "status":
        raise ConfigError(
            f"workspace {command} rebuilds a SQLite workspace's derived tables; the PostgreSQL queue at "
            f"{redact_url(url)} has none: use 'workspace recover --db URL' to requeue expired leases",
            field="--db",
        )
    with open_queue(url) as queue:
        report = {"db_path": redact_url(url), "backend": "postgresql", "runs": [], **queue.status()}
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0
