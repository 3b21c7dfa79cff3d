"""The two Banking77 policies: ``keyword`` (offline, deterministic) and ``llm`` (an OpenAI-compatible endpoint).

``keyword`` is an honest stand-in for a model: its prediction is a pure function of the candidate prompt text and
the query, with no built-in synonyms, stop words or label knowledge. The prompt holds one line per label,
``label_name: keyword, keyword, ...``; a keyword may be a phrase (its words must appear next to each other).
Text is compared after a generic tokenizer: lowercase, split on anything not a letter or digit, and a light suffix
stemmer (``charges``, ``charged``, ``charging`` and ``charge`` all become ``charg``).

Scoring: a keyword that matches the query adds ``1 / n`` to its line, where ``n`` is the number of label lines that
list that keyword, so a word listed under one label is strong evidence and a word listed everywhere is none. The
prediction is the line with the highest score; ties go to the earlier line; a query that matches nothing gets the
first line's label. Adding a keyword to a line or removing one therefore changes predictions in a way a reader of
the prompt can follow, which is what makes the prompt worth optimising.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from synth_opt.policies.chat import ChatEndpoint, LlmPolicyError

__all__ = [
    "KeywordTable",
    "LlmPolicyError",
    "Prediction",
    "classify",
    "parse_label_reply",
    "parse_prompt",
    "predict_llm",
    "seed_prompt",
    "stem",
    "tokenize",
]

_SPLIT = re.compile(r"[^a-z0-9]+")
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "als", "al", "ed", "es", "s", "e")
_MIN_STEM = 3


def stem(word: str) -> str:
    """Strip the first matching generic English suffix while at least three characters remain."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            return word[: -len(suffix)]
    return word


def tokenize(text: str) -> list[str]:
    return [stem(word) for word in _SPLIT.split(text.lower()) if word]


def label_words(label: str) -> list[str]:
    """The words of a label's own name: split on underscores, lowercased, punctuation dropped."""
    words: list[str] = []
    for part in label.split("_"):
        words += [word for word in _SPLIT.split(part.lower()) if word]
    return words


def seed_prompt(labels: Iterable[str]) -> str:
    """The fixed seed (SPEC §13): one line per label, the label followed by the words of its own name."""
    return "\n".join(f"{label}: {', '.join(label_words(label))}" for label in labels)


@dataclass(frozen=True, slots=True)
class KeywordTable:
    """A parsed prompt: labels in line order and, per label, its keywords as token tuples with their weights."""

    labels: tuple[str, ...]
    keywords: tuple[tuple[tuple[str, ...], ...], ...]
    weights: Mapping[tuple[str, ...], float] = field(default_factory=dict)
    # token -> indices of the lines holding a keyword that starts with that token (to score only what can match)
    index: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


def parse_prompt_uncached(text: str) -> KeywordTable:
    order: list[str] = []
    per_label: dict[str, list[tuple[str, ...]]] = {}
    for line in text.splitlines():
        name, colon, rest = line.partition(":")
        label = name.strip()
        if not colon or not label:
            continue
        if label not in per_label:
            order.append(label)
            per_label[label] = []
        for raw in rest.split(","):
            keyword = tuple(tokenize(raw))
            if keyword and keyword not in per_label[label]:
                per_label[label].append(keyword)
    lines_with: dict[tuple[str, ...], int] = {}
    index: dict[str, list[int]] = {}
    for position, label in enumerate(order):
        for keyword in per_label[label]:
            lines_with[keyword] = lines_with.get(keyword, 0) + 1
            starts = index.setdefault(keyword[0], [])
            if not starts or starts[-1] != position:
                starts.append(position)
    return KeywordTable(
        labels=tuple(order),
        keywords=tuple(tuple(per_label[label]) for label in order),
        weights={keyword: 1.0 / count for keyword, count in lines_with.items()},
        index={token: tuple(lines) for token, lines in index.items()},
    )


@lru_cache(maxsize=256)
def parse_prompt(text: str) -> KeywordTable:
    """Parse a prompt (cached: a container scores one candidate on many rows)."""
    return parse_prompt_uncached(text)


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    score: float
    matched: dict[str, list[str]]
    """Per label with a positive score (best first, at most five): the keywords that matched the query."""


def _contains(tokens: Sequence[str], keyword: tuple[str, ...]) -> bool:
    if len(keyword) == 1:
        return keyword[0] in tokens
    width = len(keyword)
    return any(tuple(tokens[i : i + width]) == keyword for i in range(len(tokens) - width + 1))


def classify(prompt: str, query: str) -> Prediction:
    """The keyword policy: a pure function of the prompt text and the query."""
    table = parse_prompt(prompt)
    if not table.labels:
        return Prediction(label="", score=0.0, matched={})
    tokens = tokenize(query)
    present = set(tokens)
    lines: set[int] = set()
    for token in present:
        lines.update(table.index.get(token, ()))
    scores: dict[int, float] = {}
    matched: dict[int, list[str]] = {}
    for position in sorted(lines):
        hits = [keyword for keyword in table.keywords[position] if keyword[0] in present and _contains(tokens, keyword)]
        if hits:
            scores[position] = sum(table.weights[keyword] for keyword in hits)
            matched[position] = [" ".join(keyword) for keyword in hits]
    if not scores:
        return Prediction(label=table.labels[0], score=0.0, matched={})
    ranked = sorted(scores, key=lambda position: (-scores[position], position))
    best = ranked[0]
    return Prediction(
        label=table.labels[best],
        score=round(scores[best], 6),
        matched={table.labels[position]: matched[position] for position in ranked[:5]},
    )


def parse_label_reply(text: str, labels: Sequence[str]) -> str:
    """The label a model replied with: an exact label on the first non-empty line, else the longest label named
    anywhere in the reply, else the reply's first line as it is (which then scores 0)."""
    lines = [line.strip().strip("`'\"*.").strip() for line in text.strip().splitlines()]
    first = next((line for line in lines if line), "")
    if first.lower().startswith("label:"):
        first = first[len("label:") :].strip()
    by_lower = {label.lower(): label for label in labels}
    if first.lower() in by_lower:
        return by_lower[first.lower()]
    lowered = text.lower()
    for label in sorted(labels, key=len, reverse=True):
        if re.search(rf"(?<![a-z0-9_]){re.escape(label.lower())}(?![a-z0-9_])", lowered):
            return label
    return first


async def predict_llm(
    prompt: str,
    query: str,
    policy: Mapping[str, Any],
    labels: Sequence[str],
    *,
    transport: Any = None,
) -> tuple[str, dict[str, Any]]:
    """One chat-completions call: the candidate as the system prompt, the query as the user message.

    Returns the parsed label and the usage (``prompt_tokens``, ``completion_tokens``, ``total_tokens``,
    ``cost_usd``; the cost from ``policy.config.input_cost_per_million`` / ``output_cost_per_million``).
    """
    endpoint = ChatEndpoint.from_policy(policy, default_max_tokens=32)
    messages = [{"role": "system", "content": prompt}, {"role": "user", "content": query}]
    text, usage = await endpoint.complete_once(messages, transport=transport)
    return parse_label_reply(text, labels), usage
