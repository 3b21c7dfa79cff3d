"""A minimal, deterministic ``codex app-server`` over stdio, for offline proposers.

An offline proposer stands in for ``codex app-server`` so a demo or a test drives the optimizer's real
:class:`~synth_opt.proposers.codex.CodexAppServerProposer` with no network and no key: it only supplies a pure
function from a turn's text to the reply text, and :func:`serve_app_server` speaks the protocol around it.

Protocol (newline-delimited JSON, JSON-RPC without the ``jsonrpc`` member): it answers ``initialize`` and
``thread/start``, accepts the ``initialized`` notification (and ignores every message without an ``id``), and on
``turn/start`` answers with the turn, then sends ``turn/started``, ``item/completed`` (one ``agentMessage`` holding
the reply), ``thread/tokenUsage/updated`` (tokens counted as whitespace-separated words of the turn text and of the
reply) and ``turn/completed``. A reply function that raises :class:`ValueError`, :class:`KeyError` or
:class:`TypeError` fails the turn (``status: "failed"``, ``bad request: ...``) and the server keeps serving. It
answers ``turn/interrupt`` with an empty result, an unknown method with error -32601, a line that is not JSON with
error -32700, and exits with 0 at end of input.

For a server that misbehaves on purpose (exits, stalls, fails turns), see :mod:`synth_opt.testing.fake_app_server`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from synth_opt.proposers.reflection import REFLECTION_BLOCK_TAG

__all__ = ["extract_reflection_request", "proposals_reply", "serve_app_server", "turn_text"]

THREAD_ID = "thr-1"
TURN_ID = "turn-1"
MESSAGE_ID = "msg-1"
_BLOCK = re.compile(rf"```json {re.escape(REFLECTION_BLOCK_TAG)}\n(.*?)\n```", re.DOTALL)

Send = Callable[[dict[str, Any]], None]


def extract_reflection_request(text: str) -> dict[str, Any]:
    """The reflection request in a turn's fenced ``json synth-opt-reflection`` block.

    Raises :class:`ValueError` when there is no block, it is not JSON, or it has no ``current_text`` string.
    """
    match = _BLOCK.search(text)
    if match is None:
        raise ValueError(f"the turn text holds no ```json {REFLECTION_BLOCK_TAG} block")
    data = json.loads(match.group(1))
    if not isinstance(data, dict) or not isinstance(data.get("current_text"), str):
        raise ValueError("the reflection request has no current_text")
    return data


def proposals_reply(propose: Callable[[dict[str, Any]], list[str]]) -> Callable[[str], str]:
    """The reply function of an offline proposer that maps a reflection request to its proposed texts: the
    turn's request in, ``{"proposals": [...]}`` out (the reply :func:`~synth_opt.proposers.reflection.parse_reply`
    reads)."""

    def reply_for_turn(text: str) -> str:
        return json.dumps({"proposals": propose(extract_reflection_request(text))}, ensure_ascii=False)

    return reply_for_turn


def turn_text(params: Mapping[str, Any]) -> str:
    """The text of a ``turn/start`` request: its ``text`` input items, joined by newlines."""
    parts = []
    for item in params.get("input") or []:
        if isinstance(item, Mapping) and item.get("type") == "text":
            parts.append(str(item.get("text", "")))
    return "\n".join(parts)


def serve_app_server(
    reply_for_turn: Callable[[str], str],
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    *,
    name: str = "offline-proposer",
) -> int:
    """Answer app-server requests line by line until end of input; ``name`` is the ``serverInfo`` name.

    ``stdin`` and ``stdout`` default to the process's. Returns the exit code (0).
    """
    source = sys.stdin if stdin is None else stdin
    sink = sys.stdout if stdout is None else stdout

    def send(message: dict[str, Any]) -> None:
        sink.write(json.dumps(message, ensure_ascii=False) + "\n")
        sink.flush()

    for raw in source:
        if not raw.strip():
            continue
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            send({"id": None, "error": {"code": -32700, "message": "parse error"}})
            continue
        method = message.get("method")
        if "id" not in message:
            continue  # notifications (``initialized``) and replies to requests we never make
        request_id = message["id"]
        params = message.get("params") or {}
        if method == "initialize":
            send({"id": request_id, "result": {"serverInfo": {"name": name, "version": "1"}}})
        elif method == "thread/start":
            send({"id": request_id, "result": {"thread": {"id": THREAD_ID}}})
        elif method == "turn/start":
            _run_turn(send, request_id, turn_text(params), reply_for_turn)
        elif method == "turn/interrupt":
            send({"id": request_id, "result": {}})
        else:
            send({"id": request_id, "error": {"code": -32601, "message": f"method not found: {method}"}})
    return 0


def _run_turn(send: Send, request_id: Any, text: str, reply_for_turn: Callable[[str], str]) -> None:
    turn = {"id": TURN_ID, "status": "inProgress"}
    send({"id": request_id, "result": {"turn": turn}})
    send({"method": "turn/started", "params": {"threadId": THREAD_ID, "turn": turn}})
    try:
        reply = reply_for_turn(text)
    except (ValueError, KeyError, TypeError) as exc:
        failed = {"id": TURN_ID, "status": "failed", "items": [], "error": {"message": f"bad request: {exc}"}}
        send({"method": "turn/completed", "params": {"threadId": THREAD_ID, "turn": failed}})
        return
    item = {"type": "agentMessage", "id": MESSAGE_ID, "text": reply}
    send({"method": "item/completed", "params": {"threadId": THREAD_ID, "turnId": TURN_ID, "item": item}})
    input_tokens, output_tokens = len(text.split()), len(reply.split())
    usage = {"inputTokens": input_tokens, "cachedInputTokens": 0, "outputTokens": output_tokens}
    usage["totalTokens"] = input_tokens + output_tokens
    send(
        {
            "method": "thread/tokenUsage/updated",
            "params": {"threadId": THREAD_ID, "turnId": TURN_ID, "tokenUsage": {"total": usage, "last": usage}},
        }
    )
    completed = {"id": TURN_ID, "status": "completed", "items": []}
    send({"method": "turn/completed", "params": {"threadId": THREAD_ID, "turn": completed}})
