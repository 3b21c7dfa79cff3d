"""A candidate's text against its parent's, word by word, as escaped HTML (``<del>`` and ``<ins>``)."""

from __future__ import annotations

import difflib
import html
import re
from typing import Final

__all__ = ["word_diff"]

_TOKENS: Final = re.compile(r"\s+|\w+|[^\w\s]")


def word_diff(old: str, new: str) -> str:
    """``new`` as HTML, with what it removed from ``old`` in ``<del>`` and what it added in ``<ins>``; every piece
    of either text is escaped."""
    before, after = _TOKENS.findall(old), _TOKENS.findall(new)
    parts: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if tag == "equal":
            parts.append(html.escape("".join(after[j1:j2])))
            continue
        if i2 > i1:
            parts.append(f"<del>{html.escape(''.join(before[i1:i2]))}</del>")
        if j2 > j1:
            parts.append(f"<ins>{html.escape(''.join(after[j1:j2]))}</ins>")
    return "".join(parts)
