"""Progress: a live rich display on a terminal, structured log lines elsewhere.

Both read the run's event stream (the same events written to ``events.jsonl``) through a bounded subscription of
the event bus, so a slow terminal drops events instead of slowing the pipeline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from synth_opt.events import UNSET, Event
from synth_opt.events.types import (
    HELDOUT_STAGE,
    AcceptanceDecided,
    BudgetUpdated,
    ConfigWarning,
    ContainerWarning,
    DatasetResolved,
    FrontierUpdated,
    HeldoutScored,
    PlanForecast,
    ProposalFailed,
    ProposalPlanned,
    ProposerCalled,
    ProposerFailed,
    ReflectionRequested,
    RolloutCompleted,
    RolloutDegraded,
    RunFinished,
    RunState,
    RunWarning,
    SearchStopped,
    SeedScored,
)
from synth_opt.logs import stderr_logger
from synth_opt.pipeline import PipelineStats
from synth_opt.run import RunObserver, RunView

__all__ = [
    "DISPLAY_TYPES",
    "ProgressModel",
    "choose_observer",
    "live_observer",
    "log_observer",
    "render_progress",
    "replay_summary",
]

LOGGED_TYPES = frozenset(
    cls.TYPE
    for cls in (
        RunState,
        DatasetResolved,
        SeedScored,
        AcceptanceDecided,
        ProposalFailed,
        SearchStopped,
        HeldoutScored,
        RunFinished,
        ContainerWarning,
        ConfigWarning,
        RunWarning,
        ProposerFailed,
        RolloutDegraded,
    )
)


# What the live display reads from the bus: not one event per rollout (the budget and lane counters carry those).
DISPLAY_TYPES = LOGGED_TYPES | frozenset(
    cls.TYPE for cls in (ProposalPlanned, FrontierUpdated, BudgetUpdated, ProposerCalled, PlanForecast)
)


@dataclass(slots=True)
class ProgressModel:
    """Counters folded from the event stream.

    Rollouts, tokens and cost are counted two ways: event by event (``rollout.completed``, ``proposer.called``:
    a replayed feed or the log lines) and from each ``budget.updated`` (the ledger's committed totals: the live
    display, which is not sent one event per rollout); the larger is shown."""

    state: str = "created"
    counted_train: int = 0
    counted_heldout: int = 0
    counted_tokens: int = 0
    counted_cost_usd: float = 0.0
    ledger_train: int = 0
    ledger_heldout: int = 0
    ledger_tokens: int = 0
    ledger_cost_usd: float = 0.0
    reused: int = 0  # rollouts not made: earlier evaluations stood for them (gepa.reuse_evaluations)
    cost_unknown: bool = False  # a call of unknown cost (no prices): the total is unknown, never $0
    scored_heldout: int = 0
    proposals: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    stale: int = 0
    asked_again: int = 0  # proposals whose first reply repeated edits in flight (gepa.pipeline.concurrent_edits)
    duplicates: int = 0  # proposals that ended with nothing new to roll out
    since_improvement: int = 0
    seed_score: float | None = None
    best_score: float | None = None
    frontier_size: int = 0
    pool_size: int = 0
    stop_reason: str | None = None
    heldout: dict[str, float] = field(default_factory=dict)
    last_message: str = ""
    forecast: PlanForecast | None = None  # the latest live forecast (plan.forecast)

    @property
    def train_rollouts(self) -> int:
        return max(self.counted_train, self.ledger_train)

    @property
    def heldout_rollouts(self) -> int:
        return max(self.counted_heldout, self.ledger_heldout, self.scored_heldout)

    @property
    def tokens(self) -> int:
        return max(self.counted_tokens, self.ledger_tokens)

    @property
    def cost_usd(self) -> float:
        return max(self.counted_cost_usd, self.ledger_cost_usd)

    def apply(self, event: Event) -> None:
        # read partially: a replayed older feed's event may lack a field this version writes (then None)
        match event.read_partially().data:
            case RunState(state=state):
                self.state = str(state)
            case RolloutCompleted() | RolloutDegraded() as rollout:
                if rollout.stage == HELDOUT_STAGE:
                    self.counted_heldout += 1
                else:
                    self.counted_train += 1
                self._count_usage(rollout.usage)
            case ProposerCalled() | ProposerFailed() as call:
                self._count_usage(call.usage)
            case BudgetUpdated() as budget:
                used = budget.used or {}
                self.ledger_train = int(used.get("train_rollouts") or 0)
                self.ledger_heldout = int(used.get("heldout_rollouts") or 0)
                self.ledger_tokens = int(used.get("tokens") or 0)
                self.ledger_cost_usd = float(used.get("cost_usd") or 0.0)
                self.since_improvement = int(budget.since_improvement or 0)
                self.reused = budget.reused if isinstance(budget.reused, int) else self.reused
            case ProposalPlanned():
                self.proposals += 1
            case AcceptanceDecided() as decision:
                if decision.accepted:
                    self.accepted += 1
                else:
                    self.rejected += 1
                    self.stale += decision.reason == "stale"
                    self.duplicates += decision.reason == "duplicate"
            case ReflectionRequested(attempt=2):
                self.asked_again += 1
            case ProposalFailed():
                self.rejected += 1
                self.failed += 1
            case SeedScored(mean_score=mean) if mean is not None:
                self.seed_score = float(mean)
            case FrontierUpdated() as frontier:
                self.frontier_size = len(frontier.members or [])
                self.pool_size = int(frontier.pool_size or 0)
                if frontier.best_mean_score is not None:
                    self.best_score = float(frontier.best_mean_score)
            case PlanForecast() as forecast:
                self.forecast = forecast
            case SearchStopped(stop_reason=reason):
                self.stop_reason = str(reason)
            case HeldoutScored() as heldout if heldout.mean_score is not None:
                self.heldout[str(heldout.candidate_id)] = float(heldout.mean_score)
                self.scored_heldout += len(heldout.scores or {})
        if event.type in LOGGED_TYPES:
            self.last_message = event.message

    def _count_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.counted_tokens += int(usage.get("total_tokens") or 0)
            self.counted_cost_usd += float(usage.get("cost_usd") or 0.0)
            self.cost_unknown = self.cost_unknown or ("cost_usd" in usage and usage["cost_usd"] is None)


@dataclass(frozen=True, slots=True)
class _Limit:
    name: str
    fraction: float
    detail: str


def _limits(model: ProgressModel, view: RunView, elapsed: float) -> list[_Limit]:
    """Every limit that can stop the search, with how much of it is used."""
    gepa = view.config.gepa if view.config is not None else None
    train_key = view.config.train_cap_key() if view.config is not None else "max_train_rollouts"
    limits = [_Limit(train_key, model.train_rollouts / max(view.train_cap, 1), "train rollouts")]
    if gepa is None:
        return limits
    if gepa.max_cost_usd > 0:
        limits.append(_Limit("max_cost_usd", model.cost_usd / gepa.max_cost_usd, f"of ${gepa.max_cost_usd:g}"))
    if gepa.max_total_tokens:
        limits.append(_Limit("max_total_tokens", model.tokens / gepa.max_total_tokens, f"of {gepa.max_total_tokens:,}"))
    if gepa.max_time_seconds:
        limits.append(_Limit("max_time_seconds", elapsed / gepa.max_time_seconds, f"of {gepa.max_time_seconds:g}s"))
    if gepa.no_improvement_iterations:
        limit = gepa.no_improvement_iterations
        detail = f"{model.since_improvement}/{limit} proposals without improvement"
        limits.append(_Limit("no_improvement_iterations", model.since_improvement / limit, detail))
    if gepa.score_threshold is not None and model.best_score is not None and gepa.score_threshold > 0:
        detail = f"best {model.best_score:.4f} of {gepa.score_threshold:g}"
        limits.append(_Limit("score_threshold", model.best_score / gepa.score_threshold, detail))
    return limits


def _next_stop(model: ProgressModel, view: RunView, elapsed: float) -> str:
    if model.stop_reason:
        return f"stopped: {model.stop_reason}"
    nearest = max(_limits(model, view, elapsed), key=lambda limit: limit.fraction)
    return f"next stop: {nearest.name} ({min(nearest.fraction, 1.0):.0%} used; {nearest.detail})"


def render_progress(model: ProgressModel, view: RunView, *, elapsed: float) -> Group:
    """The live display: a budget bar with ETA, lane rows, the search's counters, cost and tokens against their
    limits, and the limit that would stop the run next."""
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
    if model.reused:
        budget.add_row("reused", "(earlier evaluations, not rolled out again)", f"{model.reused:,}", "", "")
    if view.heldout_cap:
        budget.add_row(
            "heldout rollouts",
            ProgressBar(total=view.heldout_cap, completed=min(model.heldout_rollouts, view.heldout_cap), width=40),
            f"{model.heldout_rollouts:,}/{view.heldout_cap:,}",
            "",
            "",
        )
    lanes = Table("lane", "queued", "busy", "workers", "done", "per s", box=None, header_style="dim")
    for name, lane in view.stats.lanes.items():
        per_second = f"{lane.done / elapsed:,.1f}" if elapsed > 0 else "-"
        lanes.add_row(name, str(lane.queued), str(lane.busy), str(lane.workers), f"{lane.done:,}", per_second)
    search = Table.grid(padding=(0, 2))
    seed = "-" if model.seed_score is None else f"{model.seed_score:.4f}"
    best = "-" if model.best_score is None else f"{model.best_score:.4f}"
    gain = (
        "" if model.seed_score is None or model.best_score is None else f" ({model.best_score - model.seed_score:+.4f})"
    )
    search.add_row(
        f"proposals {model.proposals}",
        f"accepted {model.accepted}",
        f"rejected {model.rejected}",
        f"stale {model.stale}"
        + "".join(
            f", {name} {count}"
            for name, count in (
                ("failed", model.failed),
                ("asked again", model.asked_again),
                ("duplicate", model.duplicates),
            )
            if count
        ),
        f"pool {model.pool_size}",
        f"frontier {model.frontier_size}",
    )

    gepa = view.config.gepa if view.config is not None else None
    cost_limit = f" of ${gepa.max_cost_usd:g}" if gepa is not None and gepa.max_cost_usd > 0 else ""
    token_limit = f" of {gepa.max_total_tokens:,}" if gepa is not None and gepa.max_total_tokens else ""
    search.add_row(
        f"best {best}{gain}",
        f"seed {seed}",
        f"tokens {model.tokens:,}{token_limit}",
        (
            f"cost unknown (charged ${model.cost_usd:.4f}{cost_limit} at estimates)"
            if model.cost_unknown and cost_limit
            else "cost unknown"
            if model.cost_unknown
            else f"cost ${model.cost_usd:.4f}{cost_limit}"
        ),
        "",
        "",
    )
    footer = Text.assemble((_next_stop(model, view, elapsed), "cyan"), "  ", (model.last_message, "dim"))
    body: list[RenderableType] = [header, budget, *([lanes] if view.stats.lanes else []), search]  # a replay: no lanes
    if model.forecast is not None and model.stop_reason is None:
        latest = model.forecast
        accepted = "" if latest.acceptance_rate is None else f" at {latest.acceptance_rate:.0%} accepted so far"
        totals = latest.expected_totals or {}
        spend = f" (about {totals['tokens']:,.0f} tokens" if totals.get("tokens") else ""
        spend += f", ${totals['cost_usd']:,.4f})" if spend and totals.get("cost_usd") else (")" if spend else "")
        body.append(
            Text(
                f"forecast: about {latest.expected_proposals} proposals{accepted}, then {latest.stopping_limit}{spend}"
            )
        )
    return Group(*body, footer)


def replay_summary(events: Iterable[Event], *, run_id: str) -> Group:
    """The display as it stood at the end of a recorded feed: the same renderer the live run uses."""
    model = ProgressModel()
    view = RunView(run_id, None, PipelineStats())
    first: datetime | None = None
    last: datetime | None = None
    for event in events:
        model.apply(event)
        match event.read_partially().data:
            case BudgetUpdated(train_cap=cap):
                view.train_cap = int(cap or view.train_cap)
            case DatasetResolved(heldout_ids=heldout):
                view.heldout_cap = 2 * len(heldout or [])
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


FRAME_SECONDS = 0.1  # at most 10 frames a second
RENDER_SHARE = 0.02  # and never more than about 2% of the time spent drawing them


def live_observer(console: Console | None = None) -> RunObserver:
    """A rich live display on ``console`` (stderr by default). It reads only :data:`DISPLAY_TYPES` from the bus
    and draws from its own loop: a frame at most every 0.1 s, and less often when drawing is slow (a frame that
    took ``t`` seconds waits ``t / RENDER_SHARE`` before the next), so a slow terminal costs frames, not
    pipeline time."""

    async def observe(events: MemoryObjectReceiveStream[Event], view: RunView) -> None:
        model = ProgressModel()
        out = console or Console(stderr=True)

        def frame() -> Group:
            return render_progress(model, view, elapsed=time.monotonic() - view.started_monotonic)

        with Live(frame(), console=out, auto_refresh=False, transient=False) as live:
            async with events, anyio.create_task_group() as tg:

                async def draw() -> None:
                    while True:
                        started = time.perf_counter()
                        live.update(frame(), refresh=True)
                        took = time.perf_counter() - started
                        await anyio.sleep(max(FRAME_SECONDS, took / RENDER_SHARE))

                tg.start_soon(draw)
                async for batch in _batches(events):
                    for event in batch:
                        model.apply(event)
                tg.cancel_scope.cancel()
            live.update(frame(), refresh=True)

    observe.event_types = DISPLAY_TYPES  # type: ignore[attr-defined]
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
                candidate = getattr(event.data, "candidate_id", UNSET)  # the events about one candidate
                if candidate is not UNSET:
                    fields["candidate_id"] = candidate
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
        structlog.processors.JSONRenderer()
        if log_format == "json"
        # plain tracebacks, never rich's, which print every frame's locals (configs with URLs and keys)
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *([structlog.processors.format_exc_info] if log_format == "json" else []),  # a plain traceback string
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(log_level.upper())),
        logger_factory=stderr_logger,
        cache_logger_on_first_use=False,
    )
