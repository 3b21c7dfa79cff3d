"""The reflection request sent to a proposer, its bounded prompt, and the parsing of its reply.

The prompt is readable by a language model and carries the same request as one JSON block (fenced as
```` ```json synth-opt-reflection ````), so a deterministic offline proposer can read it exactly. The block comes
before the reply instructions, and the prompt ends with an example of the expected reply
``{"proposals": ["<full replacement text>", ...]}`` (a prompt that ended with the request block invited models to
answer in the block's shape).

Bounds: each row's feedback and output are cut to ``max_feedback_chars`` with a visible marker, and the whole
prompt (with the system instructions) to ``max_prompt_tokens`` estimated at :data:`CHARS_PER_TOKEN` characters a
token (:func:`fit_request`): rows are cut shorter, then dropped from the end (the prompt says how many), then the
task description and, last, the current text are cut.

Parsing (:func:`parse_reply`) reads what a person would read and adopts nothing else: the first JSON value in the
reply (prose before or after, fences with any info string) holding a ``proposals`` list of strings; else the first
``{"candidate": {module: text}}`` or ``{module: text}`` object naming the target module. Anything else is a
:class:`~synth_opt.errors.ProposerReplyError` that keeps the reply.
"""

from __future__ import annotations

import difflib
import json
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Final

from synth_opt.errors import ProposerReplyError
from synth_opt.texts import cut_text, replace_lone_surrogates, shorten_shown, text_digest

__all__ = [
    "BASE_INSTRUCTIONS",
    "CHARS_PER_TOKEN",
    "DEFAULT_MAX_FEEDBACK_CHARS",
    "DEFAULT_MAX_PROMPT_TOKENS",
    "DEFAULT_PROMPT_TEMPLATE",
    "PROMPT_PLACEHOLDERS",
    "REFLECTION_BLOCK_TAG",
    "REPLY_SCHEMA",
    "ConcurrentEdit",
    "ReflectionRequest",
    "ReflectiveRecord",
    "RejectedEdit",
    "bound_records",
    "cut_text",
    "fit_request",
    "parse_reply",
    "prompt_sections",
    "render_prompt",
    "template_problems",
]

REFLECTION_BLOCK_TAG = "synth-opt-reflection"
CHARS_PER_TOKEN = 4
DEFAULT_MAX_FEEDBACK_CHARS = 4000
DEFAULT_MAX_PROMPT_TOKENS = 16000
_MIN_ROW_CHARS = 200  # rows are not cut below this before whole rows are dropped

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
    """One minibatch row as the proposer sees it: the task, what the policy did, the reward and feedback.

    ``cut`` names the fields shortened to fit (``{"feedback": {"chars": <full length>, "sha256": <digest>}}``)."""

    task_id: str
    task: dict[str, Any]
    output: Any
    reward: float
    feedback: str | None = None
    cut: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = {
            "task_id": self.task_id,
            "task": self.task,
            "output": self.output,
            "reward": self.reward,
            "feedback": self.feedback,
        }
        if self.cut:
            data["cut"] = self.cut
        return data


@dataclass(frozen=True, slots=True)
class RejectedEdit:
    """A text proposed earlier from the same parent and module and rejected (``gepa.proposal_memory``): the
    proposal's index, the text (cut to ``max_feedback_chars``), its mean score on that proposal's minibatch and why
    it was rejected."""

    proposal_index: int
    text: str
    minibatch_mean: float | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "proposal_index": self.proposal_index,
            "text": self.text,
            "minibatch_mean": self.minibatch_mean,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ConcurrentEdit:
    """An edit another proposal in flight already makes (``gepa.pipeline.concurrent_edits``): that proposal's index
    and its version of the target module, carried onto this request's text (cut to ``max_feedback_chars``). A
    proposal whose texts all repeat such edits is asked again with them in its request."""

    proposal_index: int
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"proposal_index": self.proposal_index, "text": self.text}


