"""Compare two normalized feeds line by line.

A torn last line (no newline and not valid JSON, as a crash mid-write leaves) is left out with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from synth_opt.errors import ConfigError, EventCompareError
from synth_opt.events.normalize import is_torn_line, warn_torn_line

__all__ = ["FeedComparison", "compare_feeds"]


@dataclass(frozen=True, slots=True)
class FeedComparison:
    left_lines: int
    right_lines: int
    differing: int
    first_difference: int | None
    left_line: str | None
    right_line: str | None

    @property
    def equal(self) -> bool:
        return self.differing == 0


def _lines(path: Path) -> list[str]:
    if not path.exists():
        raise ConfigError(f"event feed {path} does not exist; pass the path of an events.normalized.jsonl file")
    if path.is_dir():
        raise ConfigError(
            f"event feed {path} is a directory; pass the feed file in it, runs/<id>/events.normalized.jsonl (or "
            "events.jsonl)"
        )
    try:
        raw = path.read_bytes().splitlines(keepends=True)
    except OSError as error:  # unreadable (permissions, a special file)
        raise ConfigError(
            f"event feed {path} cannot be read ({error.strerror or error}); pass runs/<id>/events.normalized.jsonl"
        ) from None
    if raw and is_torn_line(raw[-1]):
        warn_torn_line(path, len(raw), len(raw[-1]))
        raw.pop()
    return [line.decode("utf-8", errors="replace").rstrip("\r\n") for line in raw]


def compare_feeds(left: Path, right: Path, *, raise_on_difference: bool = False) -> FeedComparison:
    """Count differing line pairs (a missing line counts as different) and keep the first pair."""
    a, b = _lines(left), _lines(right)
    differing, first = 0, None
    for index in range(max(len(a), len(b))):
        x = a[index] if index < len(a) else None
        y = b[index] if index < len(b) else None
        if x != y:
            differing += 1
            if first is None:
                first = index
    result = FeedComparison(
        left_lines=len(a),
        right_lines=len(b),
        differing=differing,
        first_difference=None if first is None else first + 1,
        left_line=None if first is None or first >= len(a) else a[first],
        right_line=None if first is None or first >= len(b) else b[first],
    )
    if raise_on_difference and not result.equal:
        raise EventCompareError(
            f"{left} and {right} differ in {differing} line(s); first at line {result.first_difference}",
            first_difference=result.first_difference,
            differing=differing,
        )
    return result
