"""serve_app_server: the offline proposers' codex app-server, driven through in-memory stdin and stdout."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from synth_opt.proposers.codex import CodexAppServerProposer
from synth_opt.proposers.reflection import ReflectionRequest, ReflectiveRecord, parse_reply, render_prompt
from synth_opt.proposers.stdio_app_server import (
    extract_reflection_request,
    proposals_reply,
    serve_app_server,
    turn_text,
)

_reply = proposals_reply(lambda request: [request["current_text"] + " (edited)"])


def _serve(*messages: Any, reply: Any = _reply, name: str = "test-proposer") -> list[dict[str, Any]]:
    stdin = io.StringIO("".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages))
    stdout = io.StringIO()
    assert serve_app_server(reply, stdin, stdout, name=name) == 0
    return [json.loads(line) for line in stdout.getvalue().splitlines()]


def _prompt(text: str = "Answer briefly.") -> str:
    request = ReflectionRequest(
        candidate_id="cand-0",
        candidate={"system_prompt": text},
        target_module="system_prompt",
        records=(ReflectiveRecord(task_id="t1", task={"q": "2+2"}, output="5", reward=0.0, feedback="wrong"),),
    )
    return render_prompt(request)


def _turn(request_id: int, *texts: str) -> dict[str, Any]:
    items: list[dict[str, Any]] = [{"type": "text", "text": text} for text in texts]
    return {"id": request_id, "method": "turn/start", "params": {"threadId": "thr-1", "input": items}}


def test_a_session_answers_the_handshake_and_one_turn_with_word_count_usage() -> None:
    prompt = _prompt()
    out = _serve(
        {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "t"}}},
        {"method": "initialized"},
        {"id": 2, "method": "thread/start", "params": {}},
        _turn(3, prompt),
    )
    reply = json.dumps({"proposals": ["Answer briefly. (edited)"]})
    turn = {"id": "turn-1", "status": "inProgress"}
    usage = {
        "inputTokens": len(prompt.split()),
        "cachedInputTokens": 0,
        "outputTokens": len(reply.split()),
        "totalTokens": len(prompt.split()) + len(reply.split()),
    }
    assert out == [
        {"id": 1, "result": {"serverInfo": {"name": "test-proposer", "version": "1"}}},
        {"id": 2, "result": {"thread": {"id": "thr-1"}}},
        {"id": 3, "result": {"turn": turn}},
        {"method": "turn/started", "params": {"threadId": "thr-1", "turn": turn}},
        {
            "method": "item/completed",
            "params": {
                "threadId": "thr-1",
                "turnId": "turn-1",
                "item": {"type": "agentMessage", "id": "msg-1", "text": reply},
            },
        },
        {
            "method": "thread/tokenUsage/updated",
            "params": {"threadId": "thr-1", "turnId": "turn-1", "tokenUsage": {"total": usage, "last": usage}},
        },
        {
            "method": "turn/completed",
            "params": {"threadId": "thr-1", "turn": {**turn, "status": "completed", "items": []}},
        },
    ]
    assert parse_reply(out[4]["params"]["item"]["text"]) == ["Answer briefly. (edited)"]


def test_a_bad_request_fails_the_turn_and_the_server_keeps_serving() -> None:
    out = _serve(_turn(1, "no block here"), _turn(2, "```json synth-opt-reflection\n{bad\n```"), _turn(3, _prompt()))
    failed = [message for message in out if message.get("method") == "turn/completed"]
    assert [message["params"]["turn"]["status"] for message in failed] == ["failed", "failed", "completed"]
    assert failed[0]["params"]["turn"]["error"] == {
        "message": "bad request: the turn text holds no ```json synth-opt-reflection block"
    }
    assert failed[1]["params"]["turn"]["error"]["message"].startswith("bad request: Expecting property name")
    assert not any(message.get("method") == "item/completed" for message in out[:6])


@pytest.mark.parametrize("error", [ValueError("v"), KeyError("k"), TypeError("t")])
def test_a_reply_function_raising_a_request_error_fails_the_turn(error: Exception) -> None:
    def reply(text: str) -> str:
        raise error

    (_, _, completed) = _serve(_turn(1, "x"), reply=reply)
    assert completed["params"]["turn"] == {
        "id": "turn-1",
        "status": "failed",
        "items": [],
        "error": {"message": f"bad request: {error}"},
    }


def test_other_messages_get_protocol_answers_and_notifications_are_ignored() -> None:
    out = _serve(
        "not json",
        "",
        "   ",
        {"method": "initialized"},
        {"id": 8, "result": {}},
        {"id": 9, "method": "turn/interrupt", "params": {}},
        {"id": 10, "method": "bogus"},
    )
    assert out == [
        {"id": None, "error": {"code": -32700, "message": "parse error"}},
        {"id": 8, "error": {"code": -32601, "message": "method not found: None"}},
        {"id": 9, "result": {}},
        {"id": 10, "error": {"code": -32601, "message": "method not found: bogus"}},
    ]


def test_non_ascii_text_is_written_as_is() -> None:
    out = _serve(_turn(1, _prompt("Réponds en français ✓")), reply=_reply)
    assert out[2]["params"]["item"]["text"] == '{"proposals": ["Réponds en français ✓ (edited)"]}'


def test_turn_text_joins_the_text_items_only() -> None:
    params = {"input": [{"type": "text", "text": "a"}, {"type": "image", "url": "x"}, "junk", {"type": "text"}]}
    assert turn_text(params) == "a\n"
    assert turn_text({}) == "" and turn_text({"input": None}) == ""


def test_proposals_reply_answers_what_parse_reply_reads() -> None:
    reply = proposals_reply(lambda request: [request["current_text"] + " é", "second"])
    assert parse_reply(reply(_prompt("hi")), wanted=2) == ["hi é", "second"]
    assert "é" in reply(_prompt("hi"))  # written as is, not escaped
    with pytest.raises(ValueError, match="no ```json"):
        reply("no block here")


def test_extract_reflection_request_needs_a_block_with_current_text() -> None:
    assert extract_reflection_request(_prompt("hi"))["current_text"] == "hi"
    with pytest.raises(ValueError, match="no current_text"):
        extract_reflection_request('```json synth-opt-reflection\n{"records": []}\n```')
    with pytest.raises(ValueError, match="no current_text"):
        extract_reflection_request("```json synth-opt-reflection\n[1]\n```")


SCRIPT = """
from synth_opt.proposers.stdio_app_server import proposals_reply, serve_app_server

