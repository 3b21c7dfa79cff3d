"""The ``offline`` proposer backend: a deterministic rule in the optimizer's process, no model, no network.

It reads what a task's feedback says and adds it to the text: for each minibatch row that scored below 1 and
carries feedback, in row order, the feedback's first line becomes a note (``- <line>``) at the end of the target
module's text, unless the text already holds that line (or, when the proposer is asked again, a version that
another proposal in flight makes holds it: ``concurrent_edits``). One proposal carries every new note; with
``proposals_per_call = n > 1`` the *k*-th carries the first *k*. A minibatch with nothing new to say proposes the
text unchanged.

It is for trying a task's wiring before paying for a model, and for examples and tests that must run offline: it
improves a task only where the feedback states the fix (``"mention Paris"``), as a model reading it would.
Every call is free (cost 0, no tokens).
"""

from __future__ import annotations

import json
import time

from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.usage import Usage

__all__ = ["FeedbackNotesProposer", "feedback_notes"]


def feedback_notes(request: ReflectionRequest) -> list[str]:
    """The proposed texts for ``request`` (see the module's rule)."""
    current = request.candidate[request.target_module]
    # a line that proposals in flight already add (listed when the proposer is asked again) counts as present
    texts = (current, *(edit.text for edit in request.concurrent_edits))
    present = {line.strip() for text in texts for line in text.splitlines()}
    notes: list[str] = []
    for record in request.records:
        if record.reward >= 1.0 or not record.feedback:
            continue
        first_line = record.feedback.strip().splitlines()[0].strip() if record.feedback.strip() else ""
        note = f"- {first_line}"
        if first_line and note not in present and note not in notes:
            notes.append(note)
    if not notes:
        return [current]
    wanted = max(1, request.proposals)
    separator = "" if current.endswith("\n") or not current else "\n"
    counts = range(len(notes), 0, -1) if wanted == 1 else range(1, min(wanted, len(notes)) + 1)
    return [current + separator + "\n".join(notes[:count]) for count in counts][:wanted]


class FeedbackNotesProposer:
    """The ``offline`` backend's proposer (:func:`feedback_notes`)."""

    backend = "offline"
    model = "feedback-notes"

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        started = time.perf_counter()
        texts = feedback_notes(request)
        return ProposerResult(
            texts=tuple(texts),
            usage=Usage(calls=1, cost_usd=0.0),
            raw_text=json.dumps({"proposals": texts}, ensure_ascii=False),
            duration_seconds=time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        return None
