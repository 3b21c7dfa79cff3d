"""The normalized feed: a run's decisions, comparable line for line across runs of one config.

It keeps the decision events (:data:`~synth_opt.events.model.DECISION_TYPES`) in the order they were committed,
renumbered from 1, without timestamps, lanes or any timing, transport or host detail, so fresh, cached and readonly
runs of one config, and runs against containers of different speed, give identical files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from synth_opt.events.model import DECISION_TYPES, Event

__all__ = ["normalize_events", "read_feed", "write_normalized_feed"]

DROPPED_FIELDS = frozenset({"duration_seconds", "ts", "rollout_id", "run_id", "url", "pid", "path", "lane"})


def read_feed(path: Path) -> Iterator[Event]:
    with path.open(encoding="utf-8") as feed:
        for number, line in enumerate(feed, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                yield Event.from_json(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                if feed.readline() == "":  # a torn last line from a crash: ignore it
                    return
                raise ValueError(f"{path}:{number}: not an event line") from None


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v if _scalar(v) else _strip(v) for k, v in value.items() if k not in DROPPED_FIELDS}
    if isinstance(value, list):
        return value if all(map(_scalar, value)) else [_strip(v) for v in value]
    return value


def _scalar(value: Any) -> bool:
    """Nothing to strip inside: a string, number, bool, None, or a list of those (ids, scores)."""
    if isinstance(value, dict):
        return False
    return not isinstance(value, list) or all(not isinstance(v, dict | list) for v in value)


def normalize_events(events: Iterable[Event]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for event in events:
        if event.type in DECISION_TYPES:
            out.append(
                {"n": len(out) + 1, "type": event.type, "message": event.message, "fields": _strip(event.fields)}
            )
    return out


def write_normalized_feed(events: Path | Iterable[Event], out_path: Path) -> int:
    """Write ``out_path`` from a feed file or from events already in hand; returns the number of lines."""
    lines = normalize_events(read_feed(events) if isinstance(events, Path) else events)
    tmp = out_path.with_suffix(out_path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")
    tmp.replace(out_path)
    return len(lines)
