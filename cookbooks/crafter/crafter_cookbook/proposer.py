"""A deterministic offline proposer for the Crafter plan agent, speaking the codex app-server protocol.

It stands in for ``codex app-server`` so the offline run drives the optimizer's real proposer client with no network
and no key; :mod:`synth_opt.proposers.stdio_app_server` speaks the protocol around :func:`propose`
(``cookbook_kit.proposer``).

The reply is a pure function of the turn's text (no data files, no memory across calls). It reads the fenced
``json synth-opt-reflection`` block and edits the plan in ``current_text`` from the minibatch records' feedback,
the way a careful reader of the environment's messages would. It knows the plan language (it shares the policy's
parser) and no crafter rule: every fact it uses is in the feedback.

- a goal that failed for want of an item (``needs wood>=2 (had 1) [source of wood: goal: ...]``) gets that source
  goal inserted before it, ``until wood>=2`` (or the goal just before it, when it is that source, has its count
  raised);
- a goal that lacked something nearby (``needs a table nearby [source: goal: place_table]``) gets ``near table``,
  and the source goal is inserted before it unless an earlier goal already has that name;
- ``[meaning: goal: ...]`` replaces the goal by what its name means; ``[hint: tries n]`` and ``takes n hits`` raise
  its ``tries``; ``[condition: c]`` turns it into ``rule: if c then <goal>``;
- a goal that never found its target in any record where it ran is commented out (``# dropped: ...``);
- a status that ran out (``drink ran out ... [restore: goal: ...]``) gets a rule ``if drink<3 then ...``; a death
  by walking into a material gets ``avoid: <material>``;
- achievements locked in every record and not yet named in the text are appended as goals (their ``[meaning: ...]``),
  those whose things every record saw first.

With ``proposals = n`` it returns up to ``n`` distinct texts: all edits, then without the drops, then without the
appended goals.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cookbook_kit.proposer import distinct_proposals, offline_proposer
from crafter_cookbook.policy import Condition, Goal, parse_goal
from synth_opt.proposers.stdio_app_server import extract_reflection_request as extract_request

__all__ = ["extract_request", "propose", "reply_for_turn", "serve"]

_GOAL_LINE = re.compile(r"^goal (\d+) `([^`]*)`: (.*)$")
_ITEM = re.compile(r"needs ([a-z_]+)>=(\d+) \(had (\d+)\) \[source of [a-z_]+: goal: ([^\]]+)\]")
_NEARBY = re.compile(r"needs a ([a-z_]+) nearby[^\[]*\[source: goal: ([^\]]+)\]")
_MEANING = re.compile(r"\[meaning: goal: ([^\]]+)\]")
_TRIES = re.compile(r"\[hint: tries (\d+)\]")
_HITS = re.compile(r"takes (\d+) hits")
_CONDITION = re.compile(r"\[condition: ([^\]]+)\]")
_EXPLORE = re.compile(r"in reach in \d+ steps of exploring")
_RAN_OUT = re.compile(r"^([a-z_]+) ran out at step \d+ \[restore: goal: ([^\]]+)\]")
_DEATH = re.compile(r"died at step \d+: walked into ([a-z_]+)")
_DEFEND = re.compile(r"died at step \d+: [^\[]*\[defend: goal: ([^\];]+)")
DEFEND_BELOW = 5
_LOCKED = re.compile(r"([a-z_]+) \[meaning: goal: ([^\]]+)\]")
RULE_THRESHOLD = 3
FIX_FIRST = 2
DROP_AFTER = 2


@dataclass
class _Outcome:
    """One record's feedback, parsed."""

    goals: dict[int, tuple[str, str]] = field(default_factory=dict)  # goal number -> (status word, detail)
    ran_out: list[tuple[str, str]] = field(default_factory=list)
    deaths: list[str] = field(default_factory=list)
    defend: list[str] = field(default_factory=list)
    locked: list[tuple[str, str]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


def _parse_feedback(text: str) -> _Outcome:
    outcome = _Outcome()
    for line in text.splitlines():
        line = line.strip()
        match = _GOAL_LINE.match(line)
        if match:
            detail = match.group(3)
            status = detail.split(" ", 1)[0]  # done | not | failed | still
            outcome.goals[int(match.group(1))] = (status, detail)
            continue
        match = _RAN_OUT.match(line)
        if match:
            outcome.ran_out.append((match.group(1), match.group(2)))
        if line.startswith("seen: "):
            outcome.seen = {word.strip() for word in line[len("seen: ") :].split(",")}
        if line.startswith("locked achievements: "):
            outcome.locked = _LOCKED.findall(line)
        outcome.deaths += _DEATH.findall(line)
        outcome.defend += _DEFEND.findall(line)
    return outcome


@dataclass
class _Edits:
    before: dict[int, list[Goal]] = field(default_factory=dict)
    near: dict[int, set[str]] = field(default_factory=dict)
    tries: dict[int, int] = field(default_factory=dict)
    replace: dict[int, Goal] = field(default_factory=dict)
    to_rule: dict[int, str] = field(default_factory=dict)
    drop: set[int] = field(default_factory=set)
    rules: list[str] = field(default_factory=list)
    avoid: list[str] = field(default_factory=list)
    append: list[str] = field(default_factory=list)
    fixed: set[int] = field(default_factory=set)

    def insert(self, number: int, goal: Goal) -> None:
        """Queue ``goal`` before goal ``number``: a repeat of the last queued goal raises its count instead, and a
        goal already queued there unchanged is not queued twice."""
        queue = self.before.setdefault(number, [])
        if goal in queue:
            return
        if queue and (queue[-1].name, queue[-1].at) == (goal.name, goal.at):
            last = queue[-1]
            if goal.until is not None and last.until is not None and goal.until.subject == last.until.subject:
                if goal.until.value > last.until.value:
                    queue[-1] = replace(last, until=goal.until)
                return
        queue.append(goal)


@dataclass(frozen=True)
class _Line:
    text: str
    goal: Goal | None = None
    number: int = 0  # 1-based among the plan's goal lines (as the feedback counts them)


def _lines(text: str) -> list[_Line]:
    out: list[_Line] = []
    number = 0
    for raw in text.splitlines():
        stripped = raw.strip()
        key, colon, rest = stripped.partition(":")
        if colon and not stripped.startswith("#") and key.strip().lower() == "goal":
            goal = parse_goal(rest)
            if isinstance(goal, Goal):
                number += 1
                out.append(_Line(raw, goal, number))
                continue
        out.append(_Line(raw))
    return out


def _goal(spec: str) -> Goal | None:
    goal = parse_goal(spec)
    return goal if isinstance(goal, Goal) else None


def _records(request: Mapping[str, Any]) -> list[_Outcome]:
    outcomes = []
    for record in request.get("records") or []:
        if isinstance(record, Mapping) and isinstance(record.get("feedback"), str):
            outcomes.append(_parse_feedback(record["feedback"]))
    return outcomes


@dataclass
class _Knowledge:
    """What the records' messages taught: where things come from, and what each goal name's press needs."""

    sources: dict[str, Goal] = field(default_factory=dict)
    needs: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)

    def need(self, name: str, kind: str, thing: str, count: int) -> None:
        known = self.needs.setdefault(name, {})
        known[(kind, thing)] = max(count, known.get((kind, thing), 0))

    def source(self, thing: str, spec: str) -> Goal | None:
        """Learn ``spec`` (``goal: ... (needs a>=1; a table nearby)``) as the source of ``thing``."""
        base, _, note = spec.partition("(needs ")
        goal = _goal(base)
        if goal is None:
            return None
        self.sources.setdefault(thing, goal)
        for part in note.rstrip(") ").split(";"):
            part = part.strip()
            item = re.match(r"^([a-z_]+)>=(\d+)$", part)
            nearby = re.match(r"^a ([a-z_]+) nearby$", part)
            if item:
                self.need(goal.name, "item", item.group(1), int(item.group(2)))
            elif nearby:
                self.need(goal.name, "nearby", nearby.group(1), 1)
        return goal


