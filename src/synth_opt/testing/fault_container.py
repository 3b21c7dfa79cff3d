"""A task container that injects transport and reply faults by count, as a real process on loopback.

Run it as ``python -m synth_opt.testing.fault_container --port N [--fault KIND --after N --count K]``; as a
``[container] command`` give :func:`command` (its ``{port}`` is filled in by the launcher). It serves the
container contract (SPEC §4) well enough for a whole optimizer run: ``GET /health``, ``/metadata`` (alias
``/info``), ``/program``, ``/task_info``, ``/taskset``, ``POST /taskset/tasks`` and ``POST /rollout``, with a
deterministic task: the reward is 1.0 when the row's ``answer`` word (``w3`` for rows ``t3`` and ``h3``) appears
as a word in the candidate's ``instruction``, else 0.0. ``--train`` and ``--test`` set the row counts (12 and 4).
``GET /fault/stats`` reports what was injected so far.

Faults are injected by count, never by chance, and only into ``POST /rollout``: of the rollout requests (only
those of row ``--fault-row`` when given), the first ``--after`` N are answered normally, the next ``--count`` K
get the fault (``--count 0``, the default, means every one after the first N) and the rest are answered normally
again. Each request is counted when it arrives, so overlapping requests still see exactly N and K; a retry is a new
request. Rollouts of other rows than ``--fault-row`` are always answered normally and are not counted. What the
client sees on the wire for each ``--fault`` kind:

- ``http500``: ``HTTP 500`` with a JSON error body;
- ``reset``: the request is read, then the connection is closed with a TCP reset (``SO_LINGER`` 0);
- ``hang``: the request is read and never answered; the connection stays open until the client closes it;
- ``slow_body``: the status line and headers (with the ``Content-Length`` of a correct reply) are sent at once,
  then the body one byte every ``--trickle-seconds`` (1 s);
- ``die``: the process SIGKILLs itself when the request arrives (``--count`` does not apply);
- ``malformed``: ``HTTP 200`` whose body is not JSON;
- ``wrong_id``: a correct ``HTTP 200`` reply carrying another ``rollout_id``;
- ``huge_body``: a correct ``HTTP 200`` reply padded (with a ``padding`` field) to ``--huge-bytes`` bytes (9 MiB,
  over the default ``container.max_reply_bytes``), sent with its ``Content-Length``, or chunked with
  ``--huge-chunked`` (no length declared: the client must stop reading at its limit);
- ``deep_nesting``: a correct ``HTTP 200`` reply whose ``trace`` is a list nested ``--depth`` deep (100,000);
- ``big_reward``: a correct ``HTTP 200`` reply whose ``reward_info.outcome_reward`` is a 400-digit integer, too
  large for a float;
- ``lone_surrogates``: a correct ``HTTP 200`` reply whose feedback, trace and a metric's name hold half an emoji,
  a lone UTF-16 surrogate escaped in the JSON (``"\\ud83d"``), as a JavaScript container's ``JSON.stringify`` of a
  string cut in the middle of a pair sends it;
- ``refused``: once N rollouts have been answered (at once with ``--after 0``), the server closes its listening
  socket and its idle keep-alive connections, so every new connection, to any route, is refused by the kernel
  (``ECONNREFUSED``) until it listens again on the same port after ``--refuse-seconds`` (0, the default: never).
  A refused connection never reaches the process, so it cannot be counted: this window is measured in seconds
  and ``--count`` and ``--fault-row`` are rejected for it.

``--policy-model NAME`` reports ``NAME`` as ``metadata.policy_model`` in ``GET /metadata`` (the identity of the
model its policy uses, which the optimizer puts in the cache namespace). ``--delay-ms`` delays every rollout reply
(faulty or not). The process prints one line to stdout,
``listening on http://127.0.0.1:PORT``, once it accepts connections (``--port 0`` picks a free port), and logs
every injected fault to stderr. HTTP/1.1 with keep-alive and ``Content-Length`` bodies is all it speaks, on plain
asyncio streams: a framework server could not send resets or trickle a body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from synth_opt.container.wire import GEPA_CONTRACT_VERSION

__all__ = ["FAULT_KINDS", "FaultPlan", "command", "main"]

FAULT_KINDS: Final = (
    "http500",
    "refused",
    "reset",
    "hang",
    "slow_body",
    "die",
    "malformed",
    "wrong_id",
    "huge_body",
    "deep_nesting",
    "big_reward",
    "lone_surrogates",
)
SEED_INSTRUCTION: Final = "Say hello."
MALFORMED_BODY: Final = b"<html><body>this is not JSON</body></html>"
HUGE_BYTES: Final = 9 * 1024 * 1024
DEEP_NESTING: Final = 100_000
BIG_REWARD: Final = 10**399  # 400 digits: float() of it raises OverflowError

_HOST: Final = "127.0.0.1"
_MAX_HEAD_BYTES: Final = 64 * 1024
_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    500: "Internal Server Error",
    501: "Not Implemented",
}

# stdlib logging, not structlog (synth_opt.logs), on purpose: this is a standalone test server process, not part of
# a run; its stderr lines ("fault_container: ...", configured in main) are read by tests and people as they are,
# there is no run or request id to bind, and ``logging.shutdown()`` flushes them before a ``die`` fault SIGKILLs it.
log = logging.getLogger("synth_opt.testing.fault_container")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Which fault, when: the first ``after`` matching rollout requests pass, the next ``count`` (0: all) fail."""

    kind: str | None = None
    after: int = 0
    count: int = 0
    row: str | None = None
    refuse_seconds: float = 0.0
    trickle_seconds: float = 1.0
    huge_bytes: int = HUGE_BYTES
    huge_chunked: bool = False
    depth: int = DEEP_NESTING

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; choose one of {', '.join(FAULT_KINDS)}")
        if self.after < 0 or self.count < 0 or self.refuse_seconds < 0 or self.trickle_seconds < 0:
            raise ValueError("--after, --count, --refuse-seconds and --trickle-seconds must not be negative")
        if self.huge_bytes < 0 or self.depth < 1:
            raise ValueError("--huge-bytes must not be negative and --depth must be at least 1")
        if self.kind == "refused" and (self.count or self.row is not None):
            raise ValueError(
                "a refused connection never reaches the server, so it cannot be counted: give --refuse-seconds "
                "instead of --count, and no --fault-row (the whole port is closed)"
            )


