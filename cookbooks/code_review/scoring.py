"""The reward: F1 of a review's findings against a diff's known defects.

A finding is ``(line, category)`` with ``line`` a line number in the new file. A finding **matches** a defect when
the categories are equal and the lines differ by at most ``LINE_TOLERANCE`` (1). Matching is one-to-one (a
maximum bipartite matching, so one finding never counts for two defects, nor two findings for one defect), and
duplicate findings (same line and category) count once. With ``tp`` matched pairs, ``F`` findings and ``D``
defects: precision ``tp / F``, recall ``tp / D``, F1 ``2 tp / (F + D)``. Edge cases: a diff with no defects scores
1.0 with no findings and 0.0 with any; a defective diff with no findings scores 0.0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["LINE_TOLERANCE", "Score", "render_feedback", "score_findings"]

LINE_TOLERANCE = 1


@dataclass(frozen=True, slots=True)
class Score:
    f1: float
    precision: float
    recall: float
    matched: list[tuple[tuple[int, str], tuple[int, str]]] = field(default_factory=list)
    """(finding, defect) pairs."""
    false_positives: list[tuple[int, str]] = field(default_factory=list)
    missed: list[tuple[int, str]] = field(default_factory=list)

    @property
    def tp(self) -> int:
        return len(self.matched)


def _unique(items: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    seen: list[tuple[int, str]] = []
    for line, category in items:
        item = (int(line), str(category))
        if item not in seen:
            seen.append(item)
    return seen


def score_findings(findings: Iterable[tuple[int, str]], defects: Iterable[tuple[int, str]]) -> Score:
    """F1 of ``findings`` against ``defects`` (see the module docstring for the matching rule)."""
    found = _unique(findings)
    known = _unique(defects)
    # candidate defects per finding, the nearest first, so the matching prefers exact lines
    options: list[list[int]] = [
        sorted(
            (d for d, (dl, dc) in enumerate(known) if dc == fc and abs(dl - fl) <= LINE_TOLERANCE),
            key=lambda d: (abs(known[d][0] - fl), d),
        )
        for fl, fc in found
    ]
    owner: list[int | None] = [None] * len(known)

    def augment(f: int, visited: set[int]) -> bool:
        for d in options[f]:
            if d in visited:
                continue
            visited.add(d)
            holder = owner[d]
            if holder is None or augment(holder, visited):
                owner[d] = f
                return True
        return False

    for f in range(len(found)):
        augment(f, set())
    matched_findings = {f for f in owner if f is not None}
    matched = sorted((found[f], known[d]) for d, f in enumerate(owner) if f is not None)
    false_positives = [item for f, item in enumerate(found) if f not in matched_findings]
    missed = [item for d, item in enumerate(known) if owner[d] is None]
    if not known:
        value = 1.0 if not found else 0.0
        return Score(value, value, 1.0, matched, false_positives, missed)
    tp = len(matched)
    precision = tp / len(found) if found else 0.0
    recall = tp / len(known)
    f1 = 2 * tp / (len(found) + len(known))
    return Score(f1, precision, recall, matched, false_positives, missed)


def f1(findings: Sequence[tuple[int, str]], defects: Sequence[tuple[int, str]]) -> float:
    return score_findings(findings, defects).f1


def render_feedback(
    score: Score, added: Mapping[int, str], rules: Mapping[tuple[int, str], str | None] | None = None
) -> str:
    """The feedback a proposer reads: the F1, then one line per correct finding, false positive and missed defect.

    ``correct: line <n> <category>[ (rule `<pattern>`)]``, ``false positive: line <n> <category>[ (rule
    `<pattern>`)]: <line text>`` and ``missed: line <n> <category>: <line text>`` (``n`` is the defect's line for
    correct findings); ``rules`` maps a finding to the checklist pattern that produced it, where known.
    """
    rules = rules or {}

    def rule(finding: tuple[int, str]) -> str:
        source = rules.get(finding)
        return f" (rule `{source}`)" if source else ""

    if not score.matched and not score.false_positives and not score.missed:
        return "F1 1.00: no defects and no findings."
    lines = [
        f"F1 {score.f1:.2f}: {score.tp} correct, {len(score.false_positives)} false positive(s), "
        f"{len(score.missed)} missed (a finding counts when its category is right and its line is within "
        f"{LINE_TOLERANCE} of the defect's)."
    ]
    for finding, (line, category) in score.matched:
        lines.append(f"correct: line {line} {category}{rule(finding)}")
    for line, category in score.false_positives:
        lines.append(f"false positive: line {line} {category}{rule((line, category))}: {added.get(line, '').strip()}")
    for line, category in score.missed:
        lines.append(f"missed: line {line} {category}: {added.get(line, '').strip()}")
    return "\n".join(lines)
