"""A deterministic offline proposer for the Banking77 keyword policy, speaking the codex app-server protocol.

It stands in for ``codex app-server`` so the demo and the tests drive the optimizer's real proposer client with no
network and no key; :mod:`synth_opt.proposers.stdio_app_server` speaks the protocol around :func:`propose`
(``cookbook_kit.proposer``).

The reply is a pure function of the turn's text (no data files, no memory across calls; a restarted proposer
answers the same). It reads the request in the fenced ``json synth-opt-reflection`` block and edits the keyword
lines of ``current_text`` from the minibatch records, the way a careful person reading the failures would:

for each record the policy got wrong (reward below 1), in record order, it adds to the line of the expected
label the ``ADD_WORDS`` (4) most telling words of the query that the line does not already list (compared after the
policy's tokenizer and stemmer). A word tells more when fewer minibatch queries of *other* labels contain it (so
"my", "how" or "the" lose against "arrived" or "stolen"), then when fewer label lines already list it, then when it
is longer, then by its place in the query; one-letter words are skipped. Nothing is ever removed: removing the
keyword that pulled a query to the wrong label was tried and generalised worse (see the cookbook README). A request
asked again lists what proposals in flight already add (``concurrent_edits``): their keywords count as listed, so
the reply adds the next most telling words instead.

With ``proposals = n`` it returns ``n`` distinct texts where the records allow: variant ``i`` adds ``ADD_WORDS + i``
words per failure. Correct records contribute nothing, except when nothing failed: then variant ``i`` adds
``1 + i`` words of each correct query to its own label's line instead.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the cookbook importable as the package ``banking77``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from banking77.policy import stem
from cookbook_kit.proposer import concurrent_texts, distinct_proposals, offline_proposer, wanted_proposals
from synth_opt.proposers.stdio_app_server import extract_reflection_request as extract_request

__all__ = ["ADD_WORDS", "extract_request", "propose", "reply_for_turn", "serve"]

ADD_WORDS = 4
_FEEDBACK = re.compile(r"expected (?P<expected>.+?), predicted (?P<predicted>.+?)\s*$")
_WORD = re.compile(r"[a-z0-9]+")


class _Lines:
    """The prompt's lines, edited in place: label lines keep their order and their keywords' spelling."""

    def __init__(self, text: str) -> None:
        self.lines: list[str | tuple[str, list[str]]] = []
        self.position: dict[str, int] = {}
        self.stems: dict[str, set[str]] = {}
        self.listing: Counter[str] = Counter()
        for line in text.splitlines():
            name, colon, rest = line.partition(":")
            label = name.strip()
            if colon and label and label not in self.position:
                self.position[label] = len(self.lines)
                self.lines.append((label, []))
                self.stems[label] = set()
                for word in rest.split(","):
                    if word.strip():
                        self.add(label, word.strip())
            else:
                self.lines.append(line)

    def add(self, label: str, keyword: str) -> None:
        entry = self.lines[self.position[label]]
        assert isinstance(entry, tuple)
        entry[1].append(keyword)
        key = _stems(keyword)
        if key not in self.stems[label]:
            self.stems[label].add(key)
            self.listing[key] += 1

    def render(self) -> str:
        out = []
        for entry in self.lines:
            out.append(entry if isinstance(entry, str) else f"{entry[0]}: {', '.join(entry[1])}")
        return "\n".join(out)


def _stems(text: str) -> str:
    return " ".join(stem(word) for word in _WORD.findall(text.lower()))


def _record_fields(record: Mapping[str, Any]) -> tuple[str, str | None]:
    """(query, expected label) from the task row, the policy output or the feedback, whichever has them."""
    task = record.get("task") if isinstance(record.get("task"), Mapping) else {}
    output = record.get("output") if isinstance(record.get("output"), Mapping) else {}
    query = task.get("text") or output.get("query") or ""
    expected = task.get("label") or output.get("expected")
    feedback = record.get("feedback")
    if not expected and isinstance(feedback, str):
        match = _FEEDBACK.search(feedback)
        expected = match.group("expected") if match else None
    return str(query), (str(expected) if expected else None)


def _edit(request: Mapping[str, Any], add_words: int, *, failures: bool = True) -> str:
    lines = _Lines(str(request["current_text"]))
    # keywords that proposals in flight already add to a line (a request asked again lists them) count as listed
    taken: dict[str, set[str]] = {}
    for text in concurrent_texts(request):
        for label, stems in _Lines(text).stems.items():
            taken.setdefault(label, set()).update(stems)
    records = [record for record in request.get("records") or [] if isinstance(record, Mapping)]
    fields = [_record_fields(record) for record in records]
    # per word stem: how many minibatch queries contain it, in total and per expected label
    with_stem: Counter[str] = Counter()
    with_stem_label: Counter[tuple[str, str | None]] = Counter()
    for query, expected in fields:
        for word_stem in {stem(word) for word in _WORD.findall(query.lower())}:
            with_stem[word_stem] += 1
            with_stem_label[word_stem, expected] += 1
    for record, (query, expected) in zip(records, fields, strict=True):
        if (_reward(record) < 1.0) != failures or not expected or expected not in lines.position:
            continue
        options: list[tuple[int, int, int, int, str]] = []
        seen: set[str] = set()
        for order, word in enumerate(_WORD.findall(query.lower())):
            word_stem = stem(word)
            if len(word) < 2 or word_stem in lines.stems[expected] or word_stem in seen:
                continue
            if word_stem in taken.get(expected, ()):
                continue
            seen.add(word_stem)
            other_labels = with_stem[word_stem] - with_stem_label[word_stem, expected]
            options.append((other_labels, lines.listing[word_stem], -len(word), order, word))
        for option in sorted(options)[:add_words]:
            lines.add(expected, option[-1])
    return lines.render()


def _reward(record: Mapping[str, Any]) -> float:
    try:
        return float(record.get("reward") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def propose(request: Mapping[str, Any]) -> list[str]:
    """The proposals for one reflection request: ``request["proposals"]`` distinct texts where edits allow."""
    current = str(request["current_text"])

    def variant(extra: int) -> str:
        text = _edit(request, ADD_WORDS + extra)
        if text == current:  # nothing failed: reinforce the correct records instead
            text = _edit(request, 1 + extra, failures=False)
        return text

    return distinct_proposals(request, map(variant, range(wanted_proposals(request) + 8)), keep_unchanged=True)


reply_for_turn, serve = offline_proposer(propose, name="banking77-offline-proposer")


if __name__ == "__main__":
    raise SystemExit(serve(sys.stdin, sys.stdout))
