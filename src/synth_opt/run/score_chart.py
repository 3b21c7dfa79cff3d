"""A per-run score chart, drawn as SVG 1.1 from ``events.jsonl`` with the standard library only.

x is train rollouts used when a candidate was committed; y its mean score on the pareto rows. The chart shows the
seed, every accepted candidate, parent-to-child lineage, the final frontier, the best candidate, a best-so-far step
line and the rejected proposals (as a strip under the plot: they have no pareto score).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from xml.sax.saxutils import escape

from synth_opt.events.types import (
    AcceptanceDecided,
    CandidateScored,
    CandidateStatus,
    FrontierUpdated,
    HeldoutScored,
    ProposalCreated,
    RolloutCompleted,
    RolloutDegraded,
    RunFinished,
    RunState,
    SeedScored,
    UnknownEvent,
    payload_of,
)

__all__ = ["HELDOUT_ROLLOUT", "TRAIN_ROLLOUT", "read_events", "render_score_chart", "write_score_chart"]

WIDTH, HEIGHT = 900, 520
LEFT, RIGHT, TOP, BOTTOM = 78, 680, 86, 418  # the plot box
RUG_Y = 440  # the strip of rejected proposals, under the plot
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
INK, MUTED, GRID = "#1f2937", "#6b7280", "#e5e7eb"
SEED, ACCEPTED, MERGE, FRONTIER = "#111827", "#2563eb", "#9333ea", "#f59e0b"
BEST, LINEAGE, REJECTED = "#16a34a", "#94a3b8", "#9ca3af"


@dataclass
class _Point:
    candidate_id: str
    x: float
    y: float | None
    parents: list[str]
    kind: str  # "seed", "reflection" or "merge"
    proposal: int | None


@dataclass
class _Run:
    run_id: str | None = None
    points: dict[str, _Point] = field(default_factory=dict)
    rejected: list[tuple[float, str]] = field(default_factory=list)
    frontier: list[str] = field(default_factory=list)
    best_id: str | None = None
    seed_id: str | None = None
    heldout: dict[str, float] = field(default_factory=dict)
    stop_reason: str | None = None
    rollouts: int = 0


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


TRAIN_ROLLOUT: Final[dict[str, Any]] = {"type": "rollout.completed", "fields": {"stage": "train"}}
"""A line that stands for a train rollout, all the chart reads of one (a run collects these instead of each
rollout's line; :data:`HELDOUT_ROLLOUT` for a heldout one)."""
HELDOUT_ROLLOUT: Final[dict[str, Any]] = {"type": "rollout.completed", "fields": {"stage": "heldout"}}
_TRAIN_MARK = payload_of("rollout.completed", TRAIN_ROLLOUT["fields"], partial=True)
_HELDOUT_MARK = payload_of("rollout.completed", HELDOUT_ROLLOUT["fields"], partial=True)
_READ_TYPES = frozenset(
    cls.TYPE
    for cls in (
        RolloutCompleted,
        RolloutDegraded,
        RunState,
        SeedScored,
        ProposalCreated,
        AcceptanceDecided,
        CandidateScored,
        CandidateStatus,
        FrontierUpdated,
        HeldoutScored,
        RunFinished,
    )
) | {"run.started"}  # an older feed's first event


def _collect(events: Iterable[Any]) -> _Run:
    """Fold the feed into plot data; events of unknown types or with odd fields are skipped, never raised on."""
    run = _Run()
    plans: dict[int | None, ProposalCreated] = {}
    for event in events:
        if event is TRAIN_ROLLOUT or event is HELDOUT_ROLLOUT:
            data = _TRAIN_MARK if event is TRAIN_ROLLOUT else _HELDOUT_MARK
        elif isinstance(event, dict) and event.get("type") in _READ_TYPES:
            kind, f = event.get("type"), event.get("fields")
            # raw or normalized lines alike; partially: an older feed may lack a field this version writes (None)
            data = payload_of(str(kind), f if isinstance(f, dict) else {}, partial=True)
        else:
            continue
        match data:
            case RolloutCompleted() | RolloutDegraded() as rollout:
                if not str(rollout.stage or "").startswith("heldout"):
                    run.rollouts += 1
            case RunState(run_id=rid) if run.run_id is None:
                run.run_id = _str(rid)
            case UnknownEvent(type_name="run.started", data=legacy) if run.run_id is None:
                run.run_id = _str(legacy.get("run_id"))
            case SeedScored(candidate_id=cid) if _str(cid) and run.seed_id is None:
                run.seed_id = cid
                run.points[cid] = _Point(cid, run.rollouts, _num(data.mean_score), [], "seed", None)
            case ProposalCreated(proposal_index=index) if _int(index) is not None:
                plans[index] = data
            case AcceptanceDecided(candidate_id=cid) if _str(cid):
                _decided(run, data, plans.get(_int(data.proposal_index)))
            case CandidateScored(candidate_id=cid) | CandidateStatus(candidate_id=cid) if _str(cid) in run.points:
                pareto = str(data.stage).endswith(".pareto") if isinstance(data, CandidateScored) else False
                if pareto or (isinstance(data, CandidateStatus) and data.status in ("accepted", "seed")):
                    point = run.points[cid]
                    point.y = point.y if point.y is not None else _num(data.mean_score)
            case FrontierUpdated(members=members):
                listed = isinstance(members, list | tuple)
                run.frontier = [m for m in members if isinstance(m, str)] if listed else []
                run.best_id = _str(data.best_candidate_id) or run.best_id
            case HeldoutScored(candidate_id=cid, mean_score=mean) if _str(cid) and (score := _num(mean)) is not None:
                run.heldout[cid] = score
            case RunFinished():
                run.best_id = _str(data.best_candidate_id) or run.best_id
                run.seed_id = run.seed_id or _str(data.seed_candidate_id)
                run.stop_reason = _str(data.stop_reason)
    run.points = {cid: p for cid, p in run.points.items() if p.y is not None}
    scored = list(run.points.values())
    if run.best_id not in run.points and scored:
        run.best_id = max(scored, key=lambda p: p.y or 0.0).candidate_id
    return run


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _decided(run: _Run, decision: AcceptanceDecided, plan: ProposalCreated | None) -> None:
    """An accepted proposal's candidate becomes a point (its pareto score comes later); any other decision goes in
    the strip of rejected proposals."""
    cid, index = decision.candidate_id, _int(decision.proposal_index)
    listed = None if plan is None else plan.parent_ids
    candidates = listed if isinstance(listed, list | tuple) else [None if plan is None else plan.parent_id]
    parents = [p for p in candidates if isinstance(p, str)]
    label = f"p{index}" if index is not None else "proposal"
    if decision.accepted is True and cid not in run.points:
        merge = (plan is not None and plan.kind == "merge") or len(parents) > 1
        run.points[cid] = _Point(cid, run.rollouts, None, parents, "merge" if merge else "reflection", index)
    else:
        # A rejected proposal has only a minibatch score: a handful of rows picked where the parent did
        # badly, so it runs far above the pareto means (0.9 against 0.4 in the banking77 cookbook).
        # Plotted on the same axis it would look better than every accepted candidate; it goes in the
        # strip under the plot instead, at the rollout count of its decision.
        status = "accepted, duplicate" if decision.accepted is True else "rejected"
        run.rejected.append((run.rollouts, f"{label} {status} ({decision.reason}): {cid}"))


def _step(span: float, target: int = 6) -> float:
    raw = max(span, 1e-9) / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if m * magnitude >= raw * 0.8)