def command(
    fault: str | None = None,
    *,
    after: int = 0,
    count: int = 0,
    row: str | None = None,
    refuse_seconds: float = 0.0,
    huge_bytes: int | None = None,
    huge_chunked: bool = False,
    depth: int | None = None,
    delay_ms: int = 0,
    train: int = 12,
    test: int = 4,
    policy_model: str | None = None,
    port: str = "{port}",
) -> list[str]:
    """The argv that starts a fault container, for ``[container] command`` (``{port}`` is the launcher's)."""
    argv = [sys.executable, "-m", "synth_opt.testing.fault_container", "--port", port]
    argv += ["--train", str(train), "--test", str(test), "--delay-ms", str(delay_ms)]
    if policy_model is not None:
        argv += ["--policy-model", policy_model]
    if fault is not None:
        argv += ["--fault", fault, "--after", str(after)]
        if count:
            argv += ["--count", str(count)]
        if row is not None:
            argv += ["--fault-row", row]
        if refuse_seconds:
            argv += ["--refuse-seconds", f"{refuse_seconds:g}"]
        if huge_bytes is not None:
            argv += ["--huge-bytes", str(huge_bytes)]
        if huge_chunked:
            argv += ["--huge-chunked"]
        if depth is not None:
            argv += ["--depth", str(depth)]
    return argv


class _BadRequest(Exception):
    """The bytes on a connection are not an HTTP/1.1 request this server can read."""


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


