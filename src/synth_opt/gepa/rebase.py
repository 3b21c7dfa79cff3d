"""Rebasing a stale proposal: carry its edit onto what the pool gained since it was planned.

With several candidates in flight, proposal *k* is planned from an older pool, and by the time it is decided other
proposals may have improved on its parent. ``staleness_policy = "rebase"`` carries an accepted proposal's edit (its
text against the parent it was proposed from) onto the best of those descendants with a three-way merge of each
module's text before it is scored on the pareto rows, so concurrent proposals build on each other instead of each
starting a branch from the same stale parent.

The merge works on lines, and where both sides changed the same lines, on their words, punctuation marks and
whitespace. Edits to different places apply together; two insertions at the same place keep both (the target's
first, and only one when one contains the other); two different edits of the same words are a conflict (``None``),
and so is a proposal that rewrote most of its parent (more than ``REWRITE_SHARE`` of its words replaced or
deleted): the caller then scores it as proposed. Pure functions; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache

from synth_opt.gepa.candidates import CandidateRecord

__all__ = [
    "REGION_TOKENS",
    "REWRITE_SHARE",
    "descends_from",
    "merge_text",
    "rebase_payload",
    "rebase_target",
    "repeats_edit",
]

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")  # whitespace runs, words, single punctuation marks
_WORD = re.compile(r"\w+|[^\w\s]")  # the tokens of _TOKEN that are not whitespace

# A proposal that replaces or deletes more than this share of its parent's words rewrote the text: it is scored as
# proposed (merging a rewrite with another candidate's edits would interleave two texts)
REWRITE_SHARE = 0.5

# A changed region with more tokens than this (on any side) is not diffed word by word: it counts as wholly
# rewritten, and two such regions from both sides are a conflict (diffing long runs of repeated tokens such as
# commas and spaces is quadratic)
REGION_TOKENS = 600


@dataclass(frozen=True, slots=True)
class _Hunk:
    """Replace ``base[start:end]`` with ``items`` (an insertion when ``start == end``); items are lines or tokens."""

    start: int
    end: int
    items: tuple[str, ...]

    @property
    def insertion(self) -> bool:
        return self.start == self.end


def _hunks(base: Sequence[str], other: Sequence[str]) -> list[_Hunk]:
    matcher = SequenceMatcher(None, base, other, autojunk=False)
    return [_Hunk(i1, i2, tuple(other[j1:j2])) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def _line_hunks(base: Sequence[str], other: Sequence[str]) -> list[_Hunk]:
    """Line edits; a block of n lines replaced by n lines is n one-line edits (each line edited in place), so two
    sides that edit different lines of one block do not collide."""
    out: list[_Hunk] = []
    for hunk in _hunks(base, other):
        if hunk.end - hunk.start == len(hunk.items) > 1:
            out.extend(
                _Hunk(i, i + 1, (line,))
                for i, line in zip(range(hunk.start, hunk.end), hunk.items, strict=True)
                if base[i] != line
            )
        else:
            out.append(hunk)
    return out


def _before(a: _Hunk, b: _Hunk) -> bool:
    """``a`` applies wholly before ``b`` (two insertions at one place are neither before the other)."""
    if a.insertion and b.insertion and a.start == b.start:
        return False
    return a.end <= b.start


@dataclass(slots=True)
class _Cluster:
    """Edits of both sides that touch one region ``base[start:end]``."""

    start: int
    end: int
    theirs: list[_Hunk]
    ours: list[_Hunk]

    def apply(self, base: Sequence[str], hunks: list[_Hunk]) -> list[str]:
        out: list[str] = []
        position = self.start
        for hunk in hunks:
            out.extend(base[position : hunk.start])
            out.extend(hunk.items)
            position = hunk.end
        out.extend(base[position : self.end])
        return out


def _clusters(theirs: Sequence[_Hunk], ours: Sequence[_Hunk]) -> list[_Cluster]:
    tagged = sorted([(h, 0) for h in theirs] + [(h, 1) for h in ours], key=lambda t: (t[0].start, t[0].end, t[1]))
    clusters: list[_Cluster] = []
    for hunk, side in tagged:
        last = clusters[-1] if clusters else None
        if last is None or _before(_Hunk(last.start, last.end, ()), hunk):
            last = _Cluster(hunk.start, hunk.end, [], [])
            clusters.append(last)
        last.end = max(last.end, hunk.end)
        (last.theirs if side == 0 else last.ours).append(hunk)
    return clusters


def _contains(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    n = len(inner)
    return any(outer[i : i + n] == inner for i in range(len(outer) - n + 1))


def _resolve_tokens(cluster: _Cluster) -> tuple[str, ...] | None:
    """Two token edits at one place: the same edit once; two insertions both (or the one containing the
    other); anything else a conflict."""
    if len(cluster.theirs) != 1 or len(cluster.ours) != 1:
        return None
    theirs, ours = cluster.theirs[0], cluster.ours[0]
    if theirs == ours:
        return theirs.items
    if theirs.insertion and ours.insertion:
        if _contains(theirs.items, ours.items):
            return theirs.items
        if _contains(ours.items, theirs.items):
            return ours.items
        return theirs.items + ours.items
    return None


def _merge_region(base: str, ours: str, theirs: str) -> str | None:
    """Word-level three-way merge of one region both sides changed; None on a conflict."""
    if ours == base or ours == theirs:
        return theirs
    if theirs == base:
        return ours
    tokens = [_TOKEN.findall(text) for text in (base, ours, theirs)]
    if max(len(t) for t in tokens) > REGION_TOKENS:
        return None
    base_tokens = tokens[0]
    merged = _merge(base_tokens, _hunks(base_tokens, tokens[2]), _hunks(base_tokens, tokens[1]), _resolve_tokens)
    return None if merged is None else "".join(merged)


def _merge(
    base: Sequence[str],
    theirs: Sequence[_Hunk],
    ours: Sequence[_Hunk],
    resolve: Callable[[_Cluster], Sequence[str] | None],
) -> list[str] | None:
    """``base`` with both sides' edits; where both touch one region, ``resolve`` decides (None: a conflict)."""
    out: list[str] = []
    position = 0
    for cluster in _clusters(theirs, ours):
        out.extend(base[position : cluster.start])
        if cluster.theirs and cluster.ours:
            items = resolve(cluster)
            if items is None:
                return None
            out.extend(items)
        else:
            out.extend(cluster.apply(base, cluster.theirs or cluster.ours))
        position = cluster.end
    out.extend(base[position:])
    return out