def _knowledge(outcomes: list[_Outcome], goals: Mapping[int, Goal]) -> _Knowledge:
    """Everything the failure messages of all records say (the largest count per item and goal name)."""
    know = _Knowledge()
    for outcome in outcomes:
        for number, (status, detail) in outcome.goals.items():
            goal = goals.get(number)
            if goal is None or status == "done":
                continue
            for item, need, _had, source in _ITEM.findall(detail):
                know.need(goal.name, "item", item, int(need))
                know.source(item, source)
            for util, source in _NEARBY.findall(detail):
                know.need(goal.name, "nearby", util, 1)
                know.source(util, source)
    return know


def _insert_chain(
    edits: _Edits, number: int, goal: Goal, know: _Knowledge, present: set[str], stack: tuple[str, ...]
) -> None:
    """Queue ``goal`` before goal ``number``, preceded by what the messages say it needs (recursively)."""
    if goal.name in stack or len(stack) > 8:
        return
    near = list(goal.near)
    needs = know.needs.get(goal.name, {})
    for (kind, thing), _count in needs.items():
        if kind != "nearby":
            continue
        if thing not in near:
            near.append(thing)
        source = know.sources.get(thing)
        if source is not None and source.name not in present:
            _insert_chain(edits, number, source, know, present, (*stack, goal.name))
            present.add(source.name)
    for (kind, thing), count in needs.items():
        source = know.sources.get(thing)
        if kind == "item" and source is not None and source.name != goal.name:
            _insert_chain(
                edits, number, replace(source, until=_until(thing, count)), know, present, (*stack, goal.name)
            )
    edits.insert(number, replace(goal, near=tuple(near)))


