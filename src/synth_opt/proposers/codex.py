"""The ``codex_app_server`` proposer: one ``codex app-server`` process per call, spoken to over stdio.

Why a process per call rather than one long-lived server: a call owns its process, so a server that crashed
or hung never poisons the next call (proposer calls are not retried), cancelling a call kills exactly one
process group, and concurrent calls (``workers.propose`` > 1) need no message demultiplexer. The price is
codex's start-up time per call, small next to a model turn.

Wire protocol (see SPEC section 5): one JSON object per line, JSON-RPC without the ``"jsonrpc"`` member.
``initialize`` -> ``initialized`` -> ``thread/start`` -> ``turn/start``, then notifications until
``turn/completed``. Requests the server sends us (approvals and the like) are answered with a decline.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from synth_opt.errors import ConfigError, ProposerError, ProposerReplyError, ProposerUnavailableError
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.pricing import TokenPrices
from synth_opt.proposers.process_group import StderrTail, open_group_process, stop_stdio_server
from synth_opt.proposers.reflection import (
    BASE_INSTRUCTIONS,
    CHARS_PER_TOKEN,
    DEFAULT_MAX_FEEDBACK_CHARS,
    DEFAULT_MAX_PROMPT_TOKENS,
    REPLY_SCHEMA,
    ReflectionRequest,
    fit_request,
    parse_reply,
    render_prompt,
)
from synth_opt.texts import without_lone_surrogates
from synth_opt.usage import Usage, usage_problem

__all__ = [
    "CLIENT_INFO",
    "DEFAULT_COMMAND",
    "PROVIDER_ID",
    "CodexAppServerProposer",
    "config_override_argv",
    "provider_overrides",
]

DEFAULT_COMMAND: tuple[str, ...] = ("codex", "app-server")
CLIENT_INFO: dict[str, str] = {"name": "synth_opt", "title": "synth_opt", "version": "0.1.0"}
SOURCE = "codex app-server"

_MAX_LINE_BYTES = 64 * 1024 * 1024
_EXIT_WAIT_SECONDS = 2.0  # after stdout EOF, how long to wait for an exit code
_INTERRUPT_SEND_SECONDS = 1.0
# Legacy (v1) approval requests take ReviewDecision values; the v2 ones take accept/decline.
_LEGACY_APPROVALS = frozenset({"execCommandApproval", "applyPatchApproval"})

JsonObject = dict[str, Any]


class CodexAppServerProposer:
    """Proposer backed by ``codex app-server``, or any program speaking its protocol such as the fake."""

    backend = "codex_app_server"

    def __init__(
        self,
        command: Sequence[str] = DEFAULT_COMMAND,
        *,
        codex_home: Path,
        workdir: Path,
        model: str | None,
        config_overrides: Mapping[str, Any],
        timeout_seconds: float,
        message_stall_timeout_seconds: float,
        env: Mapping[str, str] | None = None,
        max_feedback_chars: int = DEFAULT_MAX_FEEDBACK_CHARS,
        max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
        cost_per_million_input_tokens: float | None = None,
        cost_per_million_output_tokens: float | None = None,
    ) -> None:
        """``env`` adds to (and overrides) the inherited environment; ``CODEX_HOME`` is ``codex_home``.

        The turn's text is bounded to ``max_prompt_tokens`` (:func:`fit_request`); codex adds its own instructions
        and tool calls to the turn, so the tokens a call uses are bounded only by the configured estimate."""
        if not command:
            raise ConfigError("[proposer] command is empty; give the argv of codex app-server")
        self.argv: tuple[str, ...] = (*command, *config_override_argv(config_overrides))
        self.codex_home = Path(codex_home)
        self.workdir = Path(workdir)
        self.codex_home.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.model = model
        self.timeout_seconds = timeout_seconds
        self.message_stall_timeout_seconds = message_stall_timeout_seconds
        self.max_feedback_chars = max_feedback_chars
        self.max_prompt_tokens = max_prompt_tokens
        self.prices = TokenPrices(cost_per_million_input_tokens, cost_per_million_output_tokens)
        self._extra_env = dict(env or {})
        self._live: set[anyio.abc.Process] = set()
        self._closed = False

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        if self._closed:
            raise ProposerError("the codex app-server proposer is closed; build a new one")
        started = time.monotonic()
        prompt = self.prompt(request)
        process = await self._launch()
        self._live.add(process)
        stderr = StderrTail()
        answer: _Answer | None = None
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(stderr.drain, process.stderr)
                try:
                    if self._closed:  # aclose() ran while the process was starting
                        raise ProposerError("the codex app-server proposer was closed")
                    answer = await self._call(process, stderr, prompt)
                except Exception as exc:  # re-raised below, outside the task group, so it is not wrapped
                    failure = exc
                finally:
                    with anyio.CancelScope(shield=True):
                        await stop_stdio_server(process)
                    tasks.cancel_scope.cancel()
        finally:
            self._live.discard(process)
            with anyio.CancelScope(shield=True):
                await process.aclose()
        if failure is not None:
            if self._closed:
                raise ProposerError("codex app-server call stopped: the proposer was closed") from failure
            raise failure
        assert answer is not None
        usage = self._usage(answer.tokens, prompt, answer.text)
        try:
            texts = parse_reply(answer.text, wanted=request.proposals, source=SOURCE, module=request.target_module)
        except ProposerReplyError as exc:
            exc.usage = usage
            raise
        return ProposerResult(
            texts=tuple(texts), usage=usage, raw_text=answer.text, duration_seconds=time.monotonic() - started
        )

    def prompt(self, request: ReflectionRequest) -> str:
        """The turn text this proposer sends for ``request`` (bounded to ``max_prompt_tokens``)."""
        fitted = fit_request(
            request, max_feedback_chars=self.max_feedback_chars, max_prompt_tokens=self.max_prompt_tokens
        )
        return render_prompt(fitted)

    def _usage(self, tokens: _Tokens, prompt: str, reply: str) -> Usage:
        """What the turn reported, else an estimate at 4 characters a token of the turn text and the reply."""
        if tokens == _Tokens():
            return self.prices.usage(
                prompt_tokens=-(-(len(BASE_INSTRUCTIONS) + len(prompt)) // CHARS_PER_TOKEN),
                completion_tokens=-(-len(reply) // CHARS_PER_TOKEN),
            )
        return self.prices.usage(prompt_tokens=tokens.input, completion_tokens=tokens.output, total_tokens=tokens.total)

    async def aclose(self) -> None:
        """Stop every running server (their calls fail with a ProposerError) and refuse new calls."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            for process in list(self._live):
                await stop_stdio_server(process)

    async def _launch(self) -> anyio.abc.Process:
        env = {**os.environ, **self._extra_env, "CODEX_HOME": str(self.codex_home)}
        try:
            return await open_group_process(self.argv, cwd=self.workdir, env=env)
        except OSError as exc:
            raise ProposerError(
                f"could not start the proposer command {self.argv[0]!r}: {exc}. Install codex "
                "(npm install -g @openai/codex) or point [proposer] command at a codex app-server.",
                command=list(self.argv),
            ) from exc

    async def _call(self, process: anyio.abc.Process, stderr: StderrTail, prompt: str) -> _Answer:
        session = _Session(process, stderr, stall_seconds=self.message_stall_timeout_seconds)
        with anyio.move_on_after(self.timeout_seconds) as deadline:
            return await self._converse(session, prompt)
        assert deadline.cancelled_caught
        raise ProposerUnavailableError(
            f"codex app-server call exceeded timeout_seconds={self.timeout_seconds:g} "
            f"(while waiting for {session.phase}); raise [proposer] timeout_seconds if turns are slow",
            timeout="timeout_seconds",
        )

    async def _converse(self, session: _Session, prompt: str) -> _Answer:
        await session.request("initialize", {"clientInfo": CLIENT_INFO})
        await session.notify("initialized")
        thread_params: JsonObject = {
            "cwd": str(self.workdir),
            "approvalPolicy": "never",
            "sandbox": "read-only",
            "baseInstructions": BASE_INSTRUCTIONS,
        }
        if self.model:
            thread_params["model"] = self.model
        thread_id = _thread_id(await session.request("thread/start", thread_params))
        turn_params: JsonObject = {
            "threadId": thread_id,
            "input": [{"type": "text", "text": prompt, "text_elements": []}],
            "outputSchema": REPLY_SCHEMA,
        }
        try:
            session.turn.note_turn_id(await session.request("turn/start", turn_params))
            turn = await session.wait_turn_completed()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await session.interrupt(thread_id)
            raise
        return _answer(turn, session.turn, lambda tokens, reply: self._usage(tokens, prompt, reply))


