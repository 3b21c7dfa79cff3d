"""Rebasing a stale proposal: carry its edit onto what the pool gained since it was planned.

With several candidates in flight, proposal *k* is planned from an older pool, and by the time it is decided other
proposals may have improved on its parent. ``staleness_policy = "rebase"`` carries an accepted proposal's edit (its
text against the parent it was proposed from) onto the best of those descendants with a three-way merge of each
module's text before it is scored on the pareto rows, so concurrent proposals build on each other instead of each
starting a branch from the same stale parent.

The merge works on words, punctuation marks and the whitespace between them. Edits to different places apply together; two
insertions at the same place keep both (the target's first, and only one when one contains the other); two
different edits of the same words are a conflict (``None``), and so is a proposal that rewrote most of its parent
(more than ``REWRITE_SHARE`` of its words replaced or deleted): the caller then scores it as proposed.
Pure functions; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from synth_opt.gepa.candidates import CandidateRecord

__all__ = ["REWRITE_SHARE", "descends_from", "merge_text", "rebase_payload", "rebase_target"]

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")  # whitespace runs, words, single punctuation marks

# A proposal that replaces or deletes more than this share of its parent's words rewrote the text: it is scored as
# proposed (merging a rewrite with another candidate's edits would interleave two texts)
REWRITE_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class _Hunk:
    """Replace ``base[start:end]`` with ``tokens`` (an insertion when ``start == end``)."""

    start: int
    end: int
    tokens: tuple[str, ...]

    @property
    def insertion(self) -> bool:
        return self.start == self.end


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _hunks(base: Sequence[str], other: Sequence[str]) -> list[_Hunk]:
    matcher = SequenceMatcher(None, base, other, autojunk=False)
    return [_Hunk(i1, i2, tuple(other[j1:j2])) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def _before(a: _Hunk, b: _Hunk) -> bool:
    """``a`` applies wholly before ``b`` (two insertions at one place are neither before the other)."""
    if a.insertion and b.insertion and a.start == b.start:
        return False
    return a.end <= b.start


def _contains(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    n = len(inner)
    return any(outer[i : i + n] == inner for i in range(len(outer) - n + 1))


def _resolve(theirs: _Hunk, ours: _Hunk) -> _Hunk | None:
    """Two edits that touch the same place: the same edit once; two insertions both (or the one containing the
    other); anything else a conflict."""
    if theirs == ours:
        return theirs
    if theirs.insertion and ours.insertion and theirs.start == ours.start:
        if _contains(theirs.tokens, ours.tokens):
            return theirs
        if _contains(ours.tokens, theirs.tokens):
            return ours
        return _Hunk(theirs.start, theirs.start, theirs.tokens + ours.tokens)
    return None


def _combine(theirs: list[_Hunk], ours: list[_Hunk]) -> list[_Hunk] | None:
    out: list[_Hunk] = []
    i = j = 0
    while i < len(theirs) or j < len(ours):
        if j == len(ours) or (i < len(theirs) and _before(theirs[i], ours[j])):
            out.append(theirs[i])
            i += 1
        elif i == len(theirs) or _before(ours[j], theirs[i]):
            out.append(ours[j])
            j += 1
        else:
            resolved = _resolve(theirs[i], ours[j])
            if resolved is None:
                return None
            out.append(resolved)
            i += 1
            j += 1
    return out


def merge_text(base: str, ours: str, theirs: str) -> str | None:
    """Three-way merge: ``ours`` and ``theirs`` both edit ``base``; the text with both edits, or None on a
    conflict."""
    if ours == base or ours == theirs:
        return theirs
    if theirs == base:
        return ours
    base_tokens = _tokens(base)
    edits = _hunks(base_tokens, _tokens(ours))
    changed = sum(not token.isspace() for hunk in edits for token in base_tokens[hunk.start : hunk.end])
    if changed > REWRITE_SHARE * sum(not token.isspace() for token in base_tokens):
        return None  # a rewrite, not an edit: there is nothing local to carry over
    combined = _combine(_hunks(base_tokens, _tokens(theirs)), edits)
    if combined is None:
        return None
    out: list[str] = []
    position = 0
    for hunk in combined:
        out.extend(base_tokens[position : hunk.start])
        out.extend(hunk.tokens)
        position = hunk.end
    out.extend(base_tokens[position:])
    return "".join(out)


def rebase_payload(
    base: Mapping[str, str], ours: Mapping[str, str], theirs: Mapping[str, str]
) -> dict[str, str] | None:
    """``ours`` (a child of ``base``) carried onto ``theirs`` (a descendant of ``base``), module by module; None
    when a module's edits conflict."""
    merged: dict[str, str] = {}
    for name in dict.fromkeys([*theirs, *ours]):
        text = merge_text(base.get(name, ""), ours.get(name, ""), theirs.get(name, ""))
        if text is None:
            return None
        merged[name] = text
    return merged


def descends_from(record: CandidateRecord, ancestor_id: str, by_id: Mapping[str, CandidateRecord]) -> bool:
    """Whether ``ancestor_id`` is among ``record``'s ancestors (through every parent, merges included)."""
    seen: set[str] = set()
    stack = list(record.parent_ids)
    while stack:
        cid = stack.pop()
        if cid == ancestor_id:
            return True
        if cid in seen or cid not in by_id:
            continue
        seen.add(cid)
        stack.extend(by_id[cid].parent_ids)
    return False


def rebase_target(
    parent: CandidateRecord, newer: Iterable[CandidateRecord], by_id: Mapping[str, CandidateRecord]
) -> CandidateRecord:
    """What a proposal from ``parent`` is carried onto: among the parent and its descendants in ``newer`` (the
    candidates that joined the pool after the proposal was planned), the highest mean pareto score, ties to the
    newer (it holds more edits). The parent itself when nothing newer improves on it."""
    best = parent
    for record in newer:
        if (record.mean, record.pool_index) > (best.mean, best.pool_index) and descends_from(
            record, parent.candidate_id, by_id
        ):
            best = record
    return best
