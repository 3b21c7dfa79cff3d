"""Render an event feed (raw or normalized) as a readable timeline.

A torn last line (what a crash mid-write leaves) is left out with a warning; any other line that is not JSON is an
error naming the file and line. A raw feed whose sequence numbers repeat or go back (two feeds joined, a tail
copied in) is shown in file order with a warning naming the first such line: it is not one run's history.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from synth_opt.errors import ConfigError
from synth_opt.events.normalize import json_lines
from synth_opt.events.types import (
    AcceptanceDecided,
    FrontierUpdated,
    HeldoutScored,
    ProposalPlanned,
    SearchStopped,
    SeedScored,
    payload_of,
)
from synth_opt.logs import get_logger

__all__ = ["render_timeline"]

_log = get_logger("synth_opt.events")

MARKS = {
    AcceptanceDecided.TYPE: "✓",
    SearchStopped.TYPE: "■",
    HeldoutScored.TYPE: "◆",
    SeedScored.TYPE: "●",
    ProposalPlanned.TYPE: "→",
    FrontierUpdated.TYPE: "▲",
}


def _events(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.exists():
        raise ConfigError(f"event feed {path} does not exist; pass runs/<id>/events.jsonl or its .normalized.jsonl")
    if path.is_dir():
        raise ConfigError(
            f"event feed {path} is a directory; pass the feed file in it, runs/<id>/events.jsonl (or "
            "events.normalized.jsonl)",
            field="--events",
        )
    lines = json_lines(path)
    while True:
        try:
            number, data = next(lines)
        except StopIteration:
            return
        except ValueError as error:  # names the file and line
            raise ConfigError(f"{error}; is this an event feed?") from None
        except OSError as error:  # unreadable (permissions, a special file)
            raise ConfigError(
                f"event feed {path} cannot be read ({error.strerror or error}); pass runs/<id>/events.jsonl",
                field="--events",
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}:{number}: not an event object; is this an event feed?")
        yield number, data


def render_timeline(path: Path, *, decisions_only: bool = False) -> Iterator[str]:
    """One line per event: number, time (raw feeds), lane, type and message."""
    from synth_opt.events.model import DECISION_TYPES

    last: int | None = None
    warned = False
    for line, event in _events(path):
        sequence = event.get("sequence_number")
        if isinstance(sequence, int) and not isinstance(sequence, bool):
            if last is not None and sequence <= last and not warned:
                warned = True
                _log.warning(
                    f"sequence number {sequence} follows {last}: the feed repeats or goes back (two feeds joined, "
                    "or a tail copied in?), so it is not one run's history; shown in file order",
                    file=f"{path}:{line}",
                )
            last = sequence
        kind = str(event.get("type", "?"))
        if decisions_only and kind not in DECISION_TYPES:
            continue
        number = event.get("sequence_number", event.get("n", ""))
        ts = str(event.get("ts", ""))[11:23]
        lane = event.get("lane") or ""
        mark = MARKS.get(kind, " ")
        fields = event.get("fields")
        data = payload_of(kind, fields if isinstance(fields, dict) else {}, partial=True)
        if isinstance(data, AcceptanceDecided) and not data.accepted:
            mark = "✗"
        yield f"{number!s:>6} {ts:<12} {mark} {lane:<10} {kind:<20} {event.get('message', '')}"
