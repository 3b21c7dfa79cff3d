"""A deterministic stand-in for ``codex app-server``: ``python -m synth_opt.testing.fake_app_server``.

It speaks the app-server stdio protocol (one JSON object per line, JSON-RPC without the ``"jsonrpc"`` member),
so tests and offline demos drive the real :class:`~synth_opt.proposers.codex.CodexAppServerProposer` code path
with no network and no key. Its proposal is the current text from the request's machine-readable block with a
marker line appended (another one when the request is a proposal asked again). Modes reproduce the ways a real
server misbehaves:

- ``ok``: a normal turn (deltas, the completed agent message, token usage, ``turn/completed``);
- ``exit-after-initialize``: answers ``initialize``, prints a config error to stderr and exits with code 3;
- ``never-answer``: answers up to ``turn/start``, then stays silent (but keeps reading stdin);
- ``slow-turn-start``: like ``never-answer``, but logs ``turn/start`` 0.5 s before it replies to it (a client
  stopped in between has not yet read the turn's id);
- ``bad-reply``: the agent message holds no JSON proposal;
- ``server-request``: asks the client to approve a command first and completes the turn once answered;
- ``turn-failed``: the turn ends with ``status: "failed"`` and an error;
- ``trickle``: after ``turn/start``, sends a delta every 0.2 s and never completes;
- ``negative-usage``: a normal turn whose token usage reports a negative output count;
- ``die-mid-turn``: starts the turn, then kills itself (SIGKILL, as the kernel's OOM killer would);
- ``die-mid-turn-once``: like ``die-mid-turn`` for the first server of its ``CODEX_HOME``, ``ok`` after that.

Every message received is appended to ``$CODEX_HOME/fake_app_server.jsonl`` (after a first line with the pid),
so tests can check what the client sent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["MARKER", "MODES", "fake_proposals", "main"]

MARKER = "[fake app-server proposal]"
MODES = (
    "ok",
    "exit-after-initialize",
    "never-answer",
    "slow-turn-start",
    "bad-reply",
    "server-request",
    "turn-failed",
    "trickle",
    "negative-usage",
    "die-mid-turn",
    "die-mid-turn-once",
)
LOG_NAME = "fake_app_server.jsonl"
_BLOCK = re.compile(r"```json synth-opt-reflection\n(.*?)\n```", re.DOTALL)

JsonObject = dict[str, Any]


def fake_proposals(prompt: str, *, marker: str = MARKER) -> list[str]:
    """The deterministic proposals for a reflection prompt: the current text plus a marker line (followed by
    ``(asked again)`` when the request lists ``concurrent_edits``, as a model told what proposals in flight already
    change would answer something else)."""
    match = _BLOCK.search(prompt)
    block: JsonObject = json.loads(match.group(1)) if match else {}
    current = str(block.get("current_text", ""))
    if block.get("concurrent_edits"):
        marker = f"{marker} (asked again)"
    count = max(1, int(block.get("proposals", 1)))
    if count == 1:
        return [f"{current}\n{marker}"]
    return [f"{current}\n{marker} (variant {index})" for index in range(1, count + 1)]


class _FakeServer:
    def __init__(self, mode: str, marker: str) -> None:
        self.mode = mode
        self.marker = marker
        self.initialized = False
        self.thread_id = "thr_fake_1"
        self.turn_id = "turn_fake_1"
        self.prompt = ""
        self.silent = False
        self.pending_request_id: str | None = None
        self._write_lock = threading.Lock()
        home = os.environ.get("CODEX_HOME")
        self.log_path = Path(home) / LOG_NAME if home else None
        self._log({"event": "started", "pid": os.getpid(), "argv": sys.argv[1:], "mode": mode})

    def run(self) -> int:
        for line in sys.stdin:
            if not line.strip():
                continue
            message = json.loads(line)
            self._log(message)
            if not self.silent:
                self._handle(message)
        return 0

    def _handle(self, message: JsonObject) -> None:
        method = message.get("method")
        if method is None:
            if message.get("id") == self.pending_request_id:
                self.pending_request_id = None
                self._finish_turn()
            return
        if "jsonrpc" in message and "id" in message:
            self._error(message["id"], -32600, "the app-server protocol omits the jsonrpc member")
            return
        if "id" not in message:
            if method == "initialized":
                self.initialized = True
            return
        request_id = message["id"]
        params = message.get("params") or {}
        if method == "initialize":
            self._reply(request_id, {"userAgent": "fake_app_server/0.1.0"})
            if self.mode == "exit-after-initialize":
                sys.stderr.write("Error loading config.toml: unknown variant `chat` for key `wire_api`\n")
                sys.stderr.flush()
                raise SystemExit(3)
        elif not self.initialized:
            self._error(request_id, -32600, "Not initialized")
        elif method == "thread/start":
            self._reply(request_id, {"thread": {"id": self.thread_id, "preview": "", "modelProvider": "fake"}})
            self._notify("thread/started", {"thread": {"id": self.thread_id}})
        elif method == "turn/start":
            self._start_turn(request_id, params)
        elif method == "turn/interrupt":
            self._reply(request_id, {})
            self._complete("interrupted", None)
        else:
            self._error(request_id, -32601, f"method not found: {method}")

    def _start_turn(self, request_id: Any, params: JsonObject) -> None:
        if params.get("threadId") != self.thread_id:
            self._error(request_id, -32602, f"unknown thread {params.get('threadId')!r}")
            return
        inputs = params.get("input") or []
        self.prompt = "\n".join(str(item.get("text", "")) for item in inputs if isinstance(item, dict))
        turn: JsonObject = {"id": self.turn_id, "status": "inProgress", "items": [], "error": None}
        if self.mode == "slow-turn-start":
            time.sleep(0.5)
        self._reply(request_id, {"turn": turn})
        if self.mode in ("never-answer", "slow-turn-start"):
            self.silent = True
            return
        self._notify("turn/started", {"threadId": self.thread_id, "turn": turn})
        if self.mode == "die-mid-turn" or (self.mode == "die-mid-turn-once" and self._first_death()):
            sys.stderr.write("fake app-server: killed mid-turn\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        if self.mode == "trickle":
            self.silent = True
            threading.Thread(target=self._trickle, daemon=True).start()
        elif self.mode == "server-request":
            self.pending_request_id = "srv_approval_1"
            self._write(
                {
                    "id": self.pending_request_id,
                    "method": "item/commandExecution/requestApproval",
                    "params": {
                        "threadId": self.thread_id,
                        "turnId": self.turn_id,
                        "itemId": "cmd_1",
                        "command": "cat /etc/passwd",
                        "reason": "the fake wants to read a file",
                    },
                }
            )
        else:
            self._finish_turn()

    def _first_death(self) -> bool:
        """Whether no earlier server of this ``CODEX_HOME`` died mid-turn (``die-mid-turn-once``)."""
        if self.log_path is None:
            return False
        mark = self.log_path.with_name("died_mid_turn")
        if mark.exists():
            return False
        mark.touch()
        return True

    def _finish_turn(self) -> None:
        if self.mode == "turn-failed":
            self._complete("failed", {"message": "fake upstream error: model quota exceeded"})
            return
        if self.mode == "bad-reply":
            answer = "I read the examples; the current prompt already looks fine to me."
        else:
            answer = json.dumps({"proposals": fake_proposals(self.prompt, marker=self.marker)})
        item_id = "msg_fake_1"
        scope = {"threadId": self.thread_id, "turnId": self.turn_id}
        self._notify("item/started", {**scope, "item": {"type": "agentMessage", "id": item_id, "text": ""}})
        half = len(answer) // 2
        for delta in (answer[:half], answer[half:]):
            self._notify("item/agentMessage/delta", {**scope, "itemId": item_id, "delta": delta})
        self._notify("item/completed", {**scope, "item": {"type": "agentMessage", "id": item_id, "text": answer}})
        prompt_tokens, completion_tokens = len(self.prompt.split()), len(answer.split())
        if self.mode == "negative-usage":
            completion_tokens = -1650000
        counts = {
            "inputTokens": prompt_tokens,
            "cachedInputTokens": 0,
            "outputTokens": completion_tokens,
            "reasoningOutputTokens": 0,
            "totalTokens": prompt_tokens + completion_tokens,
        }
        usage = {"total": counts, "last": counts, "modelContextWindow": None}
        self._notify("thread/tokenUsage/updated", {**scope, "tokenUsage": usage})
        self._complete("completed", None)

    def _complete(self, status: str, error: JsonObject | None) -> None:
        turn: JsonObject = {"id": self.turn_id, "status": status, "items": [], "error": error}
        if error is not None:
            self._notify("error", {"threadId": self.thread_id, "turnId": self.turn_id, "error": error})
        self._notify("turn/completed", {"threadId": self.thread_id, "turn": turn})

    def _trickle(self) -> None:
        scope = {"threadId": self.thread_id, "turnId": self.turn_id, "itemId": "msg_fake_1"}
        while True:
            time.sleep(0.2)
            try:
                self._notify("item/agentMessage/delta", {**scope, "delta": "."})
            except (BrokenPipeError, ValueError):
                return

    def _reply(self, request_id: Any, result: JsonObject) -> None:
        self._write({"id": request_id, "result": result})

    def _error(self, request_id: Any, code: int, message: str) -> None:
        self._write({"id": request_id, "error": {"code": code, "message": message}})

    def _notify(self, method: str, params: JsonObject) -> None:
        self._write({"method": method, "params": params})

    def _write(self, message: JsonObject) -> None:
        with self._write_lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def _log(self, entry: JsonObject) -> None:
        if self.log_path is not None:
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(entry) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A deterministic fake of `codex app-server` (stdio).")
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--marker", default=MARKER, help="the line appended to the current text")
    parser.add_argument("-c", "--config", action="append", default=[], help="accepted and ignored, like codex -c")
    args = parser.parse_args(argv)
    return _FakeServer(args.mode, args.marker).run()


if __name__ == "__main__":
    raise SystemExit(main())
