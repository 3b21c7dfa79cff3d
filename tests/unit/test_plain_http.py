"""The plain-HTTP container transport against scripted servers on loopback sockets: keep-alive, the three ways a
body ends, interim replies, a server that closes or lies, limits, timeouts and cancellation; and the container
client's own path over it (the request bytes httpx would write, cookies, compression, limits, retries)."""

from __future__ import annotations

import asyncio
import errno
import gzip
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest

from synth_opt.container.client import ContainerClient, RetryPolicy
from synth_opt.container.plain_http import MAX_HEAD_BYTES, PlainHttpTransport
from synth_opt.errors import ContainerContractError, ContainerTransportError

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Server:
    port: int = 0
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)  # (head, body)
    gate: asyncio.Event = field(default_factory=asyncio.Event)


async def read_request(reader: asyncio.StreamReader, server: Server) -> bool:
    """One request (head and body) into ``server.requests``; False at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return False
    lines = head.lower().split(b"\r\n")
    length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:")), 0)
    if any(line.startswith(b"transfer-encoding:") and b"chunked" in line for line in lines):
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(length)
    server.requests.append((head, body))
    return True


def reply(body: bytes = b"{}", *, status: str = "200 OK", headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{headers}\r\n".encode() + body


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Server]:
    server = Server()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        server.open_now += 1
        server.most_open = max(server.most_open, server.open_now)
        try:
            await handler(reader, writer, server)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            server.open_now -= 1
            writer.close()

    listening = await asyncio.start_server(connected, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield server


@asynccontextmanager
async def client(
    server: Server, *, max_connections: int = 4, seconds: float = 5.0
) -> AsyncIterator[tuple[httpx.AsyncClient, PlainHttpTransport]]:
    transport = PlainHttpTransport(max_connections=max_connections, fallback=httpx.AsyncHTTPTransport)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", transport=transport, timeout=seconds
    ) as http:
        yield http, transport


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (up to 10 s) for ``condition``: the other side's bytes arrive when the event loop gets to them."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"waited 10 s for {what}")


async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
    while await read_request(reader, server):
        writer.write(reply(b'{"n": %d}' % len(server.requests)))
        await writer.drain()


async def test_one_connection_carries_request_after_request() -> None:
    async with serving(keep_answering) as server, client(server) as (http, transport):
        for n in range(1, 21):
            response = await http.post("/rollout", json={"n": n})
            assert response.status_code == 200 and response.json() == {"n": n}
    assert server.connections == 1 and transport.connections_opened == 1
    head, body = server.requests[0]
    assert head.startswith(b"POST /rollout HTTP/1.1\r\n") and b"\r\nhost: 127.0.0.1:" in head.lower()
    assert body == b'{"n":1}'


async def test_a_chunked_reply_with_trailers_is_read_whole_and_the_connection_kept() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await read_request(reader, server):
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b'4;ext=1\r\n{"a"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\nx-trailer: t\r\n\r\n')
            await writer.drain()

    async with serving(chunked) as server, client(server) as (http, transport):
        for _ in range(3):
            assert (await http.get("/health")).json() == {"a": 1}
    assert transport.connections_opened == 1


async def test_a_reply_ended_by_closing_is_read_to_the_end_and_its_connection_not_kept() -> None:
    async def close_ends_it(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await read_request(reader, server)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + b"x" * 200_000)
        await writer.drain()

    async with serving(close_ends_it) as server, client(server) as (http, transport):
        for _ in range(2):
            assert (await http.get("/big")).content == b"x" * 200_000
    assert server.connections == 2 and transport.connections_opened == 2


async def test_a_connection_the_server_closed_while_idle_is_not_used_again() -> None:
    async def one_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await read_request(reader, server)
        writer.write(reply())  # keep-alive by default, but the server closes it once the reply is out
        await writer.drain()

    async with serving(one_each) as server, client(server) as (http, transport):
        for _ in range(3):
            assert (await http.get("/health")).status_code == 200
            await until(lambda: transport.idle_connections == 0, "the server's close")  # arrives while idle
    assert transport.connections_opened == 3


async def test_a_connection_with_stray_bytes_while_idle_is_not_used_again() -> None:
    async def extra(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await read_request(reader, server):
            writer.write(reply() + b"garbage")
            await writer.drain()

    async with serving(extra) as server, client(server) as (http, transport):
        for _ in range(2):
            assert (await http.get("/health")).status_code == 200
            await until(lambda: transport.idle_connections == 0, "the stray bytes")
    assert transport.connections_opened == 2


@pytest.mark.parametrize(
    ("sent", "error", "words"),
    [
        (b"", httpx.RemoteProtocolError, "without sending a reply"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}", httpx.RemoteProtocolError, "8 bytes before the end"),
        (b"SMTP ready\r\n\r\n", httpx.RemoteProtocolError, "not an HTTP/1.1 status line"),
        (b"HTTP/1.1 200 OK\r\n folded\r\n\r\n", httpx.RemoteProtocolError, "malformed reply header line"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\n{}", httpx.RemoteProtocolError, "unusable Content-Length"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", httpx.RemoteProtocolError, "chunk size"),
        (b"HTTP/1.1 200 OK\r\nx: " + b"a" * (MAX_HEAD_BYTES + 10), httpx.RemoteProtocolError, "over 65536 bytes"),
    ],
)
async def test_a_reply_that_breaks_off_or_is_not_http_is_a_protocol_error(
    sent: bytes, error: type[Exception], words: str
) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await read_request(reader, server)
        writer.write(sent)
        await writer.drain()

    async with serving(broken) as server, client(server) as (http, _):
        with pytest.raises(error, match=words):
            await http.get("/health")


async def test_a_refused_connection_is_a_connect_error_with_the_os_reason_as_its_cause() -> None:
    async with serving(keep_answering) as server:
        port = server.port
    async with client(Server(port=port)) as (http, _):
        with pytest.raises(httpx.ConnectError) as caught:
            await http.get("/health")
    cause = caught.value.__cause__
    assert isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
    assert not str(caught.value).startswith("[Errno")


async def test_a_reset_connection_is_a_read_error() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await read_request(reader, server)
        writer.transport.abort()  # RST when data is unread; a plain close otherwise: both end the reply

    async with serving(reset) as server, client(server) as (http, _):
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await http.post("/rollout", json={"x": "y" * 100})


async def test_a_server_that_never_answers_is_a_read_timeout_and_frees_its_connection() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await read_request(reader, server):
            if len(server.requests) > 1:
                writer.write(reply())
                await writer.drain()

    async with serving(silent) as server, client(server, max_connections=1, seconds=0.2) as (http, transport):
        with pytest.raises(httpx.ReadTimeout, match=r"no reply bytes within 0\.2 s"):
            await http.get("/health")
        assert (await http.get("/health")).status_code == 200  # the one slot is free again, on a new connection
    assert transport.connections_opened == 2


async def test_interim_replies_are_skipped() -> None:
    async def continues(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await read_request(reader, server):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + reply(b'{"ok": true}'))
            await writer.drain()

    async with serving(continues) as server, client(server) as (http, transport):
        assert (await http.post("/rollout", json={})).json() == {"ok": True}
        assert (await http.post("/rollout", json={})).json() == {"ok": True}
    assert transport.connections_opened == 1


async def test_no_more_than_max_connections_are_open_at_once() -> None:
    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await read_request(reader, server):
            await server.gate.wait()
            writer.write(reply())
            await writer.drain()

    async with serving(held) as server, client(server, max_connections=2) as (http, _):
        statuses: list[int] = []

        async def one() -> None:
            statuses.append((await http.get("/slow")).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
            await until(lambda: len(server.requests) == 2, "two requests at the server")
            await asyncio.sleep(0.1)
            assert server.open_now == 2 and len(server.requests) == 2  # three requests wait for a connection
            server.gate.set()
    assert statuses == [200] * 5 and server.most_open == 2


async def test_a_body_left_unread_closes_its_connection() -> None:
    async def head_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await read_request(reader, server):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)  # the body follows once the client has given up on it
            writer.write(b"{}")
            await writer.drain()

    async with serving(head_first) as server, client(server) as (http, transport):
        async with http.stream("GET", "/big") as response:
            assert response.status_code == 200  # closed without reading the body
        assert (await http.get("/health")).status_code == 200
    assert transport.connections_opened == 2


async def test_a_cancelled_request_frees_its_slot_and_drops_its_connection() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await read_request(reader, server):
            if len(server.requests) == 1:
                await asyncio.sleep(0.5)
            writer.write(reply())
            await writer.drain()

    async with serving(slow) as server, client(server, max_connections=1) as (http, transport):
        async with anyio.create_task_group() as group:
            group.start_soon(http.get, "/slow")
            await until(lambda: len(server.requests) == 1, "the request at the server")
            group.cancel_scope.cancel()  # while it waits for the reply
        assert (await http.get("/health")).status_code == 200
    assert transport.connections_opened == 2


async def test_a_streamed_request_body_goes_chunked_and_a_compressed_reply_is_decoded() -> None:
    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await read_request(reader, server):
            writer.write(reply(gzip.compress(b'{"z": 1}'), headers="content-encoding: gzip\r\n"))
            await writer.drain()

    async def parts() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"cd"

    async with serving(gzipped) as server, client(server) as (http, _):
        response = await http.post("/rollout", content=parts())
        assert response.json() == {"z": 1}
    head, body = server.requests[0]
    assert b"transfer-encoding: chunked" in head.lower() and body == b"abcd"


async def test_https_goes_to_the_fallback_transport() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(204)

    def fallback() -> httpx.AsyncBaseTransport:
        return httpx.MockTransport(answer)

    transport = PlainHttpTransport(max_connections=1, fallback=fallback)
    async with httpx.AsyncClient(transport=transport) as http:
        assert (await http.get("https://example.invalid/health")).status_code == 204
    assert seen == ["https://example.invalid/health"] and transport.connections_opened == 0


def test_max_connections_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_connections must be at least 1"):
        PlainHttpTransport(max_connections=0, fallback=httpx.AsyncHTTPTransport)


# ------------------------------------------------------------------- the container client's own path over it
# A ContainerClient on this transport writes its requests and reads its replies without httpx's objects, until a
# container sets a cookie (then httpx's client, which sends cookies back).

CHECKED = b'{"status": "ok", "checks": []}'


@asynccontextmanager
async def container_client(
    server: Server, *, max_connections: int = 4, **kwargs: Any
) -> AsyncIterator[tuple[ContainerClient, PlainHttpTransport]]:
    transport = PlainHttpTransport(max_connections=max_connections, fallback=httpx.AsyncHTTPTransport)
    kwargs.setdefault("retry", RetryPolicy(max_attempts=2, base_delay_seconds=0.0))
    url = f"http://127.0.0.1:{server.port}/api?code=k9"
    async with ContainerClient(url, transport=transport, **kwargs) as container:
        yield container, transport


def answering(body: bytes, headers: str = "") -> Handler:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await read_request(reader, server):
            writer.write(reply(body, headers=headers))
            await writer.drain()

    return answer


async def test_the_client_writes_what_httpx_writes_and_keeps_one_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="httpx")  # httpx's client logs each request it sends
    sent: dict[str, list[tuple[bytes, bytes]]] = {}
    logged: dict[str, int] = {}
    for path in ("plain", "httpx"):
        caplog.clear()
        async with serving(answering(CHECKED)) as server:
            async with container_client(server, headers={"X-Team": "opt"}, bearer_token="tok") as (client, transport):
                if path == "httpx":
                    client._http.cookies.set("pinned", "1")  # as if the container had set one
                for _ in range(3):
                    assert await client.health() == {"status": "ok", "checks": []}
                assert await client.check({"type": "offline", "note": "é", "x": 1.5}) is not None
            assert transport.connections_opened == 1 and server.connections == 1
            logged[path] = sum(record.name == "httpx" for record in caplog.records)
            port = str(server.port).encode()
            sent[path] = [(head.replace(port, b"PORT"), body) for head, body in server.requests]

    def without_cookie(head: bytes) -> list[bytes]:
        return [line for line in head.split(b"\r\n") if not line.lower().startswith(b"cookie:")]

    assert logged == {"plain": 0, "httpx": 4}
    plain, through_httpx = sent["plain"], sent["httpx"]
    assert [without_cookie(head) for head, _ in plain] == [without_cookie(head) for head, _ in through_httpx]
    assert [body for _, body in plain] == [body for _, body in through_httpx]
    assert plain[0][0].startswith(b"GET /api/health?code=k9 HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n")
    assert b"\r\nauthorization: Bearer tok\r\n" in plain[0][0] and b"\r\nX-Team: opt\r\n" in plain[0][0]
    assert plain[-1][1] == '{"policy":{"type":"offline","note":"é","x":1.5}}'.encode()
    assert b"cookie" not in plain[0][0].lower() and b"cookie: pinned=1" in through_httpx[0][0].lower()


async def test_a_cookie_a_container_sets_is_sent_back() -> None:
    async with serving(answering(CHECKED, "set-cookie: lane=7; Path=/\r\n")) as server:
        async with container_client(server) as (client, _):
            await client.health()
            await client.health()
    assert b"cookie" not in server.requests[0][0].lower()
    assert b"\r\ncookie: lane=7\r\n" in server.requests[1][0].lower()


async def test_a_compressed_reply_is_decoded_and_its_decoded_size_held_to_the_limit() -> None:
    packed = gzip.compress(b'{"status": "ok", "pad": "' + b"x" * 5000 + b'"}')
    async with serving(answering(packed, "content-encoding: gzip\r\n")) as server:
        async with container_client(server) as (client, _):
            assert (await client.health())["pad"] == "x" * 5000
        async with container_client(server, max_reply_bytes=1000) as (client, _):
            with pytest.raises(ContainerContractError, match=r"more than 1000 bytes, over container\.max_reply_bytes"):
                await client.health()
    assert len(packed) < 1000


async def test_a_body_declared_over_the_limit_is_not_read_and_its_connection_dropped() -> None:
    big = b'{"pad": "' + b"x" * 5000 + b'"}'
    async with serving(answering(big)) as server, container_client(server, max_reply_bytes=1000) as (client, tr):
        for _ in range(2):
            with pytest.raises(ContainerContractError, match=f"a body of {len(big)} bytes, over container.max_reply"):
                await client.health()
        assert tr.connections_opened == 2 and tr.idle_connections == 0


async def test_a_silent_container_costs_the_request_timeout_per_attempt_and_frees_the_connection() -> None:
    async def silent_at_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await read_request(reader, server):
            if len(server.requests) > 2:
                writer.write(reply(CHECKED))
                await writer.drain()

    async with serving(silent_at_first) as server:
        async with container_client(server, max_connections=1, request_timeout_seconds=0.2) as (client, transport):
            with pytest.raises(ContainerTransportError) as caught:
                await client.health()
            assert await client.health() == {"status": "ok", "checks": []}
    assert "no complete reply within the request timeout of 0.2 s (after 2 attempts)" in caught.value.message
    assert transport.connections_opened == 3 and client.stats.retries == 1


async def test_a_cancelled_call_frees_its_connection_slot() -> None:
    async def slow_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await read_request(reader, server):
            if len(server.requests) == 1:
                await asyncio.sleep(0.5)
            writer.write(reply(CHECKED))
            await writer.drain()

    async with serving(slow_first) as server, container_client(server, max_connections=1) as (client, transport):
        async with anyio.create_task_group() as group:
            group.start_soon(client.health)
            await until(lambda: len(server.requests) == 1, "the request at the server")
            group.cancel_scope.cancel()
        with anyio.fail_after(5):
            assert await client.health() == {"status": "ok", "checks": []}
    assert transport.connections_opened == 2


async def test_a_reply_broken_off_is_retried_and_a_reply_that_is_not_http_is_a_transport_failure() -> None:
    async def breaks_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await read_request(reader, server):
            if len(server.requests) == 1:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n{")
                await writer.drain()
                return
            writer.write(reply(CHECKED) if len(server.requests) == 2 else b"SMTP ready\r\n\r\n")
            await writer.drain()

    async with serving(breaks_once) as server, container_client(server) as (client, _):
        assert await client.health() == {"status": "ok", "checks": []}
        assert client.stats.retries == 1
        with pytest.raises(ContainerTransportError, match=r"RemoteProtocolError .*not an HTTP/1\.1 status line"):
            await client.health()
