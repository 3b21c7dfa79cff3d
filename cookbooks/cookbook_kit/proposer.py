"""The shared half of the cookbooks' offline proposers: each supplies ``propose`` (a pure function from a reflection
request to its proposed texts) and :mod:`synth_opt.proposers.stdio_app_server` speaks the codex app-server protocol
around it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO

from synth_opt.gepa.rebase import repeats_edit
from synth_opt.proposers.stdio_app_server import proposals_reply, serve_app_server

__all__ = ["concurrent_texts", "distinct_proposals", "offline_proposer", "wanted_proposals"]


def wanted_proposals(request: Mapping[str, Any]) -> int:
    """How many texts the request asks for (``proposals``, at least 1)."""
    return max(1, int(request.get("proposals") or 1))


def concurrent_texts(request: Mapping[str, Any]) -> list[str]:
    """The versions of ``current_text`` that proposals in flight already make (``concurrent_edits``: present when
    the optimizer asks again because a first reply repeated one of them)."""
    edits = request.get("concurrent_edits") or []
    return [str(edit["text"]) for edit in edits if isinstance(edit, Mapping) and isinstance(edit.get("text"), str)]


def distinct_proposals(request: Mapping[str, Any], variants: Iterable[str], *, keep_unchanged: bool) -> list[str]:
    """Up to :func:`wanted_proposals` distinct texts from ``variants``, in their order, read only as far as needed
    (pass a generator: each variant is an edit of ``current_text``). ``keep_unchanged=False`` passes over a variant
    that equals ``current_text``, so the result may be empty. A variant whose edit one of the request's
    ``concurrent_edits`` already makes is passed over too, as a reader told what is already being changed would."""
    wanted = wanted_proposals(request)
    current = str(request["current_text"])
    others = [{"text": text} for text in concurrent_texts(request)]
    texts: list[str] = []
    for text in variants:
        if text in texts or (text == current and not keep_unchanged):
            continue
        if text != current and any(repeats_edit({"text": current}, {"text": text}, other) for other in others):
            continue
        texts.append(text)
        if len(texts) == wanted:
            break
    return texts


def offline_proposer(
    propose: Callable[[dict[str, Any]], list[str]], *, name: str
) -> tuple[Callable[[str], str], Callable[[TextIO, TextIO], int]]:
    """``(reply_for_turn, serve)`` of the offline proposer ``name`` over ``propose``: the turn's text to the reply's
    text, and a server answering app-server requests line by line until end of input."""
    reply_for_turn = proposals_reply(propose)

    def serve(stdin: TextIO, stdout: TextIO) -> int:
        return serve_app_server(reply_for_turn, stdin, stdout, name=name)

    return reply_for_turn, serve
