"""The two code-review policies: ``checklist`` (offline, deterministic) and ``llm`` (an OpenAI-compatible endpoint).

``checklist`` is an honest stand-in for a model: its findings are a pure function of the candidate text and the
diff, with no built-in knowledge of defects. The candidate is a review checklist; every line of the form

    - <category>: `<pattern>`, `<pattern>`, ... [unless `<pattern>`, ...]

is a rule (other lines are prose the policy ignores). A pattern is a backtick-quoted *phrase* of code tokens, or a
``/regex/`` inside the backticks (Python ``re.search`` on the added line's raw text). The rule fires on an added
line when any of its patterns matches and none of its ``unless`` patterns does; each firing is one finding
``(new-file line number, category)``. A line may get findings from several rules; the same (line, category) is
reported once.

Tokens (one generic tokenizer for every language, shared with the offline proposer): a string literal is the
placeholder ``STR`` (an f-string, or a JS template literal with ``${``, is ``FSTR``); an identifier is split into
lower-case words at underscores and camelCase humps (``API_KEY`` and ``apiKey`` are both ``api key``); numbers
stay as written; operators are single tokens (``==``, ``<=``, ``+=``, ``=>`` ...) and any other character is one
token. A phrase is tokenized the same way (``STR`` / ``FSTR`` written in capitals are the placeholders, ``...``
is a gap of any length) and matches when its tokens appear in the line in that order, adjacent except at gaps:
`` `= [ ] )` `` matches ``def f(a, seen=[]):``, `` `except :` `` matches ``except:`` but not ``except KeyError:``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from synth_opt.policies.chat import ChatEndpoint, LlmPolicyError

__all__ = [
    "FSTR",
    "GAP",
    "STR",
    "Checklist",
    "DiffLine",
    "Finding",
    "LlmPolicyError",
    "Pattern",
    "Rule",
    "added_lines",
    "parse_checklist",
    "parse_diff",
    "parse_findings_reply",
    "phrase_matches",
    "predict_llm",
    "render_phrase",
    "review",
    "seed_checklist",
    "tokenize",
    "tokenize_phrase",
]

STR = "<STR>"
FSTR = "<FSTR>"
GAP = "<...>"

_TOKEN = re.compile(
    r"""
    (?P<fstr>(?:[fF][rR]?|[rR][fF])(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*') | `(?:[^`\\]|\\.)*`)
  | (?P<str>[rRbBuU]?(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'))
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<op>===|!==|==|!=|<=|>=|\+=|-=|\*=|/=|\*\*|//|->|=>|&&|\|\||<<|>>|::|\S)
    """,
    re.VERBOSE,
)
_HUMP = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+|[0-9]+")


def _words(identifier: str) -> list[str]:
    words: list[str] = []
    for part in identifier.split("_"):
        words += [word.lower() for word in _HUMP.findall(part)]
    return words


@lru_cache(maxsize=8192)
def _tokenize(text: str) -> tuple[str, ...]:
    tokens: list[str] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        value = match.group()
        if kind == "fstr":
            tokens.append(STR if value.startswith("`") and "${" not in value else FSTR)
        elif kind == "str":
            tokens.append(STR)
        elif kind == "word":
            tokens += _words(value)
        else:
            tokens.append(value)
    return tuple(tokens)


def tokenize(text: str) -> tuple[str, ...]:
    """The tokens of one line of code (see the module docstring)."""
    return _tokenize(text)


@lru_cache(maxsize=4096)
def tokenize_phrase(phrase: str) -> tuple[str, ...]:
    """A phrase's tokens: code tokens, the placeholders ``STR``/``FSTR`` and the gap ``...``."""
    tokens: list[str] = []
    for index, piece in enumerate(phrase.split("...")):
        if index:
            tokens.append(GAP)
        for word in re.split(r"(\bF?STR\b)", piece):
            if word == "STR":
                tokens.append(STR)
            elif word == "FSTR":
                tokens.append(FSTR)
            elif word.strip():
                tokens += _tokenize(word)
    while tokens and tokens[0] == GAP:
        tokens.pop(0)
    while tokens and tokens[-1] == GAP:
        tokens.pop()
    return tuple(tokens)


def render_phrase(tokens: Sequence[str]) -> str:
    """Tokens written back as a phrase (``tokenize_phrase(render_phrase(t)) == t`` for tokens without a backtick)."""
    shown = {STR: "STR", FSTR: "FSTR", GAP: "..."}
    return " ".join(shown.get(token, token) for token in tokens)


def _find(tokens: Sequence[str], segment: Sequence[str], start: int) -> int:
    """The index just past the first occurrence of ``segment`` in ``tokens`` at or after ``start``, or -1."""
    width = len(segment)
    first = segment[0]
    for index in range(start, len(tokens) - width + 1):
        if tokens[index] == first and tuple(tokens[index : index + width]) == tuple(segment):
            return index + width
    return -1


def phrase_matches(phrase: Sequence[str], tokens: Sequence[str]) -> bool:
    """Whether the phrase's segments (split at gaps) occur in ``tokens`` in order, each contiguous."""
    if not phrase:
        return False
    position = 0
    segment: list[str] = []
    for token in [*phrase, GAP]:
        if token != GAP:
            segment.append(token)
            continue
        if segment:
            position = _find(tokens, segment, position)
            if position < 0:
                return False
            segment = []
    return True


@dataclass(frozen=True, slots=True)
class Pattern:
    """One backtick-quoted pattern: a phrase, or a regex when written as ``/.../``."""

    source: str
    phrase: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None

    def matches(self, text: str, tokens: Sequence[str]) -> bool:
        if self.regex is not None:
            return self.regex.search(text) is not None
        return phrase_matches(self.phrase, tokens)


@dataclass(frozen=True, slots=True)
class Rule:
    category: str
    patterns: tuple[Pattern, ...]
    exceptions: tuple[Pattern, ...]
    line: str

    def fires(self, text: str, tokens: Sequence[str]) -> Pattern | None:
        """The first pattern that matches (None when none does or an ``unless`` pattern matches)."""
        hit = next((pattern for pattern in self.patterns if pattern.matches(text, tokens)), None)
        if hit is None or any(pattern.matches(text, tokens) for pattern in self.exceptions):
            return None
        return hit


@dataclass(frozen=True, slots=True)
class Checklist:
    rules: tuple[Rule, ...]
    problems: tuple[str, ...]
    """Patterns that could not be used (an invalid regex, an empty phrase), for the trace."""


RULE_LINE = re.compile(r"^\s*[-*]\s*([A-Za-z][A-Za-z0-9_-]*)\s*:(.*)$")
_SPAN = re.compile(r"`([^`]*)`|\bunless\b")


def _pattern(source: str) -> Pattern | str:
    text = source.strip()
    if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
        try:
            return Pattern(source=text, regex=re.compile(text[1:-1]))
        except re.error as exc:
            return f"invalid regex {text!r}: {exc}"
    phrase = tokenize_phrase(text)
    if not phrase:
        return f"empty phrase {source!r}"
    return Pattern(source=text, phrase=phrase)


@lru_cache(maxsize=256)
def parse_checklist(text: str) -> Checklist:
    """The rules of a checklist (cached: a container reviews many diffs with one candidate)."""
    rules: list[Rule] = []
    problems: list[str] = []
    for line in text.splitlines():
        match = RULE_LINE.match(line)
        if match is None:
            continue
        category = match.group(1).lower().replace("-", "_")
        patterns: list[Pattern] = []
        exceptions: list[Pattern] = []
        target = patterns
        for span in _SPAN.finditer(match.group(2)):
            if span.group(1) is None:
                target = exceptions
                continue
            parsed = _pattern(span.group(1))
            if isinstance(parsed, str):
                problems.append(f"{category}: {parsed}")
            else:
                target.append(parsed)
        if patterns:
            rules.append(Rule(category, tuple(patterns), tuple(exceptions), line.strip()))
    return Checklist(tuple(rules), tuple(problems))


SEED_CHECKLIST = """\
You review one unified diff. Report each defect introduced on an added (+) line as "<line>: <category>", one \
per line, where <line> is the line number in the new file; report nothing for a clean diff.
Checklist. Each rule line names a category, then backtick-quoted patterns, optionally followed by "unless" and \
more patterns: flag an added line when a pattern matches it and no "unless" pattern does. A pattern is a phrase \
of code tokens (STR = a string literal, FSTR = an f-string or template literal, ... = any gap) or a /regex/.
- bare_except: `except :`
- hardcoded_secret: `password`"""


def seed_checklist() -> str:
    """The fixed seed: generic and weak on purpose (two rules), so the search has something to learn."""
    return SEED_CHECKLIST


# ------------------------------------------------------------------------------------------------ diffs and review


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str
    """``+`` added, ``-`` removed, `` `` context."""
    old: int | None
    new: int | None
    text: str


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@lru_cache(maxsize=512)
def parse_diff(diff: str) -> tuple[DiffLine, ...]:
    """The hunk lines of a unified diff with their old and new line numbers (file headers are skipped)."""
    lines: list[DiffLine] = []
    old = new = 0
    in_hunk = False
    for raw in diff.splitlines():
        header = _HUNK.match(raw)
        if header:
            old, new, in_hunk = int(header.group(1)), int(header.group(3)), True
            continue
        if not in_hunk or raw.startswith(("--- ", "+++ ", "\\")):
            continue
        kind, text = (raw[:1], raw[1:]) if raw else (" ", "")
        if kind == "+":
            lines.append(DiffLine("+", None, new, text))
            new += 1
        elif kind == "-":
            lines.append(DiffLine("-", old, None, text))
            old += 1
        elif kind == " ":
            lines.append(DiffLine(" ", old, new, text))
            old += 1
            new += 1
        else:
            in_hunk = False
    return tuple(lines)


def added_lines(diff: str) -> dict[int, str]:
    """New-file line number -> text of every added line."""
    return {line.new: line.text for line in parse_diff(diff) if line.kind == "+" and line.new is not None}


@dataclass(frozen=True, slots=True)
class Finding:
    line: int
    category: str
    rule: str | None = None
    """The pattern that fired (``checklist`` policy only)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"line": self.line, "category": self.category}
        if self.rule is not None:
            data["rule"] = self.rule
        return data


def review(checklist: str, diff: str) -> list[Finding]:
    """The checklist policy: every rule applied to every added line, in line order then rule order."""
    rules = parse_checklist(checklist).rules
    findings: list[Finding] = []
    seen: set[tuple[int, str]] = set()
    for number, text in sorted(added_lines(diff).items()):
        tokens = tokenize(text)
        for rule in rules:
            hit = rule.fires(text, tokens)
            if hit is not None and (number, rule.category) not in seen:
                seen.add((number, rule.category))
                findings.append(Finding(number, rule.category, hit.source))
    return findings


# ------------------------------------------------------------------------------------------------------ llm policy


_REPLY_LINE = re.compile(
    r"^(?:[-*]\s*)?(?:line\s*)?(\d+)\s*[:\-–,]\s*`?([A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*)`?(?:[\s:(\-–,].*)?$",
    re.IGNORECASE,
)


def _category(value: Any) -> str:
    return str(value).strip().lower().replace("-", "_").replace(" ", "_")


def _from_json(value: Any) -> list[Finding] | None:
    if isinstance(value, Mapping):
        if "findings" in value:
            return _from_json(value["findings"])
        line, category = value.get("line"), value.get("category")
        if isinstance(line, int | str) and str(line).strip().isdigit() and isinstance(category, str) and category:
            return [Finding(int(str(line).strip()), _category(category))]
        return []
    if isinstance(value, list):
        found: list[Finding] = []
        for item in value:
            found += _from_json(item) or []
        return found
    return None


def parse_findings_reply(text: str) -> list[Finding]:
    """Findings from a model's reply: a JSON array or object (``{"findings": [...]}``), JSON lines
    ``{"line": 12, "category": "sql_injection"}``, or lines ``12: sql_injection``. Anything else is ignored;
    duplicates are dropped."""
    body = text.strip()
    fence = re.search(r"```(?:json|jsonl)?\s*\n(.*?)```", body, re.DOTALL)
    if fence:
        body = fence.group(1).strip()
    found: list[Finding] = []
    try:
        whole = json.loads(body)
    except ValueError:
        whole = None
    parsed = _from_json(whole) if whole is not None else None
    if parsed is not None:
        found = parsed
    else:
        for line in body.splitlines():
            stripped = line.strip().rstrip(",")
            if stripped.startswith("{"):
                try:
                    found += _from_json(json.loads(stripped)) or []
                except ValueError:
                    pass
                continue
            match = _REPLY_LINE.match(stripped)
            if match:
                found.append(Finding(int(match.group(1)), _category(match.group(2))))
    unique: list[Finding] = []
    seen: set[tuple[int, str]] = set()
    for finding in found:
        if (finding.line, finding.category) not in seen:
            seen.add((finding.line, finding.category))
            unique.append(finding)
    return unique


async def predict_llm(
    prompt: str, diff: str, policy: Mapping[str, Any], *, transport: Any = None
) -> tuple[list[Finding], str, dict[str, Any]]:
    """One chat-completions call: the candidate as the system prompt, the diff as the user message.

    Returns the parsed findings, the reply text and the usage (``calls``, ``prompt_tokens``,
    ``completion_tokens``, ``total_tokens``, ``cost_usd``; the cost from ``policy.config.input_cost_per_million``
    / ``output_cost_per_million``).
    """
    endpoint = ChatEndpoint.from_policy(policy, default_max_tokens=400)
    messages = [{"role": "system", "content": prompt}, {"role": "user", "content": diff}]
    text, usage = await endpoint.complete_once(messages, transport=transport)
    return parse_findings_reply(text), text, usage
