"""A deterministic offline proposer for the Banking77 keyword policy, speaking the codex app-server protocol.

It stands in for ``codex app-server`` so the demo and the tests drive the optimizer's real proposer client with no
network and no key. Protocol (newline-delimited JSON, JSON-RPC without the ``jsonrpc`` member): it answers
``initialize`` and ``thread/start``, accepts the ``initialized`` notification, and on ``turn/start`` answers with
the turn, then sends ``turn/started``, ``item/completed`` (one ``agentMessage`` holding the reply),
``thread/tokenUsage/updated`` and ``turn/completed``. It exits on end of input.

The reply is a pure function of the turn's text (no data files, no memory across calls; a restarted proposer
answers the same). It reads the request in the fenced ``json synth-opt-reflection`` block and edits the keyword
lines of ``current_text`` from the minibatch records, the way a careful person reading the failures would:

for each failed record (expected label ``E``, query ``q``), in record order,
  1. add to ``E``'s line the ``k`` most telling words of ``q`` not already there. A word tells more when fewer
     other minibatch queries (of other labels) contain it, then when fewer label lines already list it, then when
     it is longer; one-letter words are skipped;
  2. if the policy's winning line ``P`` had no more matched keywords than ``E`` needs to beat, take from ``P``'s
     line the matched keyword that also appears in the most minibatch queries of labels other than ``P`` (a word
     that misleads more than it helps), unless it is a word of ``P``'s own name.

With ``proposals = n`` it returns ``n`` distinct texts: variant ``i`` adds ``k + i`` words per failure. Records
the policy got right contribute nothing, so a minibatch without failures returns the current text unchanged.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))

from policy import classify, label_words, stem  # noqa: E402

__all__ = ["ADD_WORDS", "extract_request", "propose", "reply_for_turn", "serve"]

ADD_WORDS = 2
REMOVE = True
_BLOCK = re.compile(r"```json synth-opt-reflection\n(.*?)\n```", re.DOTALL)
_FEEDBACK = re.compile(r"expected (?P<expected>.+?), predicted (?P<predicted>.+?)\s*$")
_WORD = re.compile(r"[a-z0-9]+")


def extract_request(text: str) -> dict[str, Any]:
    match = _BLOCK.search(text)
    if match is None:
        raise ValueError("the turn text holds no ```json synth-opt-reflection block")
    data = json.loads(match.group(1))
    if not isinstance(data, dict) or not isinstance(data.get("current_text"), str):
        raise ValueError("the reflection request has no current_text")
    return data


class _Lines:
    """The prompt's lines, edited in place: label lines keep their order and their keywords' spelling."""

    def __init__(self, text: str) -> None:
        self.lines: list[str | tuple[str, list[str]]] = []
        self.position: dict[str, int] = {}
        for line in text.splitlines():
            name, colon, rest = line.partition(":")
            label = name.strip()
            if colon and label and label not in self.position:
                keywords = [word.strip() for word in rest.split(",") if word.strip()]
                self.position[label] = len(self.lines)
                self.lines.append((label, keywords))
            else:
                self.lines.append(line)

    def keywords(self, label: str) -> list[str]:
        entry = self.lines[self.position[label]]
        assert isinstance(entry, tuple)
        return entry[1]

    def stems(self, label: str) -> set[str]:
        return {" ".join(stem(word) for word in _WORD.findall(keyword.lower())) for keyword in self.keywords(label)}

    def lines_listing(self, word_stem: str) -> int:
        return sum(1 for label in self.position if word_stem in self.stems(label))

    def render(self) -> str:
        out = []
        for entry in self.lines:
            out.append(entry if isinstance(entry, str) else f"{entry[0]}: {', '.join(entry[1])}")
        return "\n".join(out)


def _record_fields(record: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """(query, expected, predicted) from the task row, the policy output and the feedback, whichever has them."""
    task = record.get("task") if isinstance(record.get("task"), Mapping) else {}
    output = record.get("output") if isinstance(record.get("output"), Mapping) else {}
    query = task.get("text") or output.get("query") or ""
    expected = task.get("label") or output.get("expected")
    predicted = output.get("predicted")
    feedback = record.get("feedback")
    if isinstance(feedback, str) and (expected is None or predicted is None):
        match = _FEEDBACK.search(feedback)
        if match:
            expected = expected or match.group("expected")
            predicted = predicted or match.group("predicted")
    return str(query), (str(expected) if expected else None), (str(predicted) if predicted else None)


def _edit(request: Mapping[str, Any], add_words: int, remove: bool) -> str:
    text = str(request["current_text"])
    lines = _Lines(text)
    records = [record for record in request.get("records") or [] if isinstance(record, Mapping)]
    fields = [_record_fields(record) for record in records]
    query_stems = [{stem(word) for word in _WORD.findall(query.lower())} for query, _, _ in fields]
    for index, record in enumerate(records):
        query, expected, predicted = fields[index]
        if float(record.get("reward") or 0.0) >= 1.0 or not expected or expected not in lines.position:
            continue
        prediction = classify(text, query)
        predicted = prediction.label or predicted

        def others_with(word_stem: str, label: str | None) -> int:
            return sum(
                1
                for other, (_, other_label, _) in enumerate(fields)
                if other != index and other_label != label and word_stem in query_stems[other]
            )

        present = lines.stems(expected)
        options: list[tuple[int, int, int, int, str]] = []
        seen: set[str] = set()
        for order, word in enumerate(_WORD.findall(query.lower())):
            word_stem = stem(word)
            if len(word) < 2 or word_stem in present or word_stem in seen:
                continue
            seen.add(word_stem)
            options.append((others_with(word_stem, expected), lines.lines_listing(word_stem), -len(word), order, word))
        for option in sorted(options)[:add_words]:
            lines.keywords(expected).append(option[-1])
        if remove and predicted and predicted != expected and predicted in lines.position:
            own = set(label_words(predicted))
            own_stems = {stem(word) for word in own}
            hits = [
                keyword
                for keyword in prediction.matched.get(predicted, [])
                if keyword not in own_stems and keyword.split()[0] not in own_stems
            ]
            if hits:
                worst = max(hits, key=lambda keyword: (others_with(keyword, predicted), keyword))
                kept = [
                    word
                    for word in lines.keywords(predicted)
                    if " ".join(stem(part) for part in _WORD.findall(word.lower())) != worst
                ]
                lines.keywords(predicted)[:] = kept
    return lines.render()


def propose(request: Mapping[str, Any]) -> list[str]:
    """The proposals for one reflection request: ``request["proposals"]`` distinct texts where edits allow."""
    wanted = max(1, int(request.get("proposals") or 1))
    texts: list[str] = []
    for extra in range(wanted + 8):
        text = _edit(request, ADD_WORDS + extra, REMOVE)
        if text not in texts:
            texts.append(text)
        if len(texts) == wanted:
            break
    return texts


def reply_for_turn(turn_text: str) -> str:
    return json.dumps({"proposals": propose(extract_request(turn_text))}, ensure_ascii=False)


def _turn_text(params: Mapping[str, Any]) -> str:
    parts = []
    for item in params.get("input") or []:
        if isinstance(item, Mapping) and item.get("type") == "text":
            parts.append(str(item.get("text", "")))
    return "\n".join(parts)


def serve(stdin: TextIO, stdout: TextIO) -> int:
    """Answer app-server requests line by line until end of input."""

    def send(message: dict[str, Any]) -> None:
        stdout.write(json.dumps(message, ensure_ascii=False) + "\n")
        stdout.flush()

    thread_id = "thr-1"
    for raw in stdin:
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
            send({"id": request_id, "result": {"serverInfo": {"name": "banking77-offline-proposer", "version": "1"}}})
        elif method == "thread/start":
            send({"id": request_id, "result": {"thread": {"id": thread_id}}})
        elif method == "turn/start":
            _run_turn(send, request_id, thread_id, _turn_text(params))
        elif method == "turn/interrupt":
            send({"id": request_id, "result": {}})
        else:
            send({"id": request_id, "error": {"code": -32601, "message": f"method not found: {method}"}})
    return 0


def _run_turn(send: Any, request_id: Any, thread_id: str, turn_text: str) -> None:
    turn = {"id": "turn-1", "status": "inProgress"}
    send({"id": request_id, "result": {"turn": turn}})
    send({"method": "turn/started", "params": {"threadId": thread_id, "turn": turn}})
    try:
        reply = reply_for_turn(turn_text)
    except (ValueError, KeyError, TypeError) as exc:
        failed = {"id": "turn-1", "status": "failed", "items": [], "error": {"message": f"bad request: {exc}"}}
        send({"method": "turn/completed", "params": {"threadId": thread_id, "turn": failed}})
        return
    item = {"type": "agentMessage", "id": "msg-1", "text": reply}
    send({"method": "item/completed", "params": {"threadId": thread_id, "turnId": "turn-1", "item": item}})
    input_tokens, output_tokens = len(turn_text.split()), len(reply.split())
    usage = {"inputTokens": input_tokens, "cachedInputTokens": 0, "outputTokens": output_tokens}
    usage["totalTokens"] = input_tokens + output_tokens
    send(
        {
            "method": "thread/tokenUsage/updated",
            "params": {"threadId": thread_id, "turnId": "turn-1", "tokenUsage": {"total": usage, "last": usage}},
        }
    )
    completed = {"id": "turn-1", "status": "completed", "items": []}
    send({"method": "turn/completed", "params": {"threadId": thread_id, "turn": completed}})


if __name__ == "__main__":
    raise SystemExit(serve(sys.stdin, sys.stdout))
