"""An httpx transport for plain ``http://`` containers: HTTP/1.1 keep-alive connections of its own.

A container is usually a process on the same machine or network, spoken to in small JSON requests, thousands of them
a run. httpx's own transport (httpcore, with h11 parsing each message and a pool that re-checks every connection
for every request) spends about 1.2 ms of CPU on each such request; this one, a pool of keep-alive connections on
asyncio protocols, about 0.4 ms (``benchmarks/README.md``, "The container client's transport"). In a run of a few
thousand rollouts on two cores that is the difference between an optimizer process that waits on its container
and one that keeps it waiting.

Only what a container exchange needs: HTTP/1.1 requests (a body sent whole, or chunked when the request streams
one), and replies framed by ``Content-Length``, by chunked transfer coding, or by the end of the connection;
interim ``1xx`` replies are skipped. A connection is used again when its reply was read to the end and neither
side asked to close it; a connection the server closed (or sent stray bytes on) while idle is dropped, not used.
At most ``max_connections`` requests are in flight at once; more wait for a connection. Failures are httpx's
errors (``ConnectError``, ``ReadError``, ``WriteError``, ``RemoteProtocolError``, the timeouts of the request's
``timeout`` extension), with the operating system's error as the cause, so the client treats them like
httpcore's. ``https`` (and any event loop other than asyncio's) goes to the ``fallback`` transport.

:meth:`PlainHttpTransport.fetch` is the same exchange without httpx's request and response objects: the
container client writes the request httpx would write and gets the reply read whole, which takes about a third off
the client's CPU per rollout (``benchmarks/README.md``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final

import httpx

__all__ = ["MAX_HEAD_BYTES", "PlainHttpTransport", "Reply", "on_asyncio"]

MAX_HEAD_BYTES: Final = 64 * 1024
"""A reply's status line and headers (or one chunk-size line) longer than this are a protocol error."""

_READ_SIZE: Final = 64 * 1024  # the most one body chunk yields
_PAUSE_ABOVE: Final = 256 * 1024  # unread bytes at which the socket stops being read (a body read slowly)
_NO_BODY_STATUS: Final = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply read by :meth:`PlainHttpTransport.fetch`: its status, its headers as sent, and its body (``None``
    when it passed the limit and was not read; ``declared`` is then its ``Content-Length``, if it had one)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes | None
    declared: int | None = None


class PlainHttpTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=PlainHttpTransport(max_connections=8, fallback=...))``: see the module."""

    def __init__(self, *, max_connections: int, fallback: Callable[[], httpx.AsyncBaseTransport]) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        self.max_connections = max_connections
        self.connections_opened = 0
        """Connections made so far (observability: how often a connection was used again)."""
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._make_fallback = fallback
        self._fallback: httpx.AsyncBaseTransport | None = None
        self._closed = False

    @property
    def idle_connections(self) -> int:
        """Connections waiting for a request that are still fit to carry one."""
        return sum(connection.idle_and_open for idle in self._idle.values() for connection in idle)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http" or not on_asyncio():
            if self._fallback is None:
                self._fallback = self._make_fallback()
            return await self._fallback.handle_async_request(request)
        slots = await self._turn()
        origin = (request.url.host, request.url.port or 80)
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        if b"chunked" in request.headers.get("transfer-encoding", "").encode("latin-1").lower():
            body = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
        opened: list[_Connection] = []
        try:
            connection = self._idle_connection(origin) or await self._connect(origin, timeouts.get("connect"), request)
            opened.append(connection)
            await connection.send(_head(request), body, request, timeouts.get("write"))
            version, status, reason, headers, framing, keep_alive = await _reply_head(
                connection, request.method, request, timeouts.get("read")
            )
        except BaseException:
            for connection in opened:
                connection.abort()
            slots.release()
            raise
        stream = _Body(connection, framing, keep_alive, request, timeouts.get("read"))
        stream.on_close = lambda reusable: self._release(origin, connection, reusable, slots)
        extensions = {"http_version": version, "reason_phrase": reason}
        return httpx.Response(status, headers=headers, stream=stream, extensions=extensions, request=request)

    async def fetch(
        self, method: str, origin: tuple[str, int], head: bytes, body: bytes, *, phase_seconds: float, max_body: int
    ) -> Reply:
        """One exchange without httpx's request and response objects (what a container client sends most): the
        request's ``head`` (request line and headers, ``Host`` and ``Content-Length`` included) and ``body`` to
        ``origin``; the reply read whole, unless its body passes ``max_body`` bytes (then the rest is not read and
        the connection is dropped). ``phase_seconds`` bounds connecting, sending and each wait for reply bytes; the
        errors are :meth:`handle_async_request`'s (with no request attached). Only for ``http`` on asyncio."""
        slots = await self._turn()
        connection: _Connection | None = None
        reusable = False
        try:
            connection = self._idle_connection(origin) or await self._connect(origin, phase_seconds, None)
            await connection.send(head, body, None, phase_seconds)
            _, status, _, headers, framing, keep_alive = await _reply_head(connection, method, None, phase_seconds)
            length = framing.remaining if isinstance(framing, _Length) else None
            if length is not None and length > max_body:
                return Reply(status, headers, None, length)
            chunks: list[bytes] = []
            size = 0
            while not framing.done:
                data = await framing.read(connection, None, phase_seconds)
                size += len(data)
                if size > max_body:
                    return Reply(status, headers, None, None)
                chunks.append(data)
            reusable = keep_alive
            return Reply(status, headers, b"".join(chunks), None)
        finally:
            if connection is None:
                slots.release()
            else:
                self._release(origin, connection, reusable, slots)

    async def _turn(self) -> asyncio.Semaphore:
        """Wait for a request's turn (at most ``max_connections`` at once); the semaphore to release after it."""
        if self._closed:
            raise RuntimeError("the transport is closed")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_connections)
        slots = self._slots
        await slots.acquire()
        return slots

    def _idle_connection(self, origin: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.idle_and_open:
                return connection
            connection.abort()
        return None

    async def _connect(
        self, origin: tuple[str, int], limit: float | None, request: httpx.Request | None
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(limit):
                _, connection = await loop.create_connection(_Connection, *origin)
        except TimeoutError:
            message = f"no connection to {origin[0]}:{origin[1]} within {limit:g} s"
            raise httpx.ConnectTimeout(message, request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(_text(exc), request=request) from exc
        self.connections_opened += 1
        return connection

    def _release(
        self, origin: tuple[str, int], connection: _Connection, reusable: bool, slots: asyncio.Semaphore
    ) -> None:
        if reusable and not self._closed and connection.idle_and_open:
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection.abort()
        slots.release()

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()
        if self._fallback is not None:
            await self._fallback.aclose()


def _head(request: httpx.Request) -> bytes:
    target = request.url.raw_path or b"/"
    lines = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        lines += [name, b": ", value, b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines)


def on_asyncio() -> bool:
    """Whether this runs in an asyncio event loop (the transport's own path needs one; trio goes to httpx)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _reply_head(
    connection: _Connection, method: str, request: httpx.Request | None, limit: float | None
) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]], _Framing, bool]:
    """The reply's head (after any interim ``1xx`` ones): its version, status, reason and headers, how its body is
    framed and whether the connection may carry another request after it."""
    while True:
        head = await connection.read_until(b"\r\n\r\n", request, limit, before_reply=True)
        version, status, reason, headers = _parse_head(head, request)
        if not 100 <= status < 200 or status == 101:
            break
    names = {name.lower(): value for name, value in headers}
    keep_alive = version == b"HTTP/1.1" and b"close" not in names.get(b"connection", b"").lower()
    if status == 101:  # switching protocols, never asked for: nothing more to read as HTTP
        framing: _Framing = _Length(0)
        keep_alive = False
    elif method == "HEAD" or status in _NO_BODY_STATUS:
        framing = _Length(0)
    elif b"chunked" in names.get(b"transfer-encoding", b"").lower():
        framing = _Chunks()
    elif b"content-length" in names:
        framing = _Length(_content_length(headers, request))
    else:
        framing, keep_alive = _UntilClose(), False
    return version, status, reason, headers, framing, keep_alive


def _parse_head(head: bytes, request: httpx.Request | None) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise httpx.RemoteProtocolError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}", request=request)
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():  # (a folded line starts with whitespace)
            raise httpx.RemoteProtocolError(f"malformed reply header line: {line[:80]!r}", request=request)
        headers.append((name, value.strip()))
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else b"", headers


def _content_length(headers: list[tuple[bytes, bytes]], request: httpx.Request | None) -> int:
    values = {
        part.strip() for name, value in headers if name.lower() == b"content-length" for part in value.split(b",")
    }
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise httpx.RemoteProtocolError(f"unusable Content-Length {sorted(values)!r}", request=request)
    return int(next(iter(values)))


class _Framing:
    """How a body ends; ``read`` gives its next bytes (b"" once it has ended)."""

    done = False

    async def read(self, connection: _Connection, request: httpx.Request | None, limit: float | None) -> bytes:
        raise NotImplementedError


class _Length(_Framing):
    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.done = remaining == 0

    async def read(self, connection: _Connection, request: httpx.Request | None, limit: float | None) -> bytes:
        if self.remaining == 0:
            self.done = True
            return b""
        data = await connection.read_some(min(self.remaining, _READ_SIZE), request, limit)
        if not data:
            raise httpx.RemoteProtocolError(
                f"the server closed the connection {self.remaining} bytes before the end of the body", request=request
            )
        self.remaining -= len(data)
        self.done = self.remaining == 0
        return data


class _Chunks(_Framing):
    def __init__(self) -> None:
        self.remaining = 0  # of the current chunk

    async def read(self, connection: _Connection, request: httpx.Request | None, limit: float | None) -> bytes:
        while not self.done:
            if self.remaining:
                data = await connection.read_some(min(self.remaining, _READ_SIZE), request, limit)
                if not data:
                    raise httpx.RemoteProtocolError("the server closed the connection inside a chunk", request=request)
                self.remaining -= len(data)
                if not self.remaining:
                    await self._line(connection, request, limit, expect_empty=True)
                return data
            size_line = await self._line(connection, request, limit)
            size = size_line.split(b";", 1)[0].strip()
            try:
                self.remaining = int(size, 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"malformed chunk size {size_line[:40]!r}", request=request) from None
            if self.remaining == 0:
                while await self._line(connection, request, limit):  # trailers, up to the empty line
                    pass
                self.done = True
        return b""

    @staticmethod
    async def _line(
        connection: _Connection, request: httpx.Request | None, limit: float | None, *, expect_empty: bool = False
    ) -> bytes:
        line = (await connection.read_until(b"\r\n", request, limit))[:-2]
        if expect_empty and line:
            raise httpx.RemoteProtocolError("a chunk longer than its size", request=request)
        return line


class _UntilClose(_Framing):
    async def read(self, connection: _Connection, request: httpx.Request | None, limit: float | None) -> bytes:
        data = await connection.read_some(_READ_SIZE, request, limit)
        self.done = not data
        return data


class _Body(httpx.AsyncByteStream):
    """A reply's body, read as it is iterated; closing it gives the connection back (``on_close(reusable)``), to
    be used again only when the body was read to its end."""

    def __init__(
        self,
        connection: _Connection,
        framing: _Framing,
        keep_alive: bool,
        request: httpx.Request,
        limit: float | None,
    ) -> None:
        self._connection = connection
        self._framing = framing
        self._keep_alive = keep_alive
        self._request = request
        self._limit = limit
        self.on_close: Callable[[bool], None] | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self._framing.done:
            data = await self._framing.read(self._connection, self._request, self._limit)
            if data:
                yield data

    async def aclose(self) -> None:
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close(self._keep_alive and self._framing.done)


class _Connection(asyncio.Protocol):
    """One TCP connection: the bytes received and not yet read, and a waiter woken when more arrive or it ends."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._ended = False  # the server sent EOF or the connection is lost
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._paused_writing = False
        self._drained: asyncio.Future[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _PAUSE_ABOVE and not self._paused_reading and self._transport is not None:
            self._paused_reading = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._ended = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._error = exc
        self._wake()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._wake_writer()

    # use

    @property
    def idle_and_open(self) -> bool:
        """Nothing unread, not ended: fit to carry the next request."""
        transport = self._transport
        return not self._buffer and not self._ended and transport is not None and not transport.is_closing()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def send(self, head: bytes, body: bytes, request: httpx.Request | None, limit: float | None) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or self._ended:
            raise httpx.WriteError("the connection is closed", request=request)
        transport.write(head + body if len(body) < _READ_SIZE else head)
        if len(body) >= _READ_SIZE:
            transport.write(body)
        if self._paused_writing:
            try:
                async with asyncio.timeout(limit):
                    while self._paused_writing and not self._ended:
                        self._drained = asyncio.get_running_loop().create_future()
                        await self._drained
            except TimeoutError:
                raise httpx.WriteTimeout(f"the request was not sent within {limit:g} s", request=request) from None
        if self._ended and self._error is not None:
            raise httpx.WriteError(_text(self._error), request=request) from self._error

    async def read_until(
        self, separator: bytes, request: httpx.Request | None, limit: float | None, *, before_reply: bool = False
    ) -> bytes:
        start = 0
        while True:
            found = self._buffer.find(separator, start)
            if found >= 0:
                return self._take(found + len(separator))
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError(
                    f"a reply head (or chunk-size line) over {MAX_HEAD_BYTES} bytes", request=request
                )
            if self._ended:
                if before_reply and not self._buffer:
                    self._raise_ended(request, "the server closed the connection without sending a reply")
                self._raise_ended(request, "the server closed the connection in the middle of a reply head")
            start = max(0, len(self._buffer) - len(separator) + 1)
            await self._wait(request, limit)

    async def read_some(self, most: int, request: httpx.Request | None, limit: float | None) -> bytes:
        """Up to ``most`` bytes, waiting for some; b"" once the server has closed the connection cleanly."""
        while not self._buffer:
            if self._ended:
                if self._error is not None:
                    self._raise_ended(request, "")
                return b""
            await self._wait(request, limit)
        return self._take(min(most, len(self._buffer)))

    def _take(self, count: int) -> bytes:
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        if self._paused_reading and len(self._buffer) <= _PAUSE_ABOVE // 2 and self._transport is not None:
            self._paused_reading = False
            self._transport.resume_reading()
        return data

    def _raise_ended(self, request: httpx.Request | None, message: str) -> None:
        if self._error is not None:
            raise httpx.ReadError(_text(self._error), request=request) from self._error
        raise httpx.RemoteProtocolError(message, request=request)

    async def _wait(self, request: httpx.Request | None, limit: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        expiry = None if limit is None else loop.call_later(limit, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            raise httpx.ReadTimeout(f"no reply bytes within {limit:g} s", request=request) from None
        finally:
            self._waiter = None
            if expiry is not None:
                expiry.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _text(exc: BaseException) -> str:
    """An error's own words: an ``OSError``'s text without its ``[Errno n]`` prefix."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
