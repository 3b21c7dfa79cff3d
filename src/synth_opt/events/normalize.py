"""The normalized feed: a run's decisions, comparable line for line across runs of one config.

It keeps the decision events (:data:`~synth_opt.events.model.DECISION_TYPES`) in the order they were committed,
renumbered from 1, without timestamps, lanes or any timing, transport or host detail, so fresh, cached and readonly
runs of one config, and runs against containers of different speed, give identical files.

Reading a feed (:func:`read_feed`, :func:`json_lines`) tolerates the one damage a crash leaves: a *torn* last line,
which has no newline and is not valid JSON (UTF-8 cut mid-character included). It is left out with a warning on
the ``synth_opt.events`` logger. Any other line that does not parse is an error naming the file and line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from synth_opt.events.model import DECISION_TYPES, Event
from synth_opt.logs import get_logger

__all__ = ["is_torn_line", "json_lines", "normalize_events", "read_feed", "warn_torn_line", "write_normalized_feed"]

DROPPED_FIELDS = frozenset({"duration_seconds", "ts", "rollout_id", "run_id", "url", "pid", "path", "lane"})

_log = get_logger("synth_opt.events")
_warned: set[tuple[str, int, int]] = set()  # (file, line, size): one warning per torn line, however often it is read


def is_torn_line(raw: bytes) -> bool:
    """Whether ``raw``, a file's last line, is what a crash mid-write leaves: no newline, and not valid JSON."""
    if raw.endswith(b"\n"):
        return False
    try:
        json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return True
    return False


def warn_torn_line(path: Path, number: int, size: int) -> None:
    """Log (once per torn line) that the torn last line of ``path`` was left out."""
    key = (str(path.resolve()), number, size)
    if key in _warned:
        return
    if len(_warned) > 1024:
        _warned.clear()
    _warned.add(key)
    _log.warning(
        "ignoring a torn last line (no newline, as a crash mid-write leaves)", file=f"{path}:{number}", bytes=size
    )


def json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` for every non-blank line of ``path``. A torn last line is left out with a
    warning; any other line that is not JSON raises ``ValueError`` naming the file and line."""
    with path.open("rb") as feed:
        for number, raw in enumerate(feed, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                if is_torn_line(raw):  # without a newline, so the last line
                    warn_torn_line(path, number, len(raw))
                    return
                raise ValueError(f"{path}:{number}: not a JSON line") from None
            yield number, data


def read_feed(path: Path) -> Iterator[Event]:
    """The events of a feed, in file order; a torn last line is left out with a warning, and any other line that is
    not an event raises ``ValueError`` naming the file and line."""
    for number, data in json_lines(path):
        try:
            yield Event.from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError):
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
