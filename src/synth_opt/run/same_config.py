"""Whether a run directory holds a run of this config.

A run directory is named by ``run.run_id``; by default that id holds the config's decision digest, so another
config gets another directory. A config that sets ``run_id`` itself can name a directory made by a config whose
decisions differ (another budget, dataset, seed candidate, proposer model). Resuming that run, or handing back its
stored result, would give the user a result of a config they did not run; so a run directory whose feed was
started by another decision digest is refused, naming the keys that differ.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any

from synth_opt.config import GepaConfig
from synth_opt.errors import RunStateError
from synth_opt.events.types import RunConfig

__all__ = ["check_same_config", "stored_decisions"]

# ``run.config`` is the second line a run writes; a feed is read this far for it, never whole
_LINES_READ = 200
_KEYS_SHOWN = 6


def stored_decisions(run_dir: Path) -> tuple[str, dict[str, Any]] | None:
    """The decision digest and decision config a run directory's feed was started with, or None (no feed, or no
    readable ``run.config`` line near its start)."""
    feed = run_dir / "events.jsonl"
    try:
        with feed.open(encoding="utf-8", errors="replace") as lines:
            for line in islice(lines, _LINES_READ):
                if f'"{RunConfig.TYPE}"' not in line:
                    continue
                try:
                    fields = json.loads(line).get("fields", {})
                except (json.JSONDecodeError, AttributeError):
                    continue
                digest, decisions = fields.get("digest"), fields.get("decision_config")
                if isinstance(digest, str) and isinstance(decisions, dict):
                    return digest, decisions
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    return None


def check_same_config(run_dir: Path, config: GepaConfig) -> None:
    """Raise :class:`RunStateError` when ``run_dir`` holds a run started by another decision digest."""
    stored = stored_decisions(run_dir)
    if stored is None:
        return
    digest, decisions = stored
    current = config.decision_digest()
    if digest == current:
        return
    keys = _differing_keys(decisions, config.decision_config())
    shown = ", ".join(keys[:_KEYS_SHOWN]) + (f" and {len(keys) - _KEYS_SHOWN} more" if len(keys) > _KEYS_SHOWN else "")
    raise RunStateError(
        f"run directory {run_dir} holds a run of another config ({shown or 'its decisions'} "
        f"{'differs' if len(keys) == 1 else 'differ'}: "
        f"decision digest {digest} there, {current} in this config), so this config cannot resume it or take its "
        "result. Run it with the config it was made with, give this config another run.run_id, or re-run with "
        "--fresh (fresh=True) to start the directory over.",
        run_dir=str(run_dir),
        stored_digest=digest,
        digest=current,
        differing_keys=keys,
    )


def _differing_keys(stored: Any, current: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two decision configs (a key only one side has differs)."""
    if isinstance(stored, dict) and isinstance(current, dict):
        names = list(dict.fromkeys([*stored, *current]))
        return [
            key
            for name in names
            for key in _differing_keys(stored.get(name), current.get(name), f"{prefix}.{name}" if prefix else name)
        ]
    return [] if stored == current else [prefix or "the decision config"]