def _ticks(lo: float, hi: float, target: int) -> list[float]:
    step = _step(hi - lo, target)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def _el(tag: str, body: str | None = None, **attrs: Any) -> str:
    """An element; ``cls`` is the class, ``_`` in names becomes ``-`` and floats keep one decimal."""
    text = ""
    for key, value in attrs.items():
        if value is not None:
            name = "class" if key == "cls" else key.replace("_", "-")
            text += f' {name}="{escape(f"{value:.1f}" if isinstance(value, float) else str(value), _QUOTE)}"'
    return f"<{tag}{text}/>" if body is None else f"<{tag}{text}>{body}</{tag}>"


_QUOTE = {'"': "&quot;"}


def _text(x: float, y: float, text: str, size: int = 12, halo: bool = False, **attrs: Any) -> str:
    attrs.setdefault("fill", INK)
    under = dict(attrs, fill="#ffffff", stroke="#ffffff", stroke_width=4, stroke_linejoin="round", cls=None)
    back = _el("text", escape(text), x=x, y=y, font_size=size, **under) if halo else ""
    return back + _el("text", escape(text), x=x, y=y, font_size=size, **attrs)


def _tip(text: str) -> str:
    return _el("title", escape(text))


def _diamond(x: float, y: float, r: float, body: str | None = None, **attrs: Any) -> str:
    points = f"{x:.1f},{y - r:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r:.1f} {x - r:.1f},{y:.1f}"
    return _el("polygon", body, points=points, **attrs)


def _subtitle(run: _Run) -> str:
    parts: list[str] = []
    seed_h, best_h = run.heldout.get(run.seed_id or ""), run.heldout.get(run.best_id or "")
    if seed_h is not None and best_h is not None:
        parts.append(_el("tspan", escape(f"heldout: seed {seed_h:.3f} → best {best_h:.3f}"), font_weight="bold"))
    elif seed_h is not None or best_h is not None:
        which, value = ("seed", seed_h) if seed_h is not None else ("best", best_h)
        parts.append(_el("tspan", escape(f"heldout: {which} {value:.3f}"), font_weight="bold"))
    seed, best = run.points.get(run.seed_id or ""), run.points.get(run.best_id or "")
    if seed is not None and best is not None:
        train = escape(f"train (pareto rows): seed {seed.y:.3f} → best {best.y:.3f}")
        parts.append(_el("tspan", train, fill=MUTED, dx=18 if parts else None))
    return "".join(parts)


