"""What ``synth-opt workspace status`` and ``synth-opt workspace repair`` do (the CLI parses and calls these).

``status`` prints rich tables on a terminal and JSON otherwise (``--json`` forces JSON). Errors
(:class:`~synth_opt.errors.ConfigError` for a missing or foreign file) propagate to the CLI, which prints one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from synth_opt.workspace.repair import repair_workspace
from synth_opt.workspace.status import COUNT_KEYS, workspace_status

__all__ = ["render_status", "repair_command", "status_command"]

_SUMMARY_KEYS = (
    "status",
    "stop_reason",
    "candidates",
    "proposals",
    "accepted",
    "rejected",
    "rollouts",
    "events",
    "frontier_size",
    "best_candidate_id",
    "best_mean_score",
    "updated_at",
)


def status_command(db: Path, *, as_json: bool = False, console: Console | None = None) -> int:
    """Print the workspace status; exit code 0 (a violated invariant is reported, not an error)."""
    console = console if console is not None else Console()
    status = workspace_status(db)
    if as_json or not console.is_terminal:
        console.file.write(json.dumps(status, indent=2, default=str) + "\n")
        console.file.flush()
    else:
        for renderable in render_status(status):
            console.print(renderable)
    return 0


def repair_command(db: Path, *, as_json: bool = False, console: Console | None = None) -> int:
    """Rebuild derived tables (a corrupt database is moved aside and rebuilt, and the output says so); exit code 0
    when every invariant holds afterwards, else 1."""
    console = console if console is not None else Console()
    summary = repair_workspace(db)
    if as_json or not console.is_terminal:
        console.file.write(json.dumps(summary, indent=2, default=str) + "\n")
        console.file.flush()
    else:
        moved = summary.get("moved_aside")
        if moved is not None:
            console.print(
                f"{summary['db_path']} was corrupt ({moved['problem']}): moved it aside to {moved['to']} "
                f"and rebuilt a fresh database from {moved['rebuilt_from']}",
                highlight=False,
                markup=False,
            )
        console.print(
            f"repaired {summary['db_path']}: back-filled {summary['backfilled_events']} event(s)", highlight=False
        )
        for run_id, run in summary["runs"].items():
            restored = ", ".join(f"{t} +{n}" for t, n in run["restored_rows"].items() if n > 0) or "nothing missing"
            line = f"  {run_id}: {restored}; invariants {run['invariant_status']}: {run['message']}"
            console.print(line, highlight=False, markup=False)
    return 0 if summary["status"] == "ok" else 1


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else escape(str(value))


def render_status(status: dict[str, Any]) -> list[Table]:
    """One summary table and one counts table per run, a freshness table, and the service counts if any."""
    tables: list[Table] = []
    for run in status["runs"]:
        summary = Table(title=f"run {run['run_id']}  ({status['db_path']}, schema {status['schema_version']})")
        summary.add_column("field")
        summary.add_column("value")
        for key in _SUMMARY_KEYS:
            summary.add_row(key, _cell(run.get(key)))
        stopper = run.get("stopper") or {}
        summary.add_row(
            "rollouts used / train cap", f"{_cell(stopper.get('rollouts_used'))} / {_cell(stopper.get('train_cap'))}"
        )
        if stopper.get("rollouts_reused") is not None:
            summary.add_row("rollouts reused", _cell(stopper.get("rollouts_reused")))
        usage = run.get("usage") or {}
        summary.add_row("tokens / cost", f"{_cell(usage.get('total_tokens'))} / {_cell(usage.get('cost_usd'))}")
        report = run["invariant_report"]
        summary.add_row("invariants", escape(f"{report['status']}: {report['message']}"))
        tables.append(summary)
        counts = Table(title="counts")
        counts.add_column("key")
        counts.add_column("counts")
        for key in COUNT_KEYS:
            values = run.get(key) or {}
            counts.add_row(key, escape(", ".join(f"{k}={v}" for k, v in values.items())) or "-")
        tables.append(counts)
        fresh = Table(title="projection freshness")
        for column in ("table", "status", "source rows", "derived rows", "missing"):
            fresh.add_column(column)
        for name, entry in run["projection_freshness"].items():
            style = "" if entry["status"] == "fresh" else "bold red" if entry["status"] == "stale" else "yellow"
            fresh.add_row(
                name,
                entry["status"],
                str(entry["source_rows"]),
                str(entry["derived_rows"]),
                str(entry["missing_rows"]),
                style=style,
            )
        tables.append(fresh)
    service = {k: v for k, v in status.items() if k.endswith("_status_counts")}
    if service:
        queue = Table(title="service")
        queue.add_column("key")
        queue.add_column("counts")
        for key, values in service.items():
            queue.add_row(key, ", ".join(f"{k}={v}" for k, v in values.items()) or "-")
        tables.append(queue)
    return tables