@lru_cache(maxsize=256)
def _words(text: str) -> int:
    """The words and punctuation marks of ``text`` (a base is measured once for every proposal compared with it)."""
    return len(_WORD.findall(text))


def _rewritten_words(base_lines: Sequence[str], edits: Sequence[_Hunk]) -> int:
    """How many of the base's words the line edits replace or delete (a long region counts whole)."""
    changed = 0
    for hunk in edits:
        before, after = "".join(base_lines[hunk.start : hunk.end]), "".join(hunk.items)
        old, new = _TOKEN.findall(before), _TOKEN.findall(after)
        if max(len(old), len(new)) > REGION_TOKENS:
            changed += _words(before)
            continue
        changed += sum(not t.isspace() for h in _hunks(old, new) for t in old[h.start : h.end])
    return changed


def merge_text(base: str, ours: str, theirs: str) -> str | None:
    """Three-way merge: ``ours`` and ``theirs`` both edit ``base``; the text with both edits, or None on a
    conflict. Lines first; where both sides changed the same lines, their words."""
    if ours == base or ours == theirs:
        return theirs
    if theirs == base:
        return ours
    base_lines, edits = _line_edits(base, ours)
    if _rewritten_words(base_lines, edits) > REWRITE_SHARE * _words(base):
        return None  # a rewrite, not an edit: there is nothing local to carry over

    def resolve(cluster: _Cluster) -> list[str] | None:
        region = "".join(base_lines[cluster.start : cluster.end])
        ours_region = "".join(cluster.apply(base_lines, cluster.ours))
        merged = _merge_region(region, ours_region, "".join(cluster.apply(base_lines, cluster.theirs)))
        return None if merged is None else [merged]

    lines = _merge(base_lines, _line_edits(base, theirs)[1], edits, resolve)
    return None if lines is None else "".join(lines)


@lru_cache(maxsize=256)
def _line_edits(base: str, other: str) -> tuple[tuple[str, ...], tuple[_Hunk, ...]]:
    """``base``'s lines and ``other``'s line edits of them. Kept for a while: with proposals in flight, each edit
    is merged with several others."""
    base_lines = tuple(base.splitlines(keepends=True))
    return base_lines, tuple(_line_hunks(base_lines, other.splitlines(keepends=True)))


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


def repeats_edit(parent: Mapping[str, str], child: Mapping[str, str], other: Mapping[str, str]) -> bool:
    """Whether ``child``'s edit of ``parent`` is already in ``other`` (``parent`` with another proposal's edit): it
    adds nothing there, so carrying it onto ``other`` gives ``other`` back. The same edit, an insertion the other
    contains, an edit of a region the other rewrote the same way."""
    if dict(other) == dict(parent):
        return False
    return rebase_payload(parent, child, other) == dict(other)


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