def _scale(run: _Run, points: list[_Point]) -> tuple[list[float], list[float]]:
    """x ticks from 0 to past the rollouts used; y ticks around the scores with a margin (within 0..1 if they are)."""
    ys = [p.y for p in points if p.y is not None]
    x_ticks = _ticks(0.0, max([float(run.rollouts), 10.0] + [p.x for p in points]), 6)
    if not ys:
        return x_ticks, _ticks(0.0, 1.0, 5)
    pad = max(0.03, (max(ys) - min(ys)) * 0.12)
    lo, hi = min(ys) - pad, max(ys) + pad
    if min(ys) >= 0.0 and max(ys) <= 1.0:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return x_ticks, _ticks(lo, hi, 6)


def render_score_chart(events: Iterable[dict[str, Any]], *, title: str) -> str:
    """The chart's SVG text for a run's events (in feed order)."""
    run = _collect(events)
    points = sorted(run.points.values(), key=lambda p: p.x)
    x_ticks, y_ticks = _scale(run, points)
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def sx(x: float) -> float:
        return LEFT + (x - x0) / ((x1 - x0) or 1.0) * (RIGHT - LEFT)

    def sy(y: float | None) -> float:
        return BOTTOM - ((y or 0.0) - y0) / ((y1 - y0) or 1.0) * (BOTTOM - TOP)

    mid = (TOP + BOTTOM) / 2
    heading = title if not run.run_id or run.run_id in title else f"{title} · {run.run_id}"
    out = [
        _el("rect", x=0, y=0, width=WIDTH, height=HEIGHT, fill="#ffffff"),
        _text(LEFT, 32, heading, 19, font_weight="bold", cls="title"),
        _el("text", _subtitle(run), x=LEFT, y=58, font_size=13, fill=INK, cls="subtitle"),
    ]
    axes = [_el("rect", x=LEFT, y=TOP, width=RIGHT - LEFT, height=BOTTOM - TOP, fill="none", stroke=GRID)]
    digits = max(2, -math.floor(math.log10(y_ticks[1] - y_ticks[0]))) if len(y_ticks) > 1 else 2
    for t in y_ticks:
        axes.append(_el("line", x1=LEFT, x2=RIGHT, y1=sy(t), y2=sy(t), stroke=GRID))
        axes.append(_text(LEFT - 8, sy(t) + 4, f"{t:.{digits}f}", 12, text_anchor="end", fill=MUTED))
    for t in x_ticks:
        axes.append(_el("line", x1=sx(t), x2=sx(t), y1=TOP, y2=BOTTOM, stroke=GRID))
        axes.append(_text(sx(t), RUG_Y + 28, f"{t:,.0f}", 12, text_anchor="middle", fill=MUTED))
    axes += [
        _text((LEFT + RIGHT) / 2, RUG_Y + 54, "train rollouts used", 13, text_anchor="middle"),
        _text(24, mid, "mean score on pareto rows", 13, text_anchor="middle", transform=f"rotate(-90 24 {mid:.1f})"),
        _el("line", x1=LEFT, x2=RIGHT, y1=RUG_Y, y2=RUG_Y, stroke=GRID, stroke_dasharray="2 3"),
        _text(LEFT - 8, RUG_Y + 4, "rejected", 11, text_anchor="end", fill=MUTED),
    ]
    if run.stop_reason:
        footer = f"stop: {run.stop_reason} after {run.rollouts:,} train rollouts"
        axes.append(_text(WIDTH - 12, HEIGHT - 12, footer, 11, text_anchor="end", fill=MUTED, cls="footer"))
    out.append(_el("g", "".join(axes), cls="axes"))

    body: list[str] = []
    for child in points:
        for parent in (run.points[p] for p in child.parents if p in run.points):
            merge = child.kind == "merge"
            line = {"x1": sx(parent.x), "y1": sy(parent.y), "x2": sx(child.x), "y2": sy(child.y)}
            tip = _tip(f"{parent.candidate_id} → {child.candidate_id}")
            color, dash = (MERGE, "4 3") if merge else (LINEAGE, None)
            body.append(_el("line", tip, **line, stroke=color, stroke_width=1.2, stroke_dasharray=dash, cls="lineage"))
    if points:
        best_so_far = points[0].y or 0.0
        path = [f"M{sx(points[0].x):.1f} {sy(best_so_far):.1f}"]
        for p in points[1:]:
            if p.y is not None and p.y > best_so_far:
                best_so_far = p.y
                path.append(f"H{sx(p.x):.1f} V{sy(p.y):.1f}")
        path.append(f"H{sx(max(float(run.rollouts), points[-1].x)):.1f}")
        body.append(_el("path", d=" ".join(path), fill="none", stroke=BEST, stroke_width=2.5, cls="best-so-far"))
    for x, tip in run.rejected:
        body.append(_el("circle", _tip(tip), cx=sx(x), cy=RUG_Y, r=4, fill="#ffffff", stroke=REJECTED, cls="rejected"))
    on_frontier, label_points = set(run.frontier), len(points) <= 24
    for p in points:
        x, y = sx(p.x), sy(p.y)
        parents = f" from {', '.join(p.parents)}" if p.parents else ""
        tip = _tip(f"{p.kind} {p.candidate_id}: pareto mean {p.y:.3f}{parents}")
        if p.candidate_id in on_frontier:
            body.append(_el("circle", cx=x, cy=y, r=10, fill="none", stroke=FRONTIER, stroke_width=2, cls="frontier"))
        if p.kind == "seed":
            body.append(_diamond(x, y, 8, tip, fill=SEED, stroke="#ffffff", stroke_width=1.5, cls="seed"))
            continue
        color = MERGE if p.kind == "merge" else ACCEPTED
        body.append(_el("circle", tip, cx=x, cy=y, r=6, fill=color, stroke="#ffffff", cls=f"accepted {p.kind}"))
        if label_points and p.proposal is not None:
            body.append(_text(x, y + 24, f"p{p.proposal}", 10, halo=True, text_anchor="middle", fill=MUTED))
    best = run.points.get(run.best_id or "")
    if best is not None:
        x, y = sx(best.x), sy(best.y)
        anchor, dx = ("end", -14) if x > RIGHT - 200 else ("start", 14)
        label = f"best {best.candidate_id[:13]}  {best.y:.3f}"
        body.append(
            _text(
                x + dx, max(y - 12, TOP + 14), label, 13, True, text_anchor=anchor, font_weight="bold", cls="best-label"
            )
        )
    if not points:
        empty = "no scored candidates yet"
        body.append(_text((LEFT + RIGHT) / 2, mid, empty, 15, text_anchor="middle", fill=MUTED, cls="empty"))
    out.append(_el("g", "".join(body), cls="data"))
    out.append(_legend(run, any(p.kind == "merge" for p in points)))
    size = {"width": WIDTH, "height": HEIGHT, "viewBox": f"0 0 {WIDTH} {HEIGHT}"}
    svg = _el("svg", "\n".join(out), xmlns="http://www.w3.org/2000/svg", version="1.1", **size, font_family=FONT)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + svg + "\n"


