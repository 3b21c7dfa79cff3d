"""Secrets in URLs, redacted: the password of a URL's user info and every query-string value.

``http://user:secret@host/v1?key=abc&model=m`` is shown as ``http://user:***@host/v1?key=***&model=***``; user info
without a password (``https://TOKEN@host``, a token in the user name) is shown as ``***@``; fragment values are
redacted like query values. :func:`redact_text` finds URLs (``scheme://...``) in free text, such as an error
message from httpx that quotes the URL it failed on, and redacts each. The event bus applies it to every event it
numbers (message and string fields, except the fields that carry task content: see :data:`CONTENT_FIELDS`), so
events, the feed, the workspace rows projected from them and the log lines drawn from them hold no such secret.

Text without ``://`` is returned as is after one substring test, so the cost on the event path stays small.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["CONTENT_FIELDS", "MASK", "redact_fields", "redact_text", "redact_url"]

MASK: Final = "***"
CONTENT_FIELDS: Final = frozenset({"payload", "candidate", "texts", "text", "seed_candidate", "feedback", "records"})
"""Event fields that carry task content (candidate texts, feedback a container wrote): kept exactly, since a
resume or a workspace export must see the text that was decided on. Secrets from the config never reach them."""

_URL: Final = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^\s\"'<>`\\]+")
_TRAILING: Final = ".,;:!?)]}"
_PAIR: Final = re.compile(r"([^&;=]*)(=?)([^&;]*)")


def redact_url(url: str) -> str:
    """``url`` with its user-info password (or a password-less user name) and every query and fragment value
    replaced by ``***``; the scheme, host, port, path and parameter names stay."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = len(rest)
    for mark in "/?#":
        at = rest.find(mark)
        if at != -1:
            cut = min(cut, at)
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    path, hash_mark, fragment = tail.partition("#")
    path, question, query = path.partition("?")
    if question:
        path += "?" + _redact_pairs(query)
    if hash_mark:
        path += "#" + (_redact_pairs(fragment) if "=" in fragment else fragment)
    return f"{scheme}://{authority}{path}"


def _redact_pairs(query: str) -> str:
    """``a=1&b=2`` -> ``a=***&b=***``; a value without a name is redacted too."""

    def one(match: re.Match[str]) -> str:
        name, equals, value = match.group(1), match.group(2), match.group(3)
        if not equals:
            return MASK if name else ""
        return f"{name}={MASK}" if value or name else "="

    return _PAIR.sub(one, query)


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`); text without ``://`` is returned as is."""
    if "://" not in text:
        return text
    return _URL.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    url = match.group(0)
    kept = len(url.rstrip(_TRAILING))
    return redact_url(url[:kept]) + url[kept:]


def redact_fields(value: Any, *, content: frozenset[str] = CONTENT_FIELDS) -> Any:
    """A copy of ``value`` with :func:`redact_text` applied to every string in it, except under the keys of
    ``content`` (at any depth)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: (v if k in content else redact_fields(v, content=content)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_fields(v, content=content) for v in value]
    return value