@dataclass(slots=True, eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    busy: bool = False
    closing: bool = False


class FaultContainer:
    """The server: rows, fault bookkeeping and the HTTP loop of each connection (one task per connection)."""

    def __init__(
        self, plan: FaultPlan, *, train: int = 12, test: int = 4, delay_ms: int = 0, policy_model: str | None = None
    ) -> None:
        self.plan = plan
        self.policy_model = policy_model
        self.delay_seconds = delay_ms / 1000.0
        self.rows: dict[str, list[dict[str, Any]]] = {
            "train": [{"task_id": f"t{i}", "question": f"say word {i}", "answer": f"w{i}"} for i in range(train)],
            "test": [{"task_id": f"h{i}", "question": f"say word {i}", "answer": f"w{i}"} for i in range(test)],
        }
        self._by_id = {row["task_id"]: row for split_rows in self.rows.values() for row in split_rows}
        self.rollout_requests = 0  # every POST /rollout that was read
        self.matching_requests = 0  # those the plan applies to (its row, or all)
        self.normal_replies = 0  # matching requests answered normally
        self.faults = 0
        self.refusing = False
        self._server: asyncio.Server | None = None
        self._port = 0
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------------------------------------- serving

    async def listen(self, port: int) -> int:
        self._server = await asyncio.start_server(
            self._serve_connection, _HOST, port, limit=_MAX_HEAD_BYTES, reuse_address=True
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def serve_forever(self) -> None:
        if self.plan.kind == "refused" and self.plan.after == 0:
            self._start_refusal()
        await asyncio.Event().wait()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer)
        self._connections.add(connection)
        try:
            while not connection.closing:
                try:
                    request = await _read_request(reader)
                except _BadRequest as exc:
                    await _write_json(writer, 400, {"detail": str(exc)}, keep_alive=False)
                    return
                if request is None:
                    return
                connection.busy = True
                keep = await self._answer(request, reader, writer, connection)
                connection.busy = False
                if not keep or not request.keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.discard(connection)
            if not writer.is_closing():
                writer.close()

    async def _answer(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: _Connection
    ) -> bool:
        """Answer one request; False when the connection must not be used again."""
        path = request.path.split("?", 1)[0].rstrip("/") or "/"
        if request.method == "POST" and path in ("/rollout", "/rollouts"):
            return await self._rollout(request, reader, writer, connection)
        status, payload = self._route(request.method, path, request.body)
        await _write_json(writer, status, payload, keep_alive=request.keep_alive and not connection.closing)
        return True

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method == "GET" and path == "/health":
            return 200, {"status": "ok", "service": "fault_container"}
        if method == "GET" and path in ("/metadata", "/info"):
            inner: dict[str, Any] = {"optimizer_contracts": {"gepa": {"version": GEPA_CONTRACT_VERSION}}}
            if self.policy_model is not None:
                inner["policy_model"] = self.policy_model
            return 200, {"runtime": {"name": "fault_container"}, "metadata": inner}
        if method == "GET" and path == "/program":
            return 200, _program()
        if method == "GET" and path == "/task_info":
            description = "Reply with the answer word."
            return 200, {"task": {"task_id": "fault_container", "description": description}, "metadata": {}}
        if method == "GET" and path == "/taskset":
            splits = {split: {"task_ids": [row["task_id"] for row in rows]} for split, rows in self.rows.items()}
            return 200, {"splits": splits, "labels": [], "metadata": {"name": "fault_container"}}
        if method == "POST" and path == "/taskset/tasks":
            payload = _json_object(body)
            split_rows = {row["task_id"]: row for row in self.rows.get(str(payload.get("split", "")), [])}
            wanted = [str(task_id) for task_id in payload.get("task_ids") or []]
            return 200, {"tasks": [split_rows[task_id] for task_id in wanted if task_id in split_rows]}
        if method == "GET" and path == "/fault/stats":
            return 200, self.stats()
        return 404, {"detail": f"no route {method} {path}"}

    def stats(self) -> dict[str, Any]:
        return {
            "fault": self.plan.kind,
            "rollout_requests": self.rollout_requests,
            "normal_replies": self.normal_replies,
            "faults": self.faults,
            "refusing": self.refusing,
        }

    # ---------------------------------------------------------------------------------------------- rollouts

    async def _rollout(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: _Connection
    ) -> bool:
        payload = _json_object(request.body)
        self.rollout_requests += 1
        task_id = str(payload.get("task_id", ""))
        fault = self._fault_for(task_id)
        if fault == "die":
            log.warning("fault die: SIGKILL on rollout request %d (row %s)", self.rollout_requests, task_id)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds)
        if fault is None:
            keep = request.keep_alive and not connection.closing
            await _write_json(writer, 200, self._reply(payload), keep_alive=keep)
            if self._counts(task_id):
                self.normal_replies += 1
                if self.plan.kind == "refused" and self.normal_replies == self.plan.after:
                    self._start_refusal()
                    return False
            return True
        self.faults += 1
        log.warning("fault %s on rollout request %d (row %s)", fault, self.rollout_requests, task_id)
        if fault == "http500":
            body = {"detail": "injected fault: http500"}
            await _write_json(writer, 500, body, keep_alive=request.keep_alive and not connection.closing)
            return True
        if fault == "malformed":
            keep = request.keep_alive and not connection.closing
            await _write(writer, 200, MALFORMED_BODY, "application/json", keep_alive=keep)
            return True
        if fault == "wrong_id":
            reply = {**self._reply(payload), "rollout_id": f"{payload.get('rollout_id', '')}-wrong"}
            await _write_json(writer, 200, reply, keep_alive=request.keep_alive and not connection.closing)
            return True
        if fault == "huge_body":
            await self._huge(writer, self._reply(payload), keep_alive=request.keep_alive and not connection.closing)
            return not self.plan.huge_chunked
        if fault == "deep_nesting":
            depth = self.plan.depth
            deep = json.dumps({**self._reply(payload), "trace": "@DEEP@"}).encode()
            deep = deep.replace(b'"@DEEP@"', b"[" * depth + b"]" * depth)
            keep = request.keep_alive and not connection.closing
            await _write(writer, 200, deep, "application/json", keep_alive=keep)
            return True
        if fault == "big_reward":
            reply = self._reply(payload)
            reply["reward_info"] = {**reply["reward_info"], "outcome_reward": BIG_REWARD}
            await _write_json(writer, 200, reply, keep_alive=request.keep_alive and not connection.closing)
            return True
        if fault == "lone_surrogates":  # json.dumps escapes them: "\ud83d"
            reply = self._reply(payload)
            reply["actionable_side_info"] = {"feedback": f"{reply['actionable_side_info']['feedback']} \ud83d cut"}
            reply["trace"] = {"turns": [{"role": "assistant", "content": "half an emoji: \udc00"}]}
            reply["reward_info"] = {**reply["reward_info"], "metrics": {"exact\ud800": 1.0}}
            await _write_json(writer, 200, reply, keep_alive=request.keep_alive and not connection.closing)
            return True
        if fault == "reset":
            _reset(writer)
            return False
        if fault == "hang":
            await _hold_until_closed(reader)
            return False
        await self._trickle(writer, self._reply(payload))  # slow_body
        return False

    def _counts(self, task_id: str) -> bool:
        return self.plan.row is None or task_id == self.plan.row

    def _fault_for(self, task_id: str) -> str | None:
        """Decide at arrival, so exactly N requests pass and exactly K fail even when requests overlap."""
        plan = self.plan
        if plan.kind is None or plan.kind == "refused" or not self._counts(task_id):
            return None
        index = self.matching_requests
        self.matching_requests += 1
        if index < plan.after:
            return None
        if plan.kind == "die" or plan.count == 0 or index < plan.after + plan.count:
            return plan.kind
        return None

    def _reply(self, payload: dict[str, Any]) -> dict[str, Any]:
        task_id = str(payload.get("task_id", ""))
        row = self._by_id.get(task_id) or dict(payload.get("task") or {})
        instruction = str((payload.get("candidate") or {}).get("instruction", ""))
        answer = str(row.get("answer", ""))
        reward = 1.0 if answer and re.search(rf"\b{re.escape(answer)}\b", instruction) else 0.0
        return {
            "rollout_id": str(payload.get("rollout_id", "")),
            "status": "completed",
            "success_status": "succeeded",
            "task_id": task_id,
            "reward_info": {"outcome_reward": reward, "metrics": {"exact": reward}},
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "cost_usd": 0.001},
            "trace": {"turns": [{"role": "user", "content": row.get("question", "")}]},
            "actionable_side_info": {"feedback": f"expected {answer!r}"},
            "metadata": {},
        }

    async def _huge(self, writer: asyncio.StreamWriter, reply: dict[str, Any], *, keep_alive: bool) -> None:
        """A correct reply padded to ``huge_bytes``, with its length or (``huge_chunked``) without one."""
        base = len(json.dumps({**reply, "padding": ""}).encode())
        body = json.dumps({**reply, "padding": "x" * max(0, self.plan.huge_bytes - base)}).encode()
        if not self.plan.huge_chunked:
            await _write(writer, 200, body, "application/json", keep_alive=keep_alive)
            return
        head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n"
        writer.write(f"{head}connection: close\r\n\r\n".encode("latin-1"))
        step = 64 * 1024
        for start in range(0, len(body), step):
            piece = body[start : start + step]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _trickle(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        body = json.dumps(reply).encode()
        writer.write(_head(200, len(body), "application/json", keep_alive=False))
        await writer.drain()
        for index in range(len(body)):
            await asyncio.sleep(self.plan.trickle_seconds)
            writer.write(body[index : index + 1])
            await writer.drain()

    # ------------------------------------------------------------------------------------------------ refusal

    def _start_refusal(self) -> None:
        """Close the listening socket and every idle keep-alive connection; reopen after ``refuse_seconds``."""
        if self.refusing or self._server is None:
            return
        self.refusing = True
        self._server.close()
        for connection in list(self._connections):
            connection.closing = True
            if not connection.busy:
                connection.writer.close()
        log.warning("fault refused: port %d closed (%s)", self._port, self._reopen_text())
        if self.plan.refuse_seconds > 0:
            task = asyncio.get_running_loop().create_task(self._reopen_later())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _reopen_text(self) -> str:
        return f"for {self.plan.refuse_seconds:g} s" if self.plan.refuse_seconds > 0 else "for good"

    async def _reopen_later(self) -> None:
        await asyncio.sleep(self.plan.refuse_seconds)
        await self.listen(self._port)
        self.refusing = False
        log.warning("fault refused: port %d listening again", self._port)


# ------------------------------------------------------------------------------------------------------- HTTP


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """One request, or None at a clean end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _BadRequest("the connection ended inside a request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise _BadRequest("request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(f"not an HTTP/1.x request line: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _BadRequest("chunked request bodies are not supported; send a Content-Length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _BadRequest("bad Content-Length") from None
    if not 0 <= length <= _MAX_BODY_BYTES:
        raise _BadRequest("bad Content-Length")
    body = await reader.readexactly(length) if length else b""
    return _Request(method=parts[0].upper(), path=parts[1], headers=headers, body=body)


def _head(status: int, length: int, content_type: str, *, keep_alive: bool) -> bytes:
    reason = _REASONS.get(status, "Status")
    connection = "keep-alive" if keep_alive else "close"
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n"
        f"connection: {connection}\r\n\r\n"
    ).encode("latin-1")


async def _write(
    writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str, *, keep_alive: bool
) -> None:
    writer.write(_head(status, len(body), content_type, keep_alive=keep_alive) + body)
    await writer.drain()


async def _write_json(writer: asyncio.StreamWriter, status: int, payload: Any, *, keep_alive: bool) -> None:
    await _write(writer, status, json.dumps(payload).encode(), "application/json", keep_alive=keep_alive)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP reset instead of an orderly close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _hold_until_closed(reader: asyncio.StreamReader) -> None:
    """Hold a connection without answering until the client gives up and closes it."""
    while await reader.read(65536):
        pass


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _program() -> dict[str, Any]:
    return {
        "program_id": "fault_container_program",
        "modules": [
            {
                "module_id": "instruction",
                "role": "system",
                "content": SEED_INSTRUCTION,
                "mutable": True,
                "candidate_field": "instruction",
            }
        ],
        "target_modules": [{"module_id": "instruction", "candidate_field": "instruction"}],
        "seed_candidate": {"instruction": SEED_INSTRUCTION},
    }


# -------------------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m synth_opt.testing.fault_container",
        description="A task container on 127.0.0.1 that injects faults into POST /rollout by count.",
    )
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--fault", choices=FAULT_KINDS, default=None, help="the fault to inject (none: serve)")
    parser.add_argument("--after", type=int, default=0, help="rollout requests answered normally first")
    parser.add_argument("--count", type=int, default=0, help="faulty rollout requests after those (0: all)")
    parser.add_argument("--fault-row", default=None, help="inject only into rollouts of this row id")
    parser.add_argument("--refuse-seconds", type=float, default=0.0, help="refused: reopen after this (0: never)")
    parser.add_argument("--trickle-seconds", type=float, default=1.0, help="slow_body: seconds per body byte")
    parser.add_argument("--huge-bytes", type=int, default=HUGE_BYTES, help="huge_body: the size of the reply body")
    parser.add_argument("--huge-chunked", action="store_true", help="huge_body: send it chunked, with no length")
    parser.add_argument("--depth", type=int, default=DEEP_NESTING, help="deep_nesting: how deep the trace nests")
    parser.add_argument("--delay-ms", type=int, default=0, help="delay before every rollout reply")
    parser.add_argument("--policy-model", default=None, help="report this as metadata.policy_model")
    parser.add_argument("--train", type=int, default=12, help="train rows (t0, t1, ...)")
    parser.add_argument("--test", type=int, default=4, help="test rows (h0, h1, ...)")
    return parser


async def _serve(container: FaultContainer, port: int) -> None:
    bound = await container.listen(port)
    print(f"listening on http://{_HOST}:{bound}", flush=True)
    await container.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        plan = FaultPlan(
            kind=args.fault,
            after=args.after,
            count=args.count,
            row=args.fault_row,
            refuse_seconds=args.refuse_seconds,
            trickle_seconds=args.trickle_seconds,
            huge_bytes=args.huge_bytes,
            huge_chunked=args.huge_chunked,
            depth=args.depth,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.train < 0 or args.test < 0 or args.delay_ms < 0:
        parser.error("--train, --test and --delay-ms must not be negative")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="fault_container: %(message)s")
    container = FaultContainer(
        plan, train=args.train, test=args.test, delay_ms=args.delay_ms, policy_model=args.policy_model
    )
    try:
        asyncio.run(_serve(container, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