@dataclass(frozen=True, slots=True)
class _Tokens:
    input: int = 0
    output: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class _Answer:
    text: str
    tokens: _Tokens


@dataclass(slots=True)
class _TurnState:
    """What the notifications of one turn told us so far."""

    turn_id: str | None = None
    agent_text: str | None = None
    tokens: _Tokens | None = None
    error: str | None = None
    completed: JsonObject | None = None
    usage_problem: str | None = None  # a token count no ledger can hold (the turn then fails, at an estimate)

    def note_turn_id(self, holder: Any) -> None:
        """Take the turn id from a ``{turn: {id}}`` or ``{turnId}`` object, unless already known."""
        if self.turn_id is not None or not isinstance(holder, dict):
            return
        turn = holder.get("turn")
        if isinstance(turn, dict) and isinstance(turn.get("id"), str):
            self.turn_id = turn["id"]
        elif isinstance(holder.get("turnId"), str):
            self.turn_id = holder["turnId"]

    def observe(self, method: str, params: JsonObject) -> None:
        if method == "turn/started":
            self.note_turn_id(params)
        elif method == "item/completed":
            item = params.get("item")
            if isinstance(item, dict) and item.get("type") == "agentMessage":
                if isinstance(item.get("text"), str):
                    self.agent_text = item["text"]
        elif method == "thread/tokenUsage/updated":
            self.tokens = self._tokens_of(params) or self.tokens
        elif method == "error":
            self.error = _error_text(params.get("error", params)) or self.error
        elif method == "turn/completed":
            turn = params.get("turn")
            self.completed = turn if isinstance(turn, dict) else {}
            self.tokens = self._tokens_of(params) or self._tokens_of(self.completed) or self.tokens

    def _tokens_of(self, params: Any) -> _Tokens | None:
        try:
            return _read_tokens(params)
        except _UncountableUsage as bad:
            self.usage_problem = str(bad)
            return None


