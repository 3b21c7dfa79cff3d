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

from synth_opt.workspace.commands import repair_command, status_command
from synth_opt.workspace.repair import repair_workspace
from synth_opt.workspace.schema import SCHEMA_VERSION
from synth_opt.workspace.status import workspace_status
from synth_opt.workspace.writer import WriterStats, finalize_workspace, run_workspace_writer

__all__ = [
    "SCHEMA_VERSION",
    "WriterStats",
    "finalize_workspace",
    "repair_command",
    "repair_workspace",
    "run_workspace_writer",
    "status_command",
    "workspace_status",
]