def _collect_edits(lines: list[_Line], outcomes: list[_Outcome], text: str) -> _Edits:
    edits = _Edits()
    goals = {line.number: line.goal for line in lines if line.goal is not None}
    earlier_names: dict[int, set[str]] = {}
    names: set[str] = set()
    for number in sorted(goals):
        earlier_names[number] = set(names)
        names.add(goals[number].name)
    know = _knowledge(outcomes, {number: goal for number, goal in goals.items() if goal is not None})
    for number, goal in sorted(goals.items()):
        assert goal is not None
        reports = [outcome.goals[number] for outcome in outcomes if number in outcome.goals]
        ran = [(status, detail) for status, detail in reports if status in ("failed", "still")]
        done = any(status == "done" for status, _ in reports)
        if len(ran) >= DROP_AFTER and not done and all(_EXPLORE.search(detail) for _, detail in ran):
            if not any(_MEANING.search(detail) or _NEARBY.search(detail) for _, detail in ran):
                edits.drop.add(number)
        for status, detail in ran:
            if status != "failed":
                continue
            if len(edits.fixed) >= FIX_FIRST and number not in edits.fixed:
                continue
            if _NEARBY.search(detail) or _ITEM.search(detail):
                edits.fixed.add(number)
            present = set(earlier_names[number])
            for util, _source in _NEARBY.findall(detail):
                edits.near.setdefault(number, set()).add(util)
                fix = know.sources.get(util)
                if fix is not None and fix.name not in present:
                    _insert_chain(edits, number, fix, know, present, (goal.name,))
                    present.add(fix.name)
            for item, need, _had, _source in _ITEM.findall(detail):
                fix = know.sources.get(item)
                if fix is None or fix.name == goal.name:
                    continue
                wanted = replace(fix, until=_until(item, int(need)))
                if wanted != goals.get(number - 1):  # unless the goal just before already gathers it
                    _insert_chain(edits, number, wanted, know, present, (goal.name,))
            meaning = _MEANING.search(detail)
            if meaning and number not in edits.replace:
                fix = _goal(meaning.group(1))
                if fix is not None:
                    edits.replace[number] = replace(fix, until=goal.until or fix.until, tries=goal.tries)
            for pattern, scale in ((_TRIES, 1), (_HITS, 2)):
                found = pattern.search(detail)
                if found:
                    more = min(200, int(found.group(1)) * scale + (2 if scale == 2 else 0))
                    if more > goal.tries:
                        edits.tries[number] = max(edits.tries.get(number, 0), more)
            condition = _CONDITION.search(detail)
            if condition:
                edits.to_rule[number] = condition.group(1).replace(" ", "")
    lowered = text.lower()
    for outcome in outcomes:
        for status, source in outcome.ran_out:
            rule = f"rule: if {status}<{RULE_THRESHOLD} then {source}"
            if not re.search(rf"rule:\s*if\s+{status}\s*<", lowered) and rule not in edits.rules:
                edits.rules.append(rule)
        for fight in outcome.defend:
            rule = f"rule: if health<{DEFEND_BELOW} then {fight.strip()}"
            if not re.search(r"rule:\s*if\s+health\s*<", lowered) and rule not in edits.rules:
                edits.rules.append(rule)
        for material in outcome.deaths:
            if material not in edits.avoid and not re.search(rf"avoid:.*\b{material}\b", lowered):
                edits.avoid.append(material)
    edits.append = _new_goals(outcomes, lowered)
    return edits


