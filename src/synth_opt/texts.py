"""Long texts cut to a bound with a visible marker, and their digests: what the proposer is shown of a row and what
a run keeps of a rollout reply are cut the same way."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["cut_text", "shown_output", "text_digest"]


def cut_text(text: str, limit: int, *, total: int | None = None) -> str:
    """``text`` itself when it has at most ``limit`` characters, else its first ``limit`` characters and a visible
    marker naming how much was cut (of ``total`` characters: ``text`` is itself a cut of a text that long)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [... cut: {limit} of {len(text) if total is None else total} characters shown]"


def shown_output(output: Any) -> str:
    """A rollout's output as the proposer is shown it: a text as it is, anything else as sorted JSON."""
    return output if isinstance(output, str) else json.dumps(output, sort_keys=True, ensure_ascii=False)


def text_digest(text: str) -> str:
    """The sha256 of a text (hex)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
