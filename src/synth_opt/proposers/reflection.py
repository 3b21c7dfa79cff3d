"""The reflection request sent to a proposer, and strict parsing of its reply.

The prompt is readable by a language model and carries the same request as one JSON block (fenced as
```` ```json synth-opt-reflection ````), so a deterministic offline proposer can read it exactly. The reply must be a
JSON object ``{"proposals": ["<full replacement text>", ...]}``, either the whole message or one fenced ``json``
block; anything else is a :class:`~synth_opt.errors.ProposerError`, never silently adopted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from synth_opt.errors import ProposerError

__all__ = [
    "REFLECTION_BLOCK_TAG",
    "REPLY_SCHEMA",
    "ReflectionRequest",
    "ReflectiveRecord",
    "parse_reply",
    "render_prompt",
]

REFLECTION_BLOCK_TAG = "synth-opt-reflection"

REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"proposals": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["proposals"],
    "additionalProperties": False,
}

BASE_INSTRUCTIONS = (
    "You improve one text component of an LLM program. You are shown the current text, examples of the "
    "program's behaviour with their rewards and feedback, and a summary of the search so far. Reply with the "
    'JSON object {"proposals": ["<full replacement text>"]} and nothing else.'
)


@dataclass(frozen=True, slots=True)
class ReflectiveRecord:
    """One minibatch row as the proposer sees it: the task, what the policy did, the reward and feedback."""

    task_id: str
    task: dict[str, Any]
    output: Any
    reward: float
    feedback: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "task": self.task,
            "output": self.output,
            "reward": self.reward,
            "feedback": self.feedback,
        }


@dataclass(frozen=True, slots=True)
class ReflectionRequest:
    candidate_id: str
    candidate: dict[str, str]
    target_module: str
    records: tuple[ReflectiveRecord, ...]
    task_info: str | None = None
    frontier_summary: dict[str, Any] = field(default_factory=dict)
    proposals: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate_id": self.candidate_id,
            "candidate": self.candidate,
            "target_module": self.target_module,
            "current_text": self.candidate[self.target_module],
            "records": [record.to_json() for record in self.records],
            "task_info": self.task_info,
            "frontier_summary": self.frontier_summary,
            "proposals": self.proposals,
        }


def render_prompt(request: ReflectionRequest) -> str:
    """The reflection prompt: readable sections, then the whole request as one JSON block."""
    lines = [
        f"# Improve the module `{request.target_module}`",
        "",
        "## Current text",
        "```",
        request.candidate[request.target_module],
        "```",
        "",
    ]
    if request.task_info:
        lines += ["## Task", request.task_info, ""]
    lines += ["## Examples (minibatch)"]
    for index, record in enumerate(request.records, start=1):
        lines.append(f"### Example {index}: task {record.task_id}, reward {record.reward:g}")
        lines.append(f"- input: {json.dumps(record.task, sort_keys=True, ensure_ascii=False)}")
        lines.append(f"- output: {json.dumps(record.output, sort_keys=True, ensure_ascii=False)}")
        if record.feedback:
            lines.append(f"- feedback: {record.feedback}")
    lines += [
        "",
        "## Instructions",
        f"Write {request.proposals} improved, distinct version(s) of the whole `{request.target_module}` text.",
        'Reply with exactly one JSON object: {"proposals": ["<full replacement text>", ...]}.',
        "",
        "## Request (machine-readable)",
        f"```json {REFLECTION_BLOCK_TAG}",
        json.dumps(request.to_json(), sort_keys=True, ensure_ascii=False),
        "```",
    ]
    return "\n".join(lines)


_FENCE = re.compile(r"```json[^\n]*\n(.*?)\n?```", re.DOTALL)


def parse_reply(text: str, *, wanted: int = 1, source: str = "proposer") -> list[str]:
    """Parse a proposer's reply strictly into at most ``wanted`` distinct, non-empty replacement texts."""
    stripped = text.strip()
    candidates = [stripped] if stripped.startswith("{") else []
    candidates += [match.group(1) for match in _FENCE.finditer(text)]
    for blob in candidates:
        try:
            data = json.loads(blob)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "proposals" in data:
            return _proposals(data["proposals"], wanted=wanted, source=source)
    preview = " ".join(stripped.split())[:120]
    raise ProposerError(
        f"{source} reply has no parseable proposal (expected a JSON object with a 'proposals' list); "
        f"reply began: {preview!r}. Check the proposer's model and instructions.",
        reply_preview=preview,
    )


def _proposals(value: Any, *, wanted: int, source: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProposerError(f"{source} reply: 'proposals' must be a list of strings")
    texts: list[str] = []
    for item in value:
        if item.strip() and item not in texts:
            texts.append(item)
    if not texts:
        raise ProposerError(f"{source} reply: 'proposals' holds no non-empty text")
    return texts[:wanted]
