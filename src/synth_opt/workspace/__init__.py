"""The run workspace: ``<run_dir>/workspace.sqlite``, a SQLite read model written from the event stream.

One writer task per run (:func:`run_workspace_writer`) drains a bus subscription into batched ``BEGIN IMMEDIATE``
transactions; :func:`finalize_workspace` back-fills from ``events.jsonl`` at the end of the run;
:func:`workspace_status` reads it live (with projection freshness and an invariant report);
:func:`repair_workspace` rebuilds derived tables from their sources. Layout:

- ``schema``: migrations (``PRAGMA user_version``) and table groups;
- ``rows``, ``projector``, ``project_search``, ``project_io``: pure event -> rows projection;
- ``db``: connections, PRAGMAs, migrations, the one write path;
- ``writer``: the live writer and the end-of-run finalize;
- ``freshness``: coverage checks and invariant reports;
- ``status``, ``repair``, ``commands``: what users call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synth_opt.workspace.commands import repair_command, status_command
    from synth_opt.workspace.repair import repair_workspace
    from synth_opt.workspace.schema import SCHEMA_VERSION
    from synth_opt.workspace.status import workspace_status
    from synth_opt.workspace.writer import WriterStats, complete_workspace, finalize_workspace, run_workspace_writer

# Loaded when first asked for: the writer's child process imports this package for its writer alone, and should not
# load the commands' display (rich) and the repair to start.
_EXPORTS = {
    "SCHEMA_VERSION": "schema",
    "WriterStats": "writer",
    "complete_workspace": "writer",
    "finalize_workspace": "writer",
    "repair_command": "commands",
    "repair_workspace": "repair",
    "run_workspace_writer": "writer",
    "status_command": "commands",
    "workspace_status": "status",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "SCHEMA_VERSION",
    "WriterStats",
    "complete_workspace",
    "finalize_workspace",
    "repair_command",
    "repair_workspace",
    "run_workspace_writer",
    "status_command",
    "workspace_status",
]