class _Session:
    """The client side of one app-server connection: send, receive with a stall limit, answer requests."""

    def __init__(self, process: anyio.abc.Process, stderr: StderrTail, *, stall_seconds: float) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self._stderr = stderr
        self._stall_seconds = stall_seconds
        self._next_id = 0
        self._exited = False
        self._turn_start_id: int | None = None
        self.phase = "start-up"
        self.turn = _TurnState()

    async def request(self, method: str, params: JsonObject) -> Any:
        request_id = self._next_id
        self._next_id += 1
        self.phase = f"the {method} reply"
        if method == "turn/start":
            self._turn_start_id = request_id
        await self._send({"id": request_id, "method": method, "params": params})
        while True:
            message = await self._receive()
            if "method" not in message and message.get("id") == request_id:
                if "error" in message:
                    raise ProposerError(
                        f"codex app-server refused {method}: {_error_text(message['error'])}",
                        method=method,
                        error=message["error"],
                    )
                return message.get("result")
            await self._dispatch(message)

    async def notify(self, method: str, params: JsonObject | None = None) -> None:
        message: JsonObject = {"method": method}
        if params is not None:
            message["params"] = params
        await self._send(message)

    async def wait_turn_completed(self) -> JsonObject:
        self.phase = "turn/completed"
        while self.turn.completed is None:
            await self._dispatch(await self._receive())
        return self.turn.completed

    async def interrupt(self, thread_id: str) -> None:
        """Best effort: ask the server to stop the running turn before its process group is killed.

        A call stopped while the ``turn/start`` reply is on its way waits a moment for the turn's id: the turn
        runs on the server whether or not we read the reply."""
        if self._exited or self.turn.completed is not None:
            return
        if self.turn.turn_id is None and self._turn_start_id is not None:
            with anyio.move_on_after(_INTERRUPT_SEND_SECONDS):
                await self._await_turn_id()
        if self.turn.turn_id is None or self.turn.completed is not None:
            return
        message = {
            "id": self._next_id,
            "method": "turn/interrupt",
            "params": {"threadId": thread_id, "turnId": self.turn.turn_id},
        }
        self._next_id += 1
        with anyio.move_on_after(_INTERRUPT_SEND_SECONDS):
            try:
                await self._stdin.send(_encode(message))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass

    async def _await_turn_id(self) -> None:
        try:
            while self.turn.turn_id is None and self.turn.completed is None:
                message = await self._receive()
                if "method" not in message and message.get("id") == self._turn_start_id:
                    self.turn.note_turn_id(message.get("result"))
                else:
                    await self._dispatch(message)
        except ProposerError:
            return  # the server is gone or silent: nothing left to interrupt

    async def _dispatch(self, message: JsonObject) -> None:
        method = message.get("method")
        if not isinstance(method, str):
            return  # a reply to a request we no longer wait for (e.g. turn/interrupt)
        if "id" in message:
            await self._send(_decline(message["id"], method))
            return
        params = message.get("params")
        self.turn.observe(method, params if isinstance(params, dict) else {})

    async def _send(self, message: JsonObject) -> None:
        with anyio.move_on_after(self._stall_seconds) as stall:
            try:
                await self._stdin.send(_encode(message))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                raise await self._exit_error() from None
        if stall.cancelled_caught:
            raise self._stall_error("writing to its stdin")

    async def _receive(self) -> JsonObject:
        while True:
            with anyio.move_on_after(self._stall_seconds) as stall:
                try:
                    line = await self._stdout.receive_until(b"\n", _MAX_LINE_BYTES)
                except (anyio.IncompleteRead, anyio.EndOfStream, anyio.ClosedResourceError):
                    raise await self._exit_error() from None
                except anyio.DelimiterNotFound:
                    raise ProposerError(f"codex app-server sent a line longer than {_MAX_LINE_BYTES} bytes") from None
            if stall.cancelled_caught:
                raise self._stall_error("a message")
            try:
                message = without_lone_surrogates(json.loads(line), line)
            except (ValueError, RecursionError):
                continue  # not protocol: a stray log line on stdout (or JSON nested deeper than the parser goes)
            if isinstance(message, dict):
                return message

    def _stall_error(self, what: str) -> ProposerUnavailableError:
        return ProposerUnavailableError(
            f"codex app-server sent no message for {self._stall_seconds:g} s "
            f"(message_stall_timeout_seconds) while waiting for {what} ({self.phase})",
            timeout="message_stall_timeout_seconds",
        )

    async def _exit_error(self) -> ProposerError:
        self._exited = True
        with anyio.move_on_after(_EXIT_WAIT_SECONDS):
            await self._process.wait()
        await self._stderr.settle(1.0)
        code = self._process.returncode
        if code is None:
            how = "closed its stdout"
        elif code < 0:
            how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        tail = self._stderr.lines()
        shown = "\n".join(tail) if tail else "(empty)"
        said = f"codex app-server {how} while we waited for {self.phase}; last stderr lines:\n{shown}"
        if self.turn.turn_id is not None:
            # it accepted the turn, so its configuration works: a server that dies mid-turn served nothing, like one
            # that stalls (an outage: the call is made again, within proposer.outage_timeout_seconds)
            return ProposerUnavailableError(said, exit_code=code, stderr_tail=tail)
        return ProposerError(said, exit_code=code, stderr_tail=tail)  # a configuration error: fail fast


