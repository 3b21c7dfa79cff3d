"""A deterministic offline proposer for the code-review checklist policy, speaking the codex app-server protocol.

It stands in for ``codex app-server`` so the demo and the tests drive the optimizer's real proposer client with no
network and no key; :mod:`synth_opt.proposers.stdio_app_server` speaks the protocol around :func:`propose`
(``cookbook_kit.proposer``).

The reply is a pure function of the turn's text (no data files, no memory across calls; a restarted proposer
answers the same). It reads the request in the fenced ``json synth-opt-reflection`` block: the current checklist
(``current_text``) and, per minibatch record, the diff (``task.diff``) and the feedback lines the container wrote
(``missed: line N <category>: <text>``, ``false positive: line N <category> (rule `<pattern>`): <text>``,
``correct: line N <category> (rule `<pattern>`)``). It knows nothing about defects; it edits rules from evidence,
the way a careful reviewer reading the failures would, using the policy's own tokenizer:

1. **False positives.** A pattern that fired on a line that is not a defect is dropped when it caught no defect of
   its category in this minibatch; when it did catch one, the rule gets an ``unless`` pattern instead: the most
   general short phrase of the wrongly flagged line that appears on none of the caught lines.
2. **Missed defects.** For a missed line of category C (not yet caught by the edited rules), every run of 1 to
   ``MAX_WINDOW`` adjacent tokens of the line is a candidate pattern; candidates that also match a line of the
   minibatch diffs that is not a C defect (context, removed or other added lines) are discarded. Among the rest it
   takes the most *general* one: the one whose rarest token occurs on the most minibatch lines (so common tokens in
   an unusual arrangement, like ``= [ ] )``, beat a one-off identifier), then the shortest, then the earliest.
   The pattern joins C's rule (a new rule line when C has none); an ``unless`` pattern that blocked the line goes.

With ``proposals = n`` it returns ``n`` distinct texts where the evidence allows: variant ``i`` takes the
``i``-th best candidate for each missed line. When the minibatch gives nothing to change, it returns the current
text (the optimizer then records the proposal as unchanged).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the cookbook importable as the package ``code_review``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from code_review.policy import RULE_LINE, parse_checklist, parse_diff, phrase_matches, render_phrase, tokenize
from cookbook_kit.proposer import distinct_proposals, offline_proposer, wanted_proposals
from synth_opt.proposers.stdio_app_server import extract_reflection_request as extract_request

__all__ = ["MAX_WINDOW", "extract_request", "propose", "reply_for_turn", "serve"]

MAX_WINDOW = 4
_CORRECT = re.compile(r"^correct: line (\d+) (\w+)(?: \(rule `([^`]*)`\))?\s*$")
_FALSE = re.compile(r"^false positive: line (\d+) (\w+)(?: \(rule `([^`]*)`\))?: ?(.*)$")
_MISSED = re.compile(r"^missed: line (\d+) (\w+): ?(.*)$")


# ------------------------------------------------------------------------------------------------------- evidence


@dataclass(frozen=True, slots=True)
class _Line:
    record: int
    new: int | None
    tokens: tuple[str, ...]
    text: str


@dataclass
class _Evidence:
    lines: list[_Line] = field(default_factory=list)
    """Every line of every minibatch diff (context, removed and added)."""
    positive: dict[str, list[_Line]] = field(default_factory=dict)
    """Per category: the defect lines the feedback names (missed and caught)."""
    missed: list[tuple[str, _Line]] = field(default_factory=list)
    false_positives: list[tuple[str, str | None, _Line]] = field(default_factory=list)
    df: Counter[str] = field(default_factory=Counter)

    def negatives(self, category: str) -> list[_Line]:
        keys = {(line.record, line.new) for line in self.positive.get(category, [])}
        return [line for line in self.lines if (line.record, line.new) not in keys]


def _line(record: int, new: int | None, text: str) -> _Line:
    return _Line(record, new, tokenize(text), text)


def _evidence(records: Sequence[Mapping[str, Any]]) -> _Evidence:
    evidence = _Evidence()
    for index, record in enumerate(records):
        raw_task = record.get("task")
        task: Mapping[str, Any] = raw_task if isinstance(raw_task, Mapping) else {}
        diff = task["diff"] if isinstance(task.get("diff"), str) else ""
        added: dict[int, str] = {}
        for diff_line in parse_diff(diff):
            number = diff_line.new if diff_line.kind == "+" else None
            if number is not None:
                added[number] = diff_line.text
            evidence.lines.append(_line(index, number, diff_line.text))
        raw_feedback = record.get("feedback")
        feedback = raw_feedback if isinstance(raw_feedback, str) else ""
        for raw in feedback.splitlines():
            if match := _CORRECT.match(raw):
                number, category = int(match.group(1)), match.group(2)
                if number in added:
                    evidence.positive.setdefault(category, []).append(_line(index, number, added[number]))
            elif match := _MISSED.match(raw):
                number, category = int(match.group(1)), match.group(2)
                line = _line(index, number, added.get(number, match.group(3)))
                evidence.positive.setdefault(category, []).append(line)
                evidence.missed.append((category, line))
            elif match := _FALSE.match(raw):
                number, category = int(match.group(1)), match.group(2)
                line = _line(index, number, added.get(number, match.group(4)))
                evidence.false_positives.append((category, match.group(3), line))
                if not diff:
                    evidence.lines.append(line)
    for line in evidence.lines:
        evidence.df.update(set(line.tokens))
    return evidence


def _windows(tokens: Sequence[str], longest: int) -> list[tuple[int, tuple[str, ...]]]:
    found: list[tuple[int, tuple[str, ...]]] = []
    for width in range(1, longest + 1):
        for start in range(len(tokens) - width + 1):
            window = tuple(tokens[start : start + width])
            if not any("`" in token for token in window):
                found.append((start, window))
    return found


def _ranked(
    tokens: Sequence[str], avoid: Sequence[_Line], df: Mapping[str, int], longest: int
) -> list[tuple[str, ...]]:
    """Windows of ``tokens`` that match none of ``avoid``, the most general first (see the module docstring)."""
    options: list[tuple[int, int, int, tuple[str, ...]]] = []
    seen: set[tuple[str, ...]] = set()
    for start, window in _windows(tokens, longest):
        if window in seen or any(phrase_matches(window, line.tokens) for line in avoid):
            continue
        seen.add(window)
        options.append((-min(df.get(token, 0) for token in window), len(window), start, window))
    return [option[-1] for option in sorted(options)]


# ------------------------------------------------------------------------------------------------------ the rules


@dataclass
class _Rule:
    category: str
    patterns: list[str]
    exceptions: list[str]
    original: str
    changed: bool = False

    def render(self) -> str:
        if not self.changed:
            return self.original
        text = f"- {self.category}: " + ", ".join(f"`{pattern}`" for pattern in self.patterns)
        if self.exceptions:
            text += " unless " + ", ".join(f"`{pattern}`" for pattern in self.exceptions)
        return text

    def parsed(self) -> Any:
        rules = parse_checklist(self.render()).rules
        return rules[0] if rules else None


class _Checklist:
    def __init__(self, text: str) -> None:
        self.entries: list[str | _Rule] = []
        for line in text.splitlines():
            rule = parse_checklist(line).rules if RULE_LINE.match(line) else ()
            if rule:
                sources = [pattern.source for pattern in rule[0].patterns]
                exceptions = [pattern.source for pattern in rule[0].exceptions]
                self.entries.append(_Rule(rule[0].category, sources, exceptions, line))
            else:
                self.entries.append(line)

    def rules(self, category: str) -> list[_Rule]:
        return [entry for entry in self.entries if isinstance(entry, _Rule) and entry.category == category]

    def fires(self, category: str, line: _Line) -> bool:
        for rule in self.rules(category):
            parsed = rule.parsed()
            if parsed is not None and parsed.fires(line.text, line.tokens) is not None:
                return True
        return False

    def render(self) -> str:
        return "\n".join(entry if isinstance(entry, str) else entry.render() for entry in self.entries)


def _same(source: str, phrase: tuple[str, ...]) -> bool:
    parsed = parse_checklist(f"- x: `{source}`").rules
    return bool(parsed) and parsed[0].patterns[0].phrase == phrase


def _edit(request: Mapping[str, Any], evidence: _Evidence, variant: int) -> str:
    checklist = _Checklist(str(request["current_text"]))
    # 1. false positives: drop the pattern, or fence it with an ``unless`` when it also caught a defect here
    for category, source, line in evidence.false_positives:
        if not source:
            continue
        for rule in checklist.rules(category):
            if source not in rule.patterns:
                continue
            parsed = parse_checklist(f"- {category}: `{source}`").rules
            caught = [
                hit
                for hit in evidence.positive.get(category, [])
                if parsed and parsed[0].patterns[0].matches(hit.text, hit.tokens)
            ]
            if not caught:
                rule.patterns.remove(source)
                rule.changed = True
            else:
                options = _ranked(line.tokens, caught, evidence.df, 3)
                if options:
                    rule.exceptions.append(render_phrase(options[0]))
                    rule.changed = True
    checklist.entries = [e for e in checklist.entries if not (isinstance(e, _Rule) and e.changed and not e.patterns)]
    # 2. missed defects: a new pattern from the line, unless the edited rules already catch it
    for category, line in evidence.missed:
        if checklist.fires(category, line):
            continue
        rules = checklist.rules(category)
        for rule in rules:  # an ``unless`` that blocks a real defect goes
            kept = [source for source in rule.exceptions if not _exception_matches(source, line)]
            if kept != rule.exceptions:
                rule.exceptions, rule.changed = kept, True
        if checklist.fires(category, line):
            continue
        options = _ranked(line.tokens, evidence.negatives(category), evidence.df, MAX_WINDOW)
        if not options:
            continue
        phrase = options[min(variant, len(options) - 1)]
        if not rules:
            rule = _Rule(category, [], [], "", changed=True)
            checklist.entries.append(rule)
            rules = [rule]
        if not any(_same(source, phrase) for source in rules[0].patterns):
            rules[0].patterns.append(render_phrase(phrase))
            rules[0].changed = True
    return checklist.render()


def _exception_matches(source: str, line: _Line) -> bool:
    parsed = parse_checklist(f"- x: `{source}`").rules
    return bool(parsed) and parsed[0].patterns[0].matches(line.text, line.tokens)


def propose(request: Mapping[str, Any]) -> list[str]:
    """The proposals for one reflection request: ``request["proposals"]`` distinct texts where edits allow."""
    records = [record for record in request.get("records") or [] if isinstance(record, Mapping)]
    evidence = _evidence(records)
    variants = (_edit(request, evidence, variant) for variant in range(wanted_proposals(request) + 4))
    return distinct_proposals(request, variants, keep_unchanged=False) or [str(request["current_text"])]


reply_for_turn, serve = offline_proposer(propose, name="code-review-offline-proposer")


if __name__ == "__main__":
    raise SystemExit(serve(sys.stdin, sys.stdout))