@dataclass(frozen=True, slots=True)
class ReflectionRequest:
    candidate_id: str
    candidate: dict[str, str]
    target_module: str
    records: tuple[ReflectiveRecord, ...]
    task_info: str | None = None
    frontier_summary: dict[str, Any] = field(default_factory=dict)
    proposals: int = 1
    omitted_records: int = 0  # rows left out so the prompt fits max_prompt_tokens
    template: str | None = None  # ``proposer.prompt_template``'s text; None: DEFAULT_PROMPT_TEMPLATE
    rejected_edits: tuple[RejectedEdit, ...] = ()  # gepa.proposal_memory: what not to propose again
    concurrent_edits: tuple[ConcurrentEdit, ...] = ()  # what proposals in flight already change: not to repeat

    def to_json(self) -> dict[str, Any]:
        data = {
            "candidate_id": self.candidate_id,
            "candidate": self.candidate,
            "target_module": self.target_module,
            "current_text": self.candidate[self.target_module],
            "records": [record.to_json() for record in self.records],
            "task_info": self.task_info,
            "frontier_summary": self.frontier_summary,
            "proposals": self.proposals,
        }
        if self.omitted_records:
            data["omitted_records"] = self.omitted_records
        if self.rejected_edits:  # only then: a request without memory is the one it always was
            data["rejected_edits"] = [edit.to_json() for edit in self.rejected_edits]
        if self.concurrent_edits:  # only on a proposal asked again: every first request is the one it always was
            data["concurrent_edits"] = [edit.to_json() for edit in self.concurrent_edits]
        if self.template is not None:  # a template of the user's own: its content (in the cache key), not its path
            data["prompt_template_sha256"] = text_digest(self.template)
        return data

    def prompt_json(self) -> dict[str, Any]:
        """The machine-readable block of the prompt: the request without the candidate object (models copied its
        ``"candidate": {...}`` shape into their replies); the other modules are context only."""
        data = self.to_json()
        del data["candidate"]
        data.pop("prompt_template_sha256", None)
        others = {name: text for name, text in self.candidate.items() if name != self.target_module}
        if others:
            data["other_modules"] = others
        return data


def _bound_record(record: ReflectiveRecord, limit: int) -> ReflectiveRecord:
    """The record with its feedback and output cut to ``limit``. A field the run kept only the start of
    (``record.cut`` names it: :mod:`synth_opt.container.kept`) is cut again from what was kept, with the marker naming
    the whole length, so the proposer sees what the whole text would have given it."""
    feedback, output, cut = shorten_shown(record.feedback, record.output, record.cut, limit)
    if feedback is record.feedback and output is record.output:
        return record
    return replace(record, feedback=feedback, output=output, cut=cut)


def bound_records(records: tuple[ReflectiveRecord, ...], max_chars: int) -> tuple[ReflectiveRecord, ...]:
    """The records with each feedback and output (as JSON text when not a string) cut to ``max_chars``."""
    return tuple(_bound_record(record, max_chars) for record in records)