def _encode(message: JsonObject) -> bytes:
    return (json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8")


def _thread_id(result: Any) -> str:
    if isinstance(result, dict):
        thread = result.get("thread")
        if isinstance(thread, dict) and isinstance(thread_id := thread.get("id"), str):
            return thread_id
        if isinstance(thread_id := result.get("threadId"), str):
            return thread_id
    raise ProposerError(f"codex app-server thread/start reply has no thread id: {str(result)[:200]!r}")


def _answer(turn: JsonObject, state: _TurnState, usage: Callable[[_Tokens, str], Usage]) -> _Answer:
    """The agent's answer of a completed turn; a failed turn or one without an answer is a failed proposal
    (:class:`ProposerReplyError` with what the turn said and the tokens it reported)."""
    status = turn.get("status")
    tokens = state.tokens or _Tokens()
    if state.usage_problem is not None:
        raise ProposerReplyError(
            f"codex app-server reported {state.usage_problem}; the call is counted at an estimate of "
            f"{CHARS_PER_TOKEN} characters a token",
            raw_reply=state.agent_text or "",
            usage=usage(_Tokens(), state.agent_text or ""),
        )
    if status != "completed":
        reason = _error_text(turn.get("error")) or state.error or "no error given"
        raise ProposerReplyError(
            f"codex app-server turn ended with status {status!r}: {reason}",
            raw_reply=state.agent_text or reason,
            usage=usage(tokens, state.agent_text or ""),
            status=status,
        )
    text = state.agent_text
    if text is None:
        items = turn.get("items")
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("type") == "agentMessage":
                text = item["text"] if isinstance(item.get("text"), str) else text
    if text is None:
        raise ProposerReplyError(
            "codex app-server turn completed without an agent message; nothing to parse", usage=usage(tokens, "")
        )
    return _Answer(text=text, tokens=tokens)


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message")
        return str(message) if message is not None else json.dumps(error)[:300]
    return "" if error is None else str(error)


class _UncountableUsage(Exception):
    """A usage notification's count is negative, not finite or beyond what one reply may report."""


_TOKEN_KEYS = (
    "inputTokens",
    "input_tokens",
    "promptTokens",
    "prompt_tokens",
    "outputTokens",
    "output_tokens",
    "completionTokens",
    "completion_tokens",
    "totalTokens",
    "total_tokens",
)


def _read_tokens(params: Any) -> _Tokens | None:
    """Token counts from a usage notification, tolerating the spellings codex versions have used. Raises
    _UncountableUsage naming a count no ledger can hold."""
    if not isinstance(params, dict):
        return None
    usage = params.get("tokenUsage", params.get("usage"))
    if not isinstance(usage, dict):
        return None
    block = usage.get("total") or usage.get("last") or usage
    if not isinstance(block, dict):
        return None
    problem = usage_problem(block, _TOKEN_KEYS, prefix="tokenUsage.")
    if problem is not None:
        raise _UncountableUsage(problem)
    tokens = _Tokens(
        input=_first_int(block, "inputTokens", "input_tokens", "promptTokens", "prompt_tokens"),
        output=_first_int(block, "outputTokens", "output_tokens", "completionTokens", "completion_tokens"),
        total=_first_int(block, "totalTokens", "total_tokens"),
    )
    return tokens if tokens != _Tokens() else None


def _first_int(data: Mapping[str, Any], *keys: str) -> int:
    for key in keys:
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return 0


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
PROVIDER_ID = "synth_opt"


def provider_overrides(
    overrides: Mapping[str, Any], *, base_url: str | None, api_key_env: str | None
) -> dict[str, Any]:
    """``overrides`` plus, when ``base_url`` is set and ``overrides`` choose no ``model_provider`` of their own, a
    run-local model provider that sends codex's model requests to ``base_url`` over the Responses API (a local
    llama.cpp or vLLM server, or any OpenAI-compatible endpoint), authenticated with the key ``api_key_env``
    names when one is named."""
    if not base_url or "model_provider" in overrides:
        return dict(overrides)
    provider: dict[str, Any] = {"name": "synth_opt endpoint", "base_url": base_url, "wire_api": "responses"}
    if api_key_env:
        provider["env_key"] = api_key_env
    return {f"model_providers.{PROVIDER_ID}": provider, "model_provider": PROVIDER_ID, **overrides}


def config_override_argv(overrides: Mapping[str, Any]) -> list[str]:
    """``-c key=<TOML value>`` pairs for codex; dotted keys pass through (codex splits them itself)."""
    argv: list[str] = []
    for key, value in overrides.items():
        argv += ["-c", f"{key}={_toml_value(value, key)}"]
    return argv


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, Mapping):
        body = ", ".join(f"{_toml_key(k)} = {_toml_value(v, f'{where}.{k}')}" for k, v in value.items())
        return "{" + body + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item, where) for item in value) + "]"
    raise ConfigError(
        f"[proposer] config.{where}: {type(value).__name__} has no TOML spelling for a codex -c override",
        key=where,
    )


def _toml_key(key: Any) -> str:
    text = str(key)
    return text if _BARE_KEY.fullmatch(text) else json.dumps(text, ensure_ascii=False)


_APPROVALS = frozenset({"item/commandExecution/requestApproval", "item/fileChange/requestApproval"})


def _decline(request_id: Any, method: str) -> JsonObject:
    """Our answer to a request from the server: approvals are declined, elicitations declined, anything else is
    refused as unsupported (never left unanswered)."""
    if method in _LEGACY_APPROVALS:
        return {"id": request_id, "result": {"decision": "denied"}}
    if method in _APPROVALS:
        return {"id": request_id, "result": {"decision": "decline"}}
    if method == "mcpServer/elicitation/request":
        return {"id": request_id, "result": {"action": "decline"}}
    return {"id": request_id, "error": {"code": -32601, "message": f"{method} is not supported by synth_opt"}}
