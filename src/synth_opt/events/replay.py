"""Render an event feed (raw or normalized) as a readable timeline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from synth_opt.errors import ConfigError

__all__ = ["render_timeline"]

MARKS = {
    "acceptance.decided": "✓",
    "search.stopped": "■",
    "heldout.scored": "◆",
    "seed.scored": "●",
    "proposal.planned": "→",
    "frontier.updated": "▲",
}


def _events(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        raise ConfigError(f"event feed {path} does not exist; pass runs/<id>/events.jsonl or its .normalized.jsonl")
    with path.open(encoding="utf-8") as feed:
        for number, line in enumerate(feed, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                raise ConfigError(f"{path}:{number}: not a JSON line; is this an event feed?") from None


def render_timeline(path: Path, *, decisions_only: bool = False) -> Iterator[str]:
    """One line per event: number, time (raw feeds), lane, type and message."""
    from synth_opt.events.model import DECISION_TYPES

    for event in _events(path):
        kind = str(event.get("type", "?"))
        if decisions_only and kind not in DECISION_TYPES:
            continue
        number = event.get("sequence_number", event.get("n", ""))
        ts = str(event.get("ts", ""))[11:23]
        lane = event.get("lane") or ""
        mark = MARKS.get(kind, " ")
        if kind == "acceptance.decided" and not event.get("fields", {}).get("accepted"):
            mark = "✗"
        yield f"{number!s:>6} {ts:<12} {mark} {lane:<10} {kind:<20} {event.get('message', '')}"
