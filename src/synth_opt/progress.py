"""Progress: a live rich display on a terminal, structured log lines elsewhere.

Both read the run's event stream (the same events written to ``events.jsonl``) through a bounded subscription of
the event bus, so a slow terminal drops events instead of slowing the pipeline.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from synth_opt.events import Event
from synth_opt.pipeline import PipelineStats
from synth_opt.run import RunObserver, RunView

__all__ = ["ProgressModel", "choose_observer", "live_observer", "log_observer", "render_progress", "replay_summary"]

LOGGED_TYPES = frozenset(
    {
        "run.state",
        "dataset.resolved",
        "seed.scored",
        "acceptance.decided",
        "search.stopped",
        "heldout.scored",
        "run.finished",
        "container.warning",
        "proposer.failed",
        "rollout.degraded",
    }
)


@dataclass(slots=True)
class ProgressModel:
    """Counters folded from the event stream."""

    state: str = "created"
    train_rollouts: int = 0
    heldout_rollouts: int = 0
    proposals: int = 0
    accepted: int = 0
    rejected: int = 0
    seed_score: float | None = None
    best_score: float | None = None
    frontier_size: int = 0
    pool_size: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    stop_reason: str | None = None
    heldout: dict[str, float] = field(default_factory=dict)
    last_message: str = ""

    def apply(self, event: Event) -> None:
        f = event.fields
        kind = event.type
        if kind == "run.state":
            self.state = str(f.get("state", self.state))
        elif kind in ("rollout.completed", "rollout.degraded"):
            if f.get("stage") == "heldout":
                self.heldout_rollouts += 1
            else:
                self.train_rollouts += 1
            usage = f.get("usage") or {}
            self.tokens += int(usage.get("total_tokens") or 0)
            self.cost_usd += float(usage.get("cost_usd") or 0.0)
        elif kind == "proposer.called":
            usage = f.get("usage") or {}
            self.tokens += int(usage.get("total_tokens") or 0)
            self.cost_usd += float(usage.get("cost_usd") or 0.0)
        elif kind == "proposal.planned":
            self.proposals += 1
        elif kind == "acceptance.decided":
            if f.get("accepted"):
                self.accepted += 1
            else:
                self.rejected += 1
        elif kind == "seed.scored" and f.get("mean_score") is not None:
            self.seed_score = float(f["mean_score"])
        elif kind == "frontier.updated":
            self.frontier_size = len(f.get("members") or [])
            self.pool_size = int(f.get("pool_size") or 0)
            if f.get("best_mean_score") is not None:
                self.best_score = float(f["best_mean_score"])
        elif kind == "search.stopped":
            self.stop_reason = str(f.get("stop_reason"))
        elif kind == "heldout.scored" and f.get("mean_score") is not None:
            self.heldout[str(f.get("candidate_id"))] = float(f["mean_score"])
        if kind in LOGGED_TYPES:
            self.last_message = event.message


def render_progress(model: ProgressModel, view: RunView, *, elapsed: float) -> Group:
    """The live display: a budget bar with ETA, lane rows and the search's counters."""
    cap = max(view.train_cap, 1)
    used = model.train_rollouts
    rate = used / elapsed if elapsed > 0 else 0.0
    eta = (cap - used) / rate if rate > 0 and used < cap else 0.0
    header = Text.assemble((f"GEPA {view.run_id}", "bold"), f"  state: {model.state}", f"  elapsed {elapsed:,.0f}s")
    budget = Table.grid(padding=(0, 1))
    budget.add_row(
        "train rollouts",
        ProgressBar(total=cap, completed=min(used, cap), width=40),
        f"{used:,}/{view.train_cap:,}",
        f"{rate:,.0f}/s",
        f"ETA {eta:,.0f}s" if eta else "",
    )
    if view.heldout_cap:
        budget.add_row(
            "heldout rollouts",
            ProgressBar(total=view.heldout_cap, completed=model.heldout_rollouts, width=40),
            f"{model.heldout_rollouts:,}/{view.heldout_cap:,}",
            "",
            "",
        )
    lanes = Table("lane", "busy", "workers", "done", box=None, header_style="dim")
    for name, lane in view.stats.lanes.items():
        lanes.add_row(name, str(lane.busy), str(lane.workers), f"{lane.done:,}")
    search = Table.grid(padding=(0, 2))
    seed = "-" if model.seed_score is None else f"{model.seed_score:.4f}"
    best = "-" if model.best_score is None else f"{model.best_score:.4f}"
    search.add_row(
        f"proposals {model.proposals}",
        f"accepted {model.accepted}",
        f"rejected {model.rejected}",
        f"pool {model.pool_size}",
        f"frontier {model.frontier_size}",
    )
    search.add_row(f"best {best}", f"seed {seed}", f"tokens {model.tokens:,}", f"cost ${model.cost_usd:.4f}", "")
    footer = Text(model.last_message, style="dim")
    if not view.stats.lanes:  # a replayed feed has no live lanes
        return Group(header, budget, search, footer)
    return Group(header, budget, lanes, search, footer)