def fit_request(
    request: ReflectionRequest,
    *,
    max_feedback_chars: int = DEFAULT_MAX_FEEDBACK_CHARS,
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
) -> ReflectionRequest:
    """``request`` bounded so its prompt and the system instructions fit ``max_prompt_tokens`` (estimated at
    :data:`CHARS_PER_TOKEN` characters a token): rows cut to ``max_feedback_chars``, then shorter, then the rejected
    edits and the concurrent edits dropped (the oldest first), then rows dropped from the end, then the task
    description and the current text cut. A pure function: the same request and bounds always give the same
    prompt."""
    budget = max_prompt_tokens * CHARS_PER_TOKEN - len(BASE_INSTRUCTIONS)
    fitted = replace(request, records=bound_records(request.records, max_feedback_chars))
    if len(render_prompt(fitted)) <= budget:
        return fitted
    row_limit = max_feedback_chars
    while row_limit > _MIN_ROW_CHARS:
        row_limit = max(_MIN_ROW_CHARS, row_limit // 2)
        fitted = replace(fitted, records=bound_records(fitted.records, row_limit))
        if len(render_prompt(fitted)) <= budget:
            return fitted
    while fitted.rejected_edits:  # the memory goes before the examples do: the oldest rejected edit first
        fitted = replace(fitted, rejected_edits=fitted.rejected_edits[1:])
        if len(render_prompt(fitted)) <= budget:
            return fitted
    while fitted.concurrent_edits:  # so do the edits of other proposals, the oldest first
        fitted = replace(fitted, concurrent_edits=fitted.concurrent_edits[1:])
        if len(render_prompt(fitted)) <= budget:
            return fitted
    while fitted.records:
        fitted = replace(fitted, records=fitted.records[:-1], omitted_records=fitted.omitted_records + 1)
        if len(render_prompt(fitted)) <= budget:
            return fitted
    if fitted.task_info and len(fitted.task_info) > max_feedback_chars:
        fitted = replace(fitted, task_info=cut_text(fitted.task_info, max_feedback_chars))
        if len(render_prompt(fitted)) <= budget:
            return fitted
    # last resort: the current text itself is too long (it appears twice, as text and in the block)
    current = fitted.candidate[fitted.target_module]
    excess = len(render_prompt(fitted)) - budget
    keep = max(0, len(current) - excess // 2 - 200)
    candidate = {**fitted.candidate, fitted.target_module: cut_text(current, keep)}
    return replace(fitted, candidate=candidate, task_info=None)


def render_prompt(request: ReflectionRequest) -> str:
    """The reflection prompt: ``request.template`` (else :data:`DEFAULT_PROMPT_TEMPLATE`) with its placeholders
    filled in (:func:`prompt_sections`). The default reads: readable sections, the request as one JSON block, then
    the reply instructions and an example of the expected reply (the last thing a model reads)."""
    template = DEFAULT_PROMPT_TEMPLATE if request.template is None else request.template
    return template.format_map(prompt_sections(request))


def prompt_sections(request: ReflectionRequest) -> dict[str, str]:
    """What each placeholder of a prompt template stands for (:data:`PROMPT_PLACEHOLDERS`). A section that may be
    absent (``other_modules``, ``task_info``) renders with its heading and the blank line after it, or as nothing."""
    module = request.target_module
    others = [name for name in request.candidate if name != module]
    examples = [
        f"The minibatch: {len(request.records)} rows, each with the task input, the program's output, its reward "
        "and feedback, one row a line, in the machine-readable request below (for programs; do not copy it into "
        "your reply).",
    ]
    if request.omitted_records:
        examples.append(f"({request.omitted_records} more row(s) left out to fit the prompt limit.)")
    examples += ["", f"```json {REFLECTION_BLOCK_TAG}", _block(request.prompt_json()), "```"]
    instructions = [
        f"Write {request.proposals} improved, distinct version(s) of the whole `{module}` text, each a full "
        "replacement of the current text.",
        'Reply with exactly one JSON object with the key "proposals" (a list of strings) and nothing else: no '
        "prose, no code fence. For example:",
        json.dumps({"proposals": [f"<full replacement text {i}>" for i in range(1, request.proposals + 1)]}),
    ]
    summary = request.frontier_summary
    return {
        "module": module,
        "current_text": request.candidate[module],
        "other_modules": (
            f"Other modules of the program (context only, not to be rewritten): {', '.join(others)}.\n\n"
            if others
            else ""
        ),
        "task_info": f"## Task\n{request.task_info}\n\n" if request.task_info else "",
        "rejected_edits": _rejected_section(request),
        "concurrent_edits": _concurrent_section(request),
        "examples": "\n".join(examples),
        "frontier_summary": json.dumps(summary, sort_keys=True, ensure_ascii=False) if summary else "",
        "instructions": "\n".join(instructions),
    }


PROMPT_PLACEHOLDERS: Final = (
    "module",
    "current_text",
    "other_modules",
    "task_info",
    "rejected_edits",
    "concurrent_edits",
    "examples",
    "frontier_summary",
    "instructions",
)
"""The placeholders a prompt template may use, written ``{name}`` (literal braces are doubled: ``{{`` ``}}``):
``module`` (the target module's name), ``current_text`` (its text), ``other_modules`` (a line naming the program's
other modules, or nothing), ``task_info`` (a "## Task" section with the container's description, or nothing),
``rejected_edits`` (with ``gepa.proposal_memory``: a section saying how many texts proposed from this one were
rejected and not to propose them again, the texts themselves in the request's block; else nothing),
``concurrent_edits`` (on a proposal asked again because its texts repeated what other proposals in flight already
change: a section saying so and to make a different change, the texts in the request's block; else nothing),
``examples`` (the minibatch rows: a line saying what they are and the request as one JSON block, which the offline
proposers read), ``frontier_summary`` (the pool as JSON: its size, version, best and parent mean scores) and
``instructions`` (how to reply: the JSON object with a ``proposals`` list, and an example). A template without
``instructions`` must say itself how to reply, or every reply fails to parse."""

DEFAULT_PROMPT_TEMPLATE: Final = (
    "# Improve the module `{module}`\n"
    "\n"
    "## Current text\n"
    "```\n"
    "{current_text}\n"
    "```\n"
    "\n"
    "{other_modules}{task_info}{rejected_edits}{concurrent_edits}## Examples and request data\n"
    "{examples}\n"
    "\n"
    "## Your reply\n"
    "{instructions}"
)
"""The built-in reflection prompt, as a template: start your own ``proposer.prompt_template`` from it."""


def _concurrent_section(request: ReflectionRequest) -> str:
    edits = request.concurrent_edits
    if not edits:
        return ""
    return (
        "## Already being changed\n"
        f"{len(edits)} other proposal(s) running at the same time already change `{request.target_module}`: their "
        "versions are the `concurrent_edits` of the request below. Your first reply only repeated their changes. "
        "Do not make those changes again; improve something else the examples show.\n\n"
    )


def _rejected_section(request: ReflectionRequest) -> str:
    edits = request.rejected_edits
    if not edits:
        return ""
    return (
        "## Already tried\n"
        f"{len(edits)} earlier version(s) of `{request.target_module}` proposed from this text were rejected: "
        "they are the `rejected_edits` of the request below (each with its minibatch score and why). Do not "
        "propose them again; try a different change.\n\n"
    )


def template_problems(template: str) -> list[str]:
    """Why ``template`` cannot be a prompt template: nothing in it, no placeholder at all (every request would be the
    same words: neither the module's text nor the examples), unknown or positional placeholders, conversions and
    format specs, unbalanced braces. Empty when it can."""
    if not template.strip():
        return ["the template is empty; start from DEFAULT_PROMPT_TEMPLATE (synth_opt.proposers.reflection)"]
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [f"{exc}; write a literal brace as {{{{ or }}}}"]
    if all(name is None for _, name, _, _ in fields):
        return [
            "the template has no placeholder, so every request would be the same words; use at least "
            "{current_text} and {examples} (the placeholders are "
            + ", ".join(f"{{{known}}}" for known in PROMPT_PLACEHOLDERS)
            + ")"
        ]
    problems: list[str] = []
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name == "" or name.isdigit():
            problems.append("a positional placeholder {} names nothing; use one of the named placeholders")
        elif name not in PROMPT_PLACEHOLDERS:
            close = difflib.get_close_matches(name, PROMPT_PLACEHOLDERS, n=1)
            hint = f" (did you mean {{{close[0]}}}?)" if close else ""
            problems.append(
                f"unknown placeholder {{{name}}}{hint}; the placeholders are "
                + ", ".join(f"{{{known}}}" for known in PROMPT_PLACEHOLDERS)
            )
        elif spec or conversion:
            problems.append(f"placeholder {{{name}}} takes no format spec or conversion; write {{{name}}}")
    return problems


def _block(data: dict[str, Any]) -> str:
    """The request as one JSON object, its rows one a line (each row appears once in the prompt)."""
    records = data.pop("records")
    head = json.dumps(data, sort_keys=True, ensure_ascii=False)
    rows = ",\n".join(json.dumps(record, sort_keys=True, ensure_ascii=False) for record in records)
    return f'{head[:-1]}, "records": [\n{rows}\n]}}' if rows else f'{head[:-1]}, "records": []}}'


def parse_reply(text: str, *, wanted: int = 1, source: str = "proposer", module: str | None = None) -> list[str]:
    """At most ``wanted`` distinct, non-empty replacement texts from a proposer's reply.

    The first JSON value (anywhere in the reply, nested values included) with a ``proposals`` list of strings;
    else, when ``module`` is given, the first ``{"candidate": {module: text}}`` or ``{module: text}`` object.
    Raises :class:`ProposerReplyError` (carrying the reply) when there is none."""
    values = [replace_lone_surrogates(value) for value in _json_values(text)]  # a "\\ud83d" of the model's own
    problem = ""
    for value in values:
        for holder in _objects(value):
            if "proposals" not in holder:
                continue
            proposals = holder["proposals"]
            if isinstance(proposals, list) and all(isinstance(item, str) for item in proposals):
                return _distinct(proposals, wanted=wanted, source=source, raw=text)
            if isinstance(proposals, list | str) and not problem:
                problem = "'proposals' must be a list of strings"
    if module is not None:
        for value in values:
            for holder in _objects(value):
                inner = holder.get("candidate")
                for shape in (inner, holder):
                    if isinstance(shape, dict) and isinstance(shape.get(module), str):
                        return _distinct([shape[module]], wanted=wanted, source=source, raw=text)
    preview = " ".join(text.split())[:200]
    if not text.strip():
        reason = "the reply is empty"
    elif problem:
        reason = problem
    else:
        reason = "no parseable proposal (expected a JSON object with a 'proposals' list)"
    raise ProposerReplyError(
        f"{source} reply: {reason}; reply began: {preview!r}. Check the proposer's model, its output token limit "
        "and its instructions.",
        raw_reply=text,
        reply_preview=preview,
    )


def _json_values(text: str) -> Iterator[Any]:
    """Every JSON object or array in ``text`` in order of position, skipping over those already read."""
    decoder = json.JSONDecoder()
    position = 0
    while True:
        starts = [index for index in (text.find("{", position), text.find("[", position)) if index >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            position = start + 1
            continue
        yield value
        position = end


def _objects(value: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """The objects in ``value``, outermost first (a few levels deep)."""
    if depth > 8:
        return
    if isinstance(value, dict):
        yield value
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return
    for child in children:
        yield from _objects(child, depth + 1)


_PLACEHOLDER = re.compile(r"\s*<full replacement text(?: \d+)?>\s*")
"""The example reply's placeholder (the prompt ends with it): a model that copies it has proposed nothing."""


def _distinct(items: list[str], *, wanted: int, source: str, raw: str) -> list[str]:
    texts: list[str] = []
    copied = False
    for item in items:
        if _PLACEHOLDER.fullmatch(item):
            copied = True
        elif item.strip() and item not in texts:
            texts.append(item)
    if not texts:
        what = "copies the example reply's placeholder" if copied else "holds no non-empty text"
        raise ProposerReplyError(f"{source} reply: 'proposals' {what}", raw_reply=raw)
    return texts[:wanted]