raise SystemExit(serve_app_server(proposals_reply(lambda request: [request["current_text"] + " (edited)"])))
"""


@pytest.mark.anyio
async def test_the_real_proposer_client_drives_it_as_a_subprocess(tmp_path: Path) -> None:
    proposer = CodexAppServerProposer(
        [sys.executable, "-c", SCRIPT],
        codex_home=tmp_path / "codex_home",
        workdir=tmp_path / "work",
        model=None,
        config_overrides={},
        timeout_seconds=30,
        message_stall_timeout_seconds=30,
    )
    try:
        result = await proposer.propose(
            ReflectionRequest(
                candidate_id="cand-0",
                candidate={"system_prompt": "Answer briefly."},
                target_module="system_prompt",
                records=(ReflectiveRecord(task_id="t1", task={"q": "2+2"}, output="5", reward=0.0, feedback="x"),),
            )
        )
    finally:
        await proposer.aclose()
    assert result.texts == ("Answer briefly. (edited)",)
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0


def test_it_serves_the_process_stdio_by_default() -> None:
    lines = json.dumps({"id": 1, "method": "initialize"}) + "\n"
    done = subprocess.run([sys.executable, "-c", SCRIPT], input=lines, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"id": 1, "result": {"serverInfo": {"name": "offline-proposer", "version": "1"}}}
