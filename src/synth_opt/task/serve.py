"""``synth-opt task serve module:task``: import a :class:`~synth_opt.task.definition.Task` by reference and serve it.

The reference is ``module:attribute`` (``module`` importable from the current directory or ``sys.path``), the way
``[container] task`` names it in a config; the optimizer launches this command as the run's container, so the
user's code runs in that process and never in the optimizer's.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import replace
from pathlib import Path

import uvicorn

from synth_opt.config import check_task_reference
from synth_opt.errors import ConfigError
from synth_opt.listening import server_config
from synth_opt.task.app import task_app
from synth_opt.task.definition import Task
from synth_opt.urls import serving_token

__all__ = ["load_task", "serve_task"]


def load_task(reference: str, *, search_dir: Path | None = None) -> Task:
    """The :class:`Task` that ``module:attribute`` names. The current directory (or ``search_dir``) comes first on
    the import path, as for ``python -m``. A :class:`ConfigError` says what is wrong."""
    problem = check_task_reference(reference)
    if problem is not None:
        raise ConfigError(f"task {problem}", field="task")
    module_name, attribute = reference.split(":", 1)
    folder = str((search_dir or Path.cwd()).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ConfigError(
                f"task {reference!r}: no module named {exc.name!r} in {folder} or on the import path; run from the "
                "folder that holds it, or set [container] cwd",
                field="task",
            ) from None
        raise ConfigError(f"task {reference!r}: importing {module_name} failed: {exc}", field="task") from None
    except Exception as exc:  # the user's module failed to import: say so in one line
        raise ConfigError(
            f"task {reference!r}: importing {module_name} raised {type(exc).__name__}: {exc}", field="task"
        ) from None
    value: object = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ConfigError(f"task {reference!r}: {module_name} has no attribute {attribute!r}", field="task")
        value = getattr(value, part)
    if not isinstance(value, Task):
        raise ConfigError(
            f"task {reference!r} is a {type(value).__name__}, not a Task; decorate the score function with "
            "@synth_opt.task.task(rows=..., seed=...)",
            field="task",
        )
    return value


def serve_task(
    reference: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_threads: int | None = None,
    token_env: str | None = None,
) -> int:
    """Serve the task until stopped. Binding beyond loopback needs a bearer token (``token_env``: the name of the
    environment variable that holds it), as for the service."""
    token = serving_token(host, token_env, flag="--host", shown=host)
    task = load_task(reference)
    if max_threads is not None:
        task = replace(task, max_threads=max_threads)
    print(
        f"synth-opt task {task.task_name} on http://{host}:{port} ({len(task.train)} rows, {len(task.test)} heldout, "
        f"{'async' if task.is_async else f'{task.max_threads} threads'})",
        file=sys.stderr,
    )
    app = task_app(task, bearer_token=token)
    uvicorn.Server(server_config(app, host=host, port=port, log_level="warning", lifespan="on")).run()
    return 0
