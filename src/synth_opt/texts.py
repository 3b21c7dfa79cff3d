"""Texts from outside the run: long ones cut to a bound with a visible marker, and their digests (what the proposer
is shown of a row and what a run keeps of a rollout reply are cut the same way); lone surrogates replaced."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "cut_text",
    "replace_lone_surrogates",
    "shorten",
    "shorten_shown",
    "shown_output",
    "text_digest",
    "without_lone_surrogates",
]

# a JSON escape of a UTF-16 surrogate (\ud800-\udfff), or the UTF-8-like bytes of one (json.loads passes them)
_SURROGATE_IN_JSON = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def cut_text(text: str, limit: int, *, total: int | None = None) -> str:
    """``text`` itself when it has at most ``limit`` characters, else its first ``limit`` characters and a visible
    marker naming how much was cut (of ``total`` characters: ``text`` is itself a cut of a text that long)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [... cut: {limit} of {len(text) if total is None else total} characters shown]"


def shorten(text: str, limit: int, whole: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any] | None]:
    """``text`` cut to ``limit`` (:func:`cut_text`) and what it is a cut of: ``whole`` when ``text`` is itself a
    cut of a longer text (its ``chars`` and ``sha256``), else ``text``'s own length and sha256; ``(text, None)``
    when it is not longer than ``limit``. Cutting a cut again gives what cutting the whole text would."""
    if len(text) <= limit:
        return text, None
    entry: dict[str, Any] = dict(whole) if whole else {"chars": len(text), "sha256": text_digest(text)}
    chars = entry.get("chars")
    return cut_text(text, limit, total=chars if isinstance(chars, int) else None), entry


def shorten_shown(
    feedback: str | None, output: Any, cut: Mapping[str, Any], limit: int
) -> tuple[str | None, Any, dict[str, Any]]:
    """A row's feedback and output (as it is shown: :func:`shown_output`) cut to ``limit``, and ``cut`` with what
    each is a cut of (:func:`shorten`; an entry already there stays: the field was cut before, from a longer
    text). Each field comes back as it was when it is not longer than ``limit``."""
    entries = dict(cut)
    if feedback is not None:
        feedback, whole = shorten(feedback, limit, entries.get("feedback"))
        entries.update({"feedback": whole} if whole else {})
    if output is not None:
        shown, whole = shorten(shown_output(output), limit, entries.get("output"))
        if whole:
            output, entries["output"] = shown, whole
    return feedback, output, entries


def shown_output(output: Any) -> str:
    """A rollout's output as the proposer is shown it: a text as it is, anything else as sorted JSON."""
    return output if isinstance(output, str) else json.dumps(output, sort_keys=True, ensure_ascii=False)


def text_digest(text: str) -> str:
    """The sha256 of a text (hex)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def without_lone_surrogates(value: Any, raw: bytes) -> Any:
    """``value`` (decoded from the JSON ``raw``) with every lone UTF-16 surrogate in its texts and keys replaced by
    U+FFFD. JSON may escape one (``"\\ud83d"``, half an emoji cut in two), and Python decodes it into a string that
    cannot be written as UTF-8: the run's feed, workspace and cache would fail on it. ``value`` itself when
    ``raw`` holds none (the common case: a scan of the bytes)."""
    if not _SURROGATE_IN_JSON.search(raw):
        return value
    return replace_lone_surrogates(value)


def replace_lone_surrogates(value: Any) -> Any:
    """A JSON value with every lone UTF-16 surrogate in its texts and keys replaced by U+FFFD (a decoded JSON
    string holds a surrogate only when it was not half of a pair)."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {replace_lone_surrogates(key): replace_lone_surrogates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_lone_surrogates(item) for item in value]
    return value