def _legend(run: _Run, has_merge: bool) -> str:
    x, y, rows = RIGHT + 24, TOP + 8, []
    accepted = sum(1 for p in run.points.values() if p.kind != "seed")
    entries = [(_diamond(x + 10, y, 7, fill=SEED), "seed")]
    entries.append((_el("circle", cx=x + 10, cy=y, r=6, fill=ACCEPTED), f"accepted ({accepted})"))
    if has_merge:
        entries.append((_el("circle", cx=x + 10, cy=y, r=6, fill=MERGE), "accepted merge"))
    entries += [
        (_el("circle", cx=x + 10, cy=y, r=9, fill="none", stroke=FRONTIER, stroke_width=2), "on final frontier"),
        (_el("line", x1=x, x2=x + 20, y1=y, y2=y, stroke=BEST, stroke_width=2.5), "best so far"),
        (_el("line", x1=x, x2=x + 20, y1=y + 5, y2=y - 5, stroke=LINEAGE, stroke_width=1.5), "parent → child"),
        (_el("circle", cx=x + 10, cy=y, r=4, fill="#ffffff", stroke=REJECTED), f"rejected ({len(run.rejected)})"),
    ]
    for i, (glyph, label) in enumerate(entries):
        rows.append(_el("g", glyph + _text(x + 30, y + 4.5, label, 13), transform=f"translate(0 {i * 28})"))
    frame = _el(
        "rect", x=x - 10, y=y - 20, width=WIDTH - x - 2, height=len(entries) * 28 + 8, fill="#f9fafb", stroke=GRID, rx=4
    )
    return _el("g", frame + "".join(rows), cls="legend")


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """The events of a feed, skipping lines that do not parse (a torn last line while the run is writing)."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event


def write_score_chart(events: Path | Iterable[dict[str, Any]], out_path: Path, *, title: str) -> Path:
    """Render a feed file (or its events in hand) to an SVG at ``out_path`` (parents created); return ``out_path``."""
    svg = render_score_chart(read_events(events) if isinstance(events, Path) else events, title=title)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(svg, encoding="utf-8")
    return out_path
