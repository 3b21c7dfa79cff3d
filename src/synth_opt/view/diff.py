"""A candidate's text against its parent's, word by word, as escaped HTML (``<del>`` and ``<ins>``).

A word diff costs about the product of the two texts' token counts, so long texts are diffed in steps: the tokens
both share at the start and at the end are kept as they are, what lies between is diffed line by line, and only the
changed blocks of lines are diffed word by word, each within a cap (and all of them within a budget); a block beyond
it is shown removed and added whole. Texts within the cap are diffed word by word at once.
"""

from __future__ import annotations

import difflib
import html
import re
from typing import Final

__all__ = ["word_diff"]

_TOKENS: Final = re.compile(r"\s+|\w+|[^\w\s]")
_PAIRS: Final = 1_000_000  # tokens before times tokens after: the most one word diff compares
_BUDGET: Final = 2_000_000  # the most all the changed blocks of a long text compare between them


def word_diff(old: str, new: str) -> str:
    """``new`` as HTML, with what it removed from ``old`` in ``<del>`` and what it added in ``<ins>``; every piece
    of either text is escaped."""
    before, after = _TOKENS.findall(old), _TOKENS.findall(new)
    if len(before) * len(after) <= _PAIRS:
        return _words(before, after)
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1
    middle = _lines("".join(before[start : len(before) - end]), "".join(after[start : len(after) - end]))
    return html.escape("".join(after[:start])) + middle + html.escape("".join(after[len(after) - end :]))


def _lines(old: str, new: str) -> str:
    """Line by line, then word by word within each changed block of lines while the budget lasts."""
    before, after = old.splitlines(keepends=True), new.splitlines(keepends=True)
    budget = _BUDGET
    parts: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after).get_opcodes():
        if tag == "equal":
            parts.append(html.escape("".join(after[j1:j2])))
            continue
        removed, added = _TOKENS.findall("".join(before[i1:i2])), _TOKENS.findall("".join(after[j1:j2]))
        pairs = len(removed) * len(added)
        if pairs <= min(_PAIRS, budget):
            budget -= pairs
            parts.append(_words(removed, added))
        else:
            parts.append(_replaced(removed, added))
    return "".join(parts)


def _words(before: list[str], after: list[str]) -> str:
    parts: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if tag == "equal":
            parts.append(html.escape("".join(after[j1:j2])))
        else:
            parts.append(_replaced(before[i1:i2], after[j1:j2]))
    return "".join(parts)


def _replaced(before: list[str], after: list[str]) -> str:
    removed = f"<del>{html.escape(''.join(before))}</del>" if before else ""
    return removed + (f"<ins>{html.escape(''.join(after))}</ins>" if after else "")