def replay_summary(events: Iterable[Event], *, run_id: str) -> Group:
    """The display as it stood at the end of a recorded feed: the same renderer the live run uses."""
    model = ProgressModel()
    view = RunView(run_id, None, PipelineStats())
    first: datetime | None = None
    last: datetime | None = None
    for event in events:
        model.apply(event)
        if event.type == "budget.updated":
            view.train_cap = int(event.fields.get("train_cap") or view.train_cap)
        if event.type == "dataset.resolved":
            view.heldout_cap = 2 * len(event.fields.get("heldout_ids") or [])
        stamp = _parse_ts(event.ts)
        if stamp is not None:
            first = first or stamp
            last = stamp
    elapsed = (last - first).total_seconds() if first and last else 0.0
    return render_progress(model, view, elapsed=elapsed)


def _parse_ts(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def live_observer(console: Console | None = None) -> RunObserver:
    async def observe(events: MemoryObjectReceiveStream[Event], view: RunView) -> None:
        model = ProgressModel()
        out = console or Console(stderr=True)

        class _Renderable:
            def __rich__(self) -> Group:
                return render_progress(model, view, elapsed=time.monotonic() - view.started_monotonic)

        with Live(_Renderable(), console=out, refresh_per_second=4, transient=False):
            async with events:
                async for batch in _batches(events):
                    for event in batch:
                        model.apply(event)

    return observe


def log_observer(*, log_format: str = "console", log_level: str = "info", interval_seconds: float = 5.0) -> RunObserver:
    async def observe(events: MemoryObjectReceiveStream[Event], view: RunView) -> None:
        _configure_logging(log_format, log_level)
        log = structlog.get_logger("synth_opt").bind(run_id=view.run_id)
        model = ProgressModel()
        last = time.monotonic()
        async with events:
            async for event in _each(events):
                model.apply(event)
                fields: dict[str, Any] = {"event_type": event.type}
                if "candidate_id" in event.fields:
                    fields["candidate_id"] = event.fields["candidate_id"]
                if event.type in LOGGED_TYPES:
                    log.info(event.message, **fields)
                elif event.type.startswith("rollout.") or event.type.startswith("proposer."):
                    log.debug(event.message, **fields)
                now = time.monotonic()
                if now - last >= interval_seconds:
                    last = now
                    log.info(
                        "progress",
                        train_rollouts=model.train_rollouts,
                        train_cap=view.train_cap,
                        proposals=model.proposals,
                        accepted=model.accepted,
                        best=model.best_score,
                        seed=model.seed_score,
                    )

    return observe


async def _batches(events: MemoryObjectReceiveStream[Event]) -> AsyncIterator[list[Event]]:
    """Everything already queued at once, then wait for more: one task switch per batch, not per event."""
    while True:
        try:
            batch = [await events.receive()]
        except anyio.EndOfStream:
            return
        while True:
            try:
                batch.append(events.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        yield batch


async def _each(events: MemoryObjectReceiveStream[Event]) -> AsyncIterator[Event]:
    async for batch in _batches(events):
        for event in batch:
            yield event


def choose_observer(*, live: bool, log_format: str = "console", log_level: str = "info") -> RunObserver:
    if live and log_format == "console":
        return live_observer()
    return log_observer(log_format=log_format, log_level=log_level)


def _configure_logging(log_format: str, log_level: str) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer() if log_format == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(log_level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