def _until(item: str, need: int) -> Condition:
    return Condition(item, ">=", need)


def _new_goals(outcomes: list[_Outcome], lowered: str) -> list[str]:
    """Goals for achievements locked in every record and not yet named in the text, things seen by all first."""
    if not outcomes:
        return []
    locked = [dict(outcome.locked) for outcome in outcomes]
    order = [name for name, _ in outcomes[0].locked]
    ranked: list[tuple[int, int, str]] = []
    for position, name in enumerate(order):
        if not all(name in each for each in locked) or re.search(rf"\b{re.escape(name)}\b", lowered):
            continue
        goal = _goal(locked[0][name])
        if goal is None:
            continue
        needed = ([goal.at] if goal.at else []) + list(goal.near)
        seen_by = sum(all(thing in outcome.seen for thing in needed) for outcome in outcomes)
        ranked.append((-seen_by, position, f"goal: {goal}"))
    return [line for _, _, line in sorted(ranked)]


def _render(lines: list[_Line], edits: _Edits, *, drops: bool, append: bool) -> str:
    out: list[str] = []
    for line in lines:
        if line.goal is None:
            if edits.avoid and line.text.strip().lower().startswith("avoid:"):
                out.append(line.text.rstrip() + ", " + ", ".join(edits.avoid))
                continue
            out.append(line.text)
            continue
        number = line.number
        for goal in edits.before.get(number, []):
            out.append(f"goal: {goal}")
        if drops and number in edits.drop:
            out.append(f"# dropped (never in reach): goal: {line.goal}")
            continue
        goal = edits.replace.get(number, line.goal)
        if number in edits.near:
            goal = replace(goal, near=tuple(dict.fromkeys(goal.near + tuple(sorted(edits.near[number])))))
        if number in edits.tries:
            goal = replace(goal, tries=edits.tries[number])
        if number in edits.to_rule:
            out.append(f"# now a rule: goal: {line.goal}")
            out.append(f"rule: if {edits.to_rule[number]} then {goal}")
            continue
        out.append(line.text if goal == line.goal else f"goal: {goal}")
    if edits.avoid and not any(line.text.strip().lower().startswith("avoid:") for line in lines):
        out.append("avoid: " + ", ".join(edits.avoid))
    out += edits.rules
    if append:
        out += edits.append
    return "\n".join(out)


def propose(request: Mapping[str, Any]) -> list[str]:
    """The proposals for one reflection request: up to ``request["proposals"]`` distinct texts."""
    current = str(request["current_text"])
    lines = _lines(current)
    edits = _collect_edits(lines, _records(request), current)
    variants = (
        _render(lines, edits, drops=drops, append=append)
        for drops, append in ((True, True), (False, True), (True, False), (False, False))
    )
    texts = distinct_proposals(request, variants, keep_unchanged=False)
    # nothing to change: say so in the text rather than repeat it
    return texts or [current.rstrip("\n") + "\n# the feedback suggested no change"]


reply_for_turn, serve = offline_proposer(propose, name="crafter-offline-proposer")


if __name__ == "__main__":  # pragma: no cover - run through offline_proposer.py
    raise SystemExit(serve(sys.stdin, sys.stdout))
