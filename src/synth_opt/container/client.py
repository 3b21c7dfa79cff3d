"""The HTTP client for task containers (SPEC §4).

One class owns the failure policy every route shares: bounded, deterministic retries of transport failures
and retryable statuses, and errors that name the container URL, the route and the status and say what to do.
A call ends in one of the two kinds of failure of :mod:`synth_opt.container.replies`: a *transport failure*
(:class:`~synth_opt.errors.ContainerTransportError`, after the retries) or a *task failure* (any other
``ContainerContractError``, never retried: something was served). With ``outage_timeout_seconds`` set, rollouts go
through an :class:`~synth_opt.container.circuit.OutageCircuit`, so a transport failure is held and sent again
rather than returned, and an outage fails the run instead of producing outcomes.
Replies are validated here into the records of :mod:`synth_opt.container.wire`, so nothing past this boundary
sees raw JSON. ``validate_rollout_reply`` is public because the cache rebinds and revalidates stored replies.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import anyio
import httpx

from synth_opt.container.circuit import ContainerOutageError, Emit, OutageCircuit
from synth_opt.container.connections import ContainerHttpClient, container_transport, environment_proxy
from synth_opt.container.plain_http import PlainHttpTransport, on_asyncio
from synth_opt.container.replies import (
    FAILURE_STATUSES,
    PENDING_STATUSES,
    SUCCESS_STATUSES,
    ContainerTransportError,
    RolloutPhase,
    UnusableBody,
    check_rollout_id,
    clip,
    decode_reply,
    gepa_contract_version,
    is_transport_status,
    parse_program,
    parse_taskset,
    rollout_phase,
    stable_row_id,
    status_error,
    validate_rollout_reply,
)
from synth_opt.container.wire import (
    GEPA_CONTRACT_VERSION,
    ProgramInfo,
    RolloutReply,
    RolloutRequest,
    TasksetInfo,
)
from synth_opt.errors import ContainerContractError

__all__ = [
    "FAILURE_STATUSES",
    "PENDING_STATUSES",
    "SUCCESS_STATUSES",
    "ClientStats",
    "ContainerClient",
    "ContainerOutageError",
    "ContainerTransportError",
    "RetryPolicy",
    "RolloutPhase",
    "rollout_phase",
    "validate_rollout_reply",
]

MAX_REPLY_BYTES: Final = 8 * 1024 * 1024
"""The default of ``container.max_reply_bytes``: a body over it is a task failure naming its size."""
TASKS_CHUNK_SIZE: Final = 500
_TERMINATE_TIMEOUT_SECONDS: Final = 5.0
_TRANSPORT_HINT: Final = (
    "check that the container is running and reachable at that URL (see its log); "
    "for a slow container raise [container] request_timeout_seconds"
)
_REPLY_HINT: Final = "fix the container so its reply follows the synth-containers contract (SPEC §4)"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff without jitter, so runs against a flaky container stay reproducible."""

    max_attempts: int = 4
    base_delay_seconds: float = 0.1
    max_delay_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def delay_before_retry(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry (1-based)."""
        return float(min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (retry - 1)))


@dataclass(slots=True)
class ClientStats:
    """Transport counters for observability; they never feed decisions."""

    requests: int = 0
    retries: int = 0
    polls: int = 0
    terminations: int = 0


class _NotFound:
    """Marker for a 404 on a route the caller treats as optional."""


@dataclass(frozen=True, slots=True)
class _TooLarge:
    """A body over ``max_reply_bytes``, not read: its declared size, or None when it had none."""

    size: int | None


_NOT_FOUND: Final = _NotFound()
_URL_CACHE_SIZE: Final = 64  # fixed routes; per-rollout routes (async polling) are parsed each time


class ContainerClient:
    """Async client for one container; safe to share between concurrent tasks."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        bearer_token: str | None = None,
        request_timeout_seconds: float = 120.0,
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.AsyncBaseTransport | None = None,
        concurrency: int = 8,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        outage_timeout_seconds: float | None = None,
        outage_events: Emit | None = None,
    ) -> None:
        """``concurrency``: the requests the caller will have in flight at once, which sizes the connection
        pools (:func:`~synth_opt.container.connections.container_transport`; httpx's own transport when the
        environment names a proxy for the url); ``transport`` replaces them. ``outage_timeout_seconds``: send
        rollouts through an :class:`~synth_opt.container.circuit.OutageCircuit` (``outage_events`` receives its
        events); without it a rollout's transport failure is raised after the retries."""
        # A query in the url (a gateway's access code) is kept on every route; the routes extend the path.
        address, _, query = base_url.split("#", 1)[0].partition("?")
        self._base_url = address.rstrip("/")
        self._query = f"?{query}" if query else ""
        self.url = _display_url(self._base_url)
        self._retry = retry
        self._sleep = sleep
        self._request_timeout = request_timeout_seconds
        sent_headers = {"accept": "application/json", **dict(headers or {})}
        if bearer_token:
            sent_headers["authorization"] = f"Bearer {bearer_token}"
        chosen = transport if transport is not None else _default_transport(self._base_url, concurrency)
        self._http = ContainerHttpClient(
            base_url=self._base_url,
            headers=sent_headers,
            timeout=httpx.Timeout(request_timeout_seconds),
            transport=chosen,
        )
        # plain http on our own transport: requests are written and replies read without httpx's objects
        # (:meth:`_exchange_plain`), the same bytes on the wire
        self._plain: PlainHttpTransport | None = None
        if isinstance(chosen, PlainHttpTransport) and self._base_url.startswith("http://"):
            self._plain = chosen
        self._header_lines = b"".join(name + b": " + value + b"\r\n" for name, value in self._http.headers.raw)
        self.stats = ClientStats()
        self._urls: dict[str, httpx.URL] = {}
        self._max_reply_bytes = max_reply_bytes
        self.circuit: OutageCircuit | None = None
        if outage_timeout_seconds is not None:
            self.circuit = OutageCircuit(
                url=self.url,
                outage_timeout_seconds=outage_timeout_seconds,
                request_timeout_seconds=request_timeout_seconds,
                health=self.probe_health,
                emit=outage_events,
            )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ContainerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ----------------------------------------------------------------------------------------------- routes

    async def health(self) -> dict[str, Any]:
        return self._expect_object(await self._call("GET", "/health"), "GET", "/health")

    async def metadata(self) -> dict[str, Any] | None:
        """``GET /metadata`` (alias ``/info``); None when the container serves neither (the caller warns)."""
        for route in ("/metadata", "/info"):
            payload = await self._call("GET", route, allow_not_found=True)
            if payload is _NOT_FOUND:
                continue
            metadata = self._expect_object(payload, "GET", route)
            version = gepa_contract_version(metadata)
            if version is not None and version != GEPA_CONTRACT_VERSION:
                raise ContainerContractError(
                    f"container at {self.url} (GET {route}) speaks GEPA contract {version!r}, but synth_opt "
                    f"needs {GEPA_CONTRACT_VERSION!r}; use a container built for {GEPA_CONTRACT_VERSION!r} "
                    "(a current synth-containers release) or point [container] url at one",
                    url=self.url,
                    route=route,
                    found_version=version,
                    expected_version=GEPA_CONTRACT_VERSION,
                )
            return metadata
        return None

    async def check(self, policy: Mapping[str, Any]) -> dict[str, Any] | None:
        """``POST /health/check`` with the run's policy table: the container's start-up check
        (:mod:`synth_opt.policies.check`). None when the container does not serve the route (404); its reply
        otherwise, a JSON object whose ``status`` is ``ok`` or ``failed``."""
        payload = await self._call("POST", "/health/check", body={"policy": dict(policy)}, allow_not_found=True)
        if payload is _NOT_FOUND:
            return None
        reply = self._expect_object(payload, "POST", "/health/check")
        if reply.get("status") not in ("ok", "failed") or not isinstance(reply.get("checks", []), list):
            raise self._reply_error(
                "POST", "/health/check", 'expected {"status": "ok" | "failed", "checks": [...], ...}'
            )
        return reply

    async def program(self) -> ProgramInfo:
        payload = self._expect_object(await self._call("GET", "/program"), "GET", "/program")
        return parse_program(payload, where=f"container at {self.url} (GET /program)")

    async def task_info(self) -> str | None:
        """A readable task description for the proposer, or None when the container has no ``/task_info``."""
        payload = await self._call("GET", "/task_info", allow_not_found=True)
        if payload is _NOT_FOUND or payload is None:
            return None
        if isinstance(payload, str):
            return payload
        if isinstance(payload, dict):
            task = payload.get("task")
            for holder in (task, payload):
                if isinstance(holder, dict):
                    description = holder.get("description")
                    if isinstance(description, str) and description.strip():
                        return description
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)

    async def taskset(self) -> TasksetInfo:
        payload = self._expect_object(await self._call("GET", "/taskset"), "GET", "/taskset")
        return parse_taskset(payload, where=f"container at {self.url} (GET /taskset)")

    async def tasks(self, split: str, task_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Rows for ``task_ids`` of ``split`` in request order; the container must return exactly those."""
        wanted = list(dict.fromkeys(str(task_id) for task_id in task_ids))
        rows: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), TASKS_CHUNK_SIZE):
            chunk = wanted[start : start + TASKS_CHUNK_SIZE]
            rows.update(await self._tasks_chunk(split, chunk))
        return [rows[str(task_id)] for task_id in task_ids]

    async def rollout(
        self,
        request: RolloutRequest,
        *,
        poll_interval_seconds: float = 0.25,
        async_timeout_seconds: float = 600.0,
    ) -> RolloutReply:
        """Run one rollout; a non-terminal first reply (async submission) is polled until it ends. Through the
        outage circuit when there is one: a transport failure is then held and sent again (see
        :mod:`~synth_opt.container.circuit`)."""

        async def send(sent: RolloutRequest, probe: bool) -> RolloutReply:
            poll, limit = poll_interval_seconds, async_timeout_seconds
            return await self.send_rollout(sent, probe=probe, poll_interval_seconds=poll, async_timeout_seconds=limit)

        if self.circuit is None:
            return await send(request, False)
        return await self.circuit.run(request, send)

    async def send_rollout(
        self,
        request: RolloutRequest,
        *,
        probe: bool = False,
        poll_interval_seconds: float = 0.25,
        async_timeout_seconds: float = 600.0,
    ) -> RolloutReply:
        """One rollout without the outage circuit (what the circuit, or a replica set's, sends): the retry
        policy's attempts, or one for a ``probe``."""
        attempts = 1 if probe else None
        return await self._rollout_once(request, poll_interval_seconds, async_timeout_seconds, attempts)

    async def _rollout_once(
        self, request: RolloutRequest, poll_interval_seconds: float, async_timeout_seconds: float, attempts: int | None
    ) -> RolloutReply:
        route = "/rollout"
        payload = await self._call("POST", route, body=request.to_json(), max_attempts=attempts)
        reply = self._expect_object(payload, "POST", route)
        check_rollout_id(reply, request.rollout_id, url=self.url, route=route)
        if rollout_phase(reply) is RolloutPhase.PENDING:
            route = f"/rollouts/{quote(request.rollout_id, safe='')}"
            reply = await self._await_rollout(request.rollout_id, poll_interval_seconds, async_timeout_seconds)
        return validate_rollout_reply(reply, request.rollout_id, url=self.url, route=route)

    async def probe_health(self, within_seconds: float) -> None:
        """``GET /health`` once, within ``within_seconds``, for the outage circuit's probes (never cached)."""
        payload = await self._call("GET", "/health", max_attempts=1, attempt_seconds=within_seconds)
        self._expect_object(payload, "GET", "/health")

    # --------------------------------------------------------------------------------------------- plumbing

    async def _tasks_chunk(self, split: str, chunk: list[str]) -> dict[str, dict[str, Any]]:
        route = "/taskset/tasks"
        payload = self._expect_object(
            await self._call("POST", route, body={"split": split, "task_ids": chunk}), "POST", route
        )
        raw_rows = payload.get("tasks")
        if not isinstance(raw_rows, list) or not all(isinstance(row, dict) for row in raw_rows):
            raise self._reply_error("POST", route, "'tasks' must be a list of objects")
        got: dict[str, dict[str, Any]] = {}
        for row in raw_rows:
            found = stable_row_id(row)
            if found is None:
                raise self._reply_error("POST", route, "a row has none of task_id, example_id, id")
            got[found] = row
        missing = [task_id for task_id in chunk if task_id not in got]
        asked = set(chunk)
        extra = [found for found in got if found not in asked]
        if missing or extra or len(raw_rows) != len(chunk):
            raise ContainerContractError(
                f"container at {self.url} (POST {route}) returned {len(raw_rows)} rows of split {split!r} "
                f"for {len(chunk)} requested ids; missing {_preview(missing)}, unexpected {_preview(extra)}; "
                "check the [dataset] ids against the container's /taskset, or fix the container",
                url=self.url,
                route=route,
                split=split,
                missing_ids=missing,
                extra_ids=extra,
            )
        return got

    async def _await_rollout(self, rollout_id: str, interval: float, limit_seconds: float) -> dict[str, Any]:
        """Poll ``/rollouts/{id}/state`` until a terminal word, then fetch ``/rollouts/{id}``."""
        quoted = quote(rollout_id, safe="")
        state_route = f"/rollouts/{quoted}/state"
        deadline = anyio.current_time() + limit_seconds
        finished = False
        try:
            with anyio.move_on_after(limit_seconds):
                while anyio.current_time() < deadline:
                    await self._sleep(interval)
                    self.stats.polls += 1
                    state = self._expect_object(await self._call("GET", state_route), "GET", state_route)
                    check_rollout_id(state, rollout_id, url=self.url, route=state_route, required=False)
                    phase = rollout_phase(state)
                    if phase is RolloutPhase.PENDING:
                        continue
                    if phase is RolloutPhase.SUCCEEDED:
                        finished = True
                        break
                    raise status_error(state, rollout_id, url=self.url, route=state_route)
        except anyio.get_cancelled_exc_class():
            await self._terminate(rollout_id)
            raise
        if not finished:
            await self._terminate(rollout_id)
            raise ContainerContractError(
                f"container at {self.url} (GET {state_route}): rollout {rollout_id} did not finish within "
                f"{limit_seconds:g} s and was terminated; raise [gepa] rollout_async_timeout_seconds or "
                "check the container's log",
                url=self.url,
                route=state_route,
                rollout_id=rollout_id,
            )
        record_route = f"/rollouts/{quoted}"
        return self._expect_object(await self._call("GET", record_route), "GET", record_route)

    async def _terminate(self, rollout_id: str) -> None:
        """Best effort: ask the container to stop a rollout we no longer wait for."""
        route = f"/rollouts/{quote(rollout_id, safe='')}/terminate"
        self.stats.terminations += 1
        with anyio.move_on_after(min(self._request_timeout, _TERMINATE_TIMEOUT_SECONDS), shield=True):
            try:
                await self._call("POST", route, body={}, max_attempts=1, allow_not_found=True)
            except ContainerContractError:
                pass

    async def _call(
        self,
        method: str,
        route: str,
        *,
        body: Any = None,
        allow_not_found: bool = False,
        max_attempts: int | None = None,
        attempt_seconds: float | None = None,
    ) -> Any:
        """Send one request with the retry policy; return the parsed JSON body (or ``_NOT_FOUND``).

        ``request_timeout_seconds`` (or ``attempt_seconds``) is a deadline for each attempt as a whole (waiting for a
        pooled connection, connecting, sending and reading the complete body), not only for each read: a container
        that trickles its body cannot hold an attempt past it. An attempt that misses it is a transport failure,
        retried like any. Transport failures that outlast the retries raise
        :class:`~synth_opt.errors.ContainerTransportError`; a reply that was served but is unusable (a
        2xx body that is not JSON or is over ``max_reply_bytes``, another 4xx) raises at once and is not retried.
        """
        attempts = max_attempts or self._retry.max_attempts
        deadline = self._request_timeout if attempt_seconds is None else attempt_seconds
        problem = ""
        status: int | None = None
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self.stats.retries += 1
                await self._sleep(self._retry.delay_before_retry(attempt - 1))
            self.stats.requests += 1
            try:
                if self._plain is not None and on_asyncio() and not self._http.cookies:
                    async with asyncio.timeout(deadline):  # anyio's cancel scope costs a tenth of such a request
                        status, content = await self._exchange_plain(self._plain, method, self._url(route), body)
                else:
                    with anyio.fail_after(deadline):
                        request = self._http.build_request(method, self._url(route), json=body)
                        status, content = await self._exchange(request)
            except httpx.UnsupportedProtocol as exc:
                error = self._error(method, route, f"unsupported URL ({exc})", None, "fix [container] url")
                raise error from None
            except httpx.RequestError as exc:
                problem, status = _describe_transport_error(exc), None
                continue
            except TimeoutError:
                problem, status = f"no complete reply within the request timeout of {deadline:g} s", None
                continue
            if status == 404 and allow_not_found:
                return _NOT_FOUND
            if is_transport_status(status):
                problem = f"HTTP {status}{_body_hint(content)}"
                continue
            if not 200 <= status < 300:
                problem = f"HTTP {status}{_body_hint(content)}"
                raise self._error(method, route, problem, status, _hint_for_status(status))
            if isinstance(content, _TooLarge):
                limit = self._max_reply_bytes
                size = f"{content.size} bytes" if content.size is not None else f"more than {limit} bytes"
                problem = f"HTTP {status} with a body of {size}, over container.max_reply_bytes = {limit}"
                hint = "make the container send less (or raise [container] max_reply_bytes)"
                raise self._error(method, route, problem, status, hint)
            try:
                return decode_reply(content)
            except UnusableBody as exc:
                raise self._error(method, route, f"HTTP {status} with {exc}", status, _REPLY_HINT) from None
        what = f"{problem} (after {attempts} attempt{'s' if attempts != 1 else ''})"
        hint = _TRANSPORT_HINT if status is None else _hint_for_status(status)
        raise self._error(method, route, what, status, hint, transport=True)

    async def _exchange(self, request: httpx.Request) -> tuple[int, bytes | _TooLarge]:
        """Send ``request`` and read its whole body: ``(status, body)``; a body over the limit is not read (nor
        kept): :class:`_TooLarge` with its declared size instead."""
        response = await self._http.send(request, stream=True)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self._max_reply_bytes:
                return response.status_code, _TooLarge(int(declared))
            return response.status_code, await self._decoded_body(response)
        finally:
            await response.aclose()

    async def _decoded_body(self, response: httpx.Response) -> bytes | _TooLarge:
        """The body as httpx decodes it (content codings undone), or :class:`_TooLarge` once it passes the limit."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_reply_bytes:
                return _TooLarge(None)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _exchange_plain(
        self, plain: PlainHttpTransport, method: str, url: httpx.URL, body: Any
    ) -> tuple[int, bytes | _TooLarge]:
        """:meth:`_exchange` on :meth:`PlainHttpTransport.fetch`: the request httpx would write (its headers in
        its order, the body as its ``json=`` encodes it), the reply read whole. A reply that sets a cookie goes to
        the cookie jar (so later requests go through httpx, which sends cookies back), and a compressed body is
        decoded by httpx's decoders, its decoded size held to the limit as well."""
        content = b""
        lines = [method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\nHost: ", url.netloc, b"\r\n"]
        lines.append(self._header_lines)
        if body is not None:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
            lines.append(b"Content-Length: %d\r\nContent-Type: application/json\r\n" % len(content))
        lines.append(b"\r\n")
        reply = await plain.fetch(
            method,
            (url.host, url.port or 80),
            b"".join(lines),
            content,
            phase_seconds=self._request_timeout,
            max_body=self._max_reply_bytes,
        )
        if reply.body is None:
            return reply.status, _TooLarge(reply.declared)
        names = {name.lower() for name, _ in reply.headers}
        if b"set-cookie" in names:
            request = httpx.Request(method, url)
            self._http.cookies.extract_cookies(httpx.Response(reply.status, headers=reply.headers, request=request))
        if b"content-encoding" not in names:
            return reply.status, reply.body
        compressed = httpx.Response(reply.status, headers=reply.headers, stream=httpx.ByteStream(reply.body))
        return reply.status, await self._decoded_body(compressed)

    def _url(self, route: str) -> httpx.URL:
        """The absolute URL of ``route``, parsed once per fixed route (parsing dominates a small request)."""
        url = self._urls.get(route)
        if url is None:
            url = httpx.URL(self._base_url + route + self._query)
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[route] = url
        return url

    def _error(
        self, method: str, route: str, problem: str, status: int | None, hint: str, *, transport: bool = False
    ) -> ContainerContractError:
        kind = ContainerTransportError if transport else ContainerContractError
        return kind(
            f"container at {self.url} failed {method} {route}: {problem}; {hint}",
            url=self.url,
            route=route,
            method=method,
            status=status,
        )

    def _reply_error(self, method: str, route: str, problem: str) -> ContainerContractError:
        return ContainerContractError(
            f"container at {self.url} ({method} {route}) sent an invalid reply: {problem}; {_REPLY_HINT}",
            url=self.url,
            route=route,
        )

    def _expect_object(self, payload: Any, method: str, route: str) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise self._reply_error(method, route, f"expected a JSON object, got {type(payload).__name__}")
        return payload


# ------------------------------------------------------------------------------------------- rollout replies


def _display_url(base_url: str) -> str:
    """The URL as shown in messages: no user info, query or fragment (they may carry secrets)."""
    try:
        url = httpx.URL(base_url)
        return str(url.copy_with(username=None, password=None, query=None, fragment=None))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<invalid container url>"


def _default_transport(url: str, concurrency: int) -> httpx.AsyncBaseTransport | None:
    return None if environment_proxy(url) else container_transport(concurrency, scheme=httpx.URL(url).scheme)


def _describe_transport_error(exc: httpx.RequestError) -> str:
    """The error's name and text, with the operating system's reason when it is buried in the causes (httpx says
    "All connection attempts failed" or nothing where the socket said "Connection refused" or "reset by peer")."""
    text = str(exc).strip()
    reason = _os_reason(exc)
    if reason and reason not in text:
        text = f"{text}: {reason}" if text else reason
    name = type(exc).__name__
    return f"{name} ({clip(text, 200)})" if text else name


def _os_reason(exc: BaseException) -> str | None:
    """The system's text for the error number of the innermost ``OSError`` among the causes of ``exc``."""
    reason = None
    seen: BaseException | None = exc
    for _ in range(16):  # a bounded walk
        if seen is None:
            break
        if isinstance(seen, OSError) and isinstance(seen.errno, int) and seen.errno > 0:
            reason = os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    return reason


def _body_hint(content: bytes | _TooLarge) -> str:
    if isinstance(content, _TooLarge):
        return ""
    text = content[:4096].decode("utf-8", "replace").strip()
    return f" ({clip(' '.join(text.split()), 200)})" if text else ""


def _hint_for_status(status: int) -> str:
    if status in (401, 403):
        return "check [container] headers and auth_bearer_env"
    if status == 404:
        return "the container does not serve this route; check [container] url and the container's routes"
    if status == 429:
        return "the container is rate limiting; lower [gepa.pipeline.workers] rollout or retry later"
    if 300 <= status < 400:
        return "a redirect, which is not followed; set [container] url to the address it leads to"
    if is_transport_status(status):
        return _TRANSPORT_HINT
    return "the container rejected the request; check that it speaks the synth-containers contract (SPEC §4)"


def _preview(ids: Sequence[str], limit: int = 10) -> str:
    if not ids:
        return "none"
    shown = ", ".join(repr(item) for item in ids[:limit])
    return f"[{shown}{', ...' if len(ids) > limit else ''}] ({len(ids)})"
