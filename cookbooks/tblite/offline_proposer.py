"""A deterministic offline proposer for the tblite ``playbook`` policy, speaking the codex app-server protocol.

It stands in for ``codex app-server`` so the demo and the tests drive the optimizer's real proposer client with no
network and no key; :mod:`synth_opt.proposers.stdio_app_server` speaks the protocol around :func:`propose`
(``cookbook_kit.proposer``).

The reply is a pure function of the turn's text (no data files, no memory across calls; a restarted proposer
answers the same). It reads the request in the fenced ``json synth-opt-reflection`` block and edits the playbook
rules of ``current_text`` from the minibatch records, the way a careful person reading the failures would. For each
record that did not pass every check (reward below 1), in record order:

- the record's hint (``task.hint``, else the ``hint:`` line of the feedback) names a technique in words and gives a
  command template in backticks; the template becomes the rule's command;
- the rule's trigger words come from the record's instruction (``task.instruction``, else the trace's): the
  instruction words (3+ letters) whose stem also occurs in the hint's words, ranked by how few *other* minibatch
  records' instructions contain them (so a word every task uses loses), then by how early the hint names them (the
  technique's head word first), then by their place in the instruction; the best ``TRIGGER_WORDS`` (1) are kept;
- with no rule holding that command yet, a new line ``when instruction mentions <words>: <command>`` is appended;
  when such a rule exists but none of its words occurs in this instruction, the best new word is added to it; when
  it exists and already applies, nothing changes (the failure has another cause).

Nothing is ever removed. With ``proposals = n`` it returns ``n`` distinct texts where the records allow: variant
``i`` keeps ``TRIGGER_WORDS + i`` trigger words per new rule. When no record failed it returns the text unchanged.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the cookbook importable as the package ``tblite``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cookbook_kit.proposer import distinct_proposals, offline_proposer, wanted_proposals
from synth_opt.proposers.stdio_app_server import extract_reflection_request as extract_request
from tblite.policy import RULE, parse_rules_uncached, stem, stems, words

__all__ = ["TRIGGER_WORDS", "extract_request", "propose", "reply_for_turn", "serve"]

TRIGGER_WORDS = 1
MIN_WORD = 3
_TEMPLATE = re.compile(r"`([^`]+)`")
_HINT_LINE = re.compile(r"^hint: (?P<hint>.+)$", re.MULTILINE)


def _record_fields(record: Mapping[str, Any]) -> tuple[str, str]:
    """(instruction, hint) from the task row, else the trace and the feedback."""
    raw_task, raw_output = record.get("task"), record.get("output")
    task: Mapping[str, Any] = raw_task if isinstance(raw_task, Mapping) else {}
    output: Mapping[str, Any] = raw_output if isinstance(raw_output, Mapping) else {}
    instruction = str(task.get("instruction") or output.get("instruction") or "")
    hint = task.get("hint")
    feedback = record.get("feedback")
    if not hint and isinstance(feedback, str):
        match = _HINT_LINE.search(feedback)
        hint = match.group("hint") if match else None
    return instruction, str(hint or "")


def _reward(record: Mapping[str, Any]) -> float:
    try:
        return float(record.get("reward") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _template(hint: str) -> str:
    match = _TEMPLATE.search(hint)
    return match.group(1).strip() if match else ""


def _same(command: str, other: str) -> bool:
    return " ".join(command.split()) == " ".join(other.split())


def _triggers(instruction: str, prose: str, others: list[set[str]]) -> list[str]:
    """Instruction words whose stem the hint's words share, best first (see the module docstring)."""
    prose_order: dict[str, int] = {}
    for position, word in enumerate(words(prose)):
        prose_order.setdefault(stem(word), position)
    options: list[tuple[int, int, int, str]] = []
    seen: set[str] = set()
    for order, word in enumerate(words(instruction)):
        word_stem = stem(word)
        if len(word) < MIN_WORD or not word.isalpha() or word_stem in seen or word_stem not in prose_order:
            continue
        seen.add(word_stem)
        elsewhere = sum(word_stem in other for other in others)
        options.append((elsewhere, prose_order[word_stem], order, word))
    return [option[-1] for option in sorted(options)]


def _edit(request: Mapping[str, Any], trigger_words: int) -> str:
    lines = str(request["current_text"]).splitlines()
    records = [record for record in request.get("records") or [] if isinstance(record, Mapping)]
    fields = [_record_fields(record) for record in records]
    templates = [_template(hint) for _, hint in fields]
    for index, record in enumerate(records):
        instruction, hint = fields[index]
        template = templates[index]
        if _reward(record) >= 1.0 or not instruction or not template:
            continue
        prose = _TEMPLATE.sub(" ", hint)
        others = [stems(fields[j][0]) for j in range(len(records)) if j != index and templates[j] != templates[index]]
        ranked = _triggers(instruction, prose, others)
        if not ranked:
            continue
        instruction_stems = stems(instruction)
        existing = next(
            (rule for rule in parse_rules_uncached("\n".join(lines)) if _same(rule.command, template)), None
        )
        if existing is None:
            lines.append(f"when instruction mentions {' | '.join(ranked[:trigger_words])}: {template}")
        elif not any(stems(word) <= instruction_stems for word in existing.words):
            match = RULE.match(lines[existing.line])
            assert match is not None
            trigger = f"{match.group('words').strip()} | {ranked[0]}"
            lines[existing.line] = f"when instruction mentions {trigger}: {match.group('command')}"
    return "\n".join(lines)


def propose(request: Mapping[str, Any]) -> list[str]:
    """The proposals for one reflection request: ``request["proposals"]`` distinct texts where edits allow."""
    variants = (_edit(request, TRIGGER_WORDS + extra) for extra in range(wanted_proposals(request) + 4))
    return distinct_proposals(request, variants, keep_unchanged=True)


reply_for_turn, serve = offline_proposer(propose, name="tblite-offline-proposer")


if __name__ == "__main__":
    raise SystemExit(serve(sys.stdin, sys.stdout))
