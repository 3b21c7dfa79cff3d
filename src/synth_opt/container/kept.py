"""What a run keeps of a rollout reply: at most ``STORED_CHARS`` of its feedback and of its trace.

A container may write megabytes of feedback or trace per rollout. Kept whole, every copy (the run's memory, its
event feed, its workspace, the request cache) grows by that much a rollout. The run keeps the start of each long
field, cut with the same visible marker the proposer's prompt uses, and ``cut`` names what was cut with its whole
length and sha256. Because at least ``proposer.max_feedback_chars`` is kept and the prompt's marker names the whole
length, the proposer is shown exactly what the whole reply would have shown it; a cached or resumed reply is the
kept one, so replays and resumes stay exact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from synth_opt.container.wire import RolloutReply
from synth_opt.texts import shorten, shorten_shown, shown_output

__all__ = ["STORED_CHARS", "kept_chars", "kept_payload", "kept_reply", "shortened", "trace_digest"]

STORED_CHARS = 65_536

# where a reply's feedback may be (container.replies reads the first that has one): the reply, its reward_info,
# actionable_side_info and metadata
_FEEDBACK_HOLDERS = ("reward_info", "actionable_side_info", "metadata")


def kept_chars(max_feedback_chars: int, max_prompt_chars: int) -> int:
    """What a run keeps of a long feedback or trace: ``STORED_CHARS``, or all the proposer may be shown of one when
    that is more (``max_feedback_chars`` of a row, and never more than the whole prompt may hold)."""
    return max(STORED_CHARS, min(max_feedback_chars, max_prompt_chars))


def trace_digest(trace: Any) -> str | None:
    """A short content hash of what the policy saw and did (the trace itself stays in the container's record)."""
    if trace is None:
        return None
    canonical = json.dumps(trace, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def kept_reply(reply: RolloutReply, limit: int) -> RolloutReply:
    """``reply`` with its feedback, and its trace (as the proposer is shown it: a text, or sorted JSON), cut to
    ``limit`` characters with a visible marker when longer; ``cut`` names each with its whole length and sha256,
    ``whole_trace_digest`` keeps the whole trace's :func:`trace_digest`. A field the reply's ``cut`` already names
    (a reply kept before, from the cache) is left as it is. The reward, objectives and usage are untouched; the raw
    reply becomes :func:`kept_payload` (what the cache keeps)."""
    cut = dict(reply.cut)
    feedback, trace, digest = reply.feedback, reply.trace, reply.whole_trace_digest
    if feedback is not None and "feedback" not in cut:
        feedback, whole = shorten(feedback, limit)
        cut.update({"feedback": whole} if whole else {})
    if trace is not None and "output" not in cut:
        shown, whole = shorten(shown_output(trace), limit)
        if whole:
            digest, trace, cut["output"] = trace_digest(trace), shown, whole
    if cut == reply.cut:
        return reply
    kept = replace(reply, feedback=feedback, trace=trace, cut=cut, whole_trace_digest=digest)
    return replace(kept, raw=kept_payload(kept))


def shortened(reply: RolloutReply, limit: int) -> RolloutReply:
    """``reply`` kept for what a proposer may be shown of it and no more: its feedback and trace cut to ``limit``
    even when kept longer before (``cut`` still names the whole of each), its raw reply dropped. A proposer shown
    at most ``limit`` characters of a row sees the same from this as from the reply (the evaluation store)."""
    feedback, trace, cut = shorten_shown(reply.feedback, reply.trace, reply.cut, limit)
    return replace(reply, feedback=feedback, trace=trace, cut=cut, raw={})


def kept_payload(reply: RolloutReply) -> dict[str, Any]:
    """The raw reply with the fields ``reply.cut`` names replaced by what was kept of them: the payload that,
    validated again, gives ``reply`` back (with ``cut`` and ``whole_trace_digest`` set from beside it)."""
    payload = dict(reply.raw)
    if "feedback" in reply.cut:
        for holder in _FEEDBACK_HOLDERS:
            if isinstance(payload.get(holder), dict) and "feedback" in payload[holder]:
                payload[holder] = {key: value for key, value in payload[holder].items() if key != "feedback"}
        payload["feedback"] = reply.feedback
    if "output" in reply.cut:
        payload.pop("turns", None)
        payload["trace"] = reply.trace
    return payload
