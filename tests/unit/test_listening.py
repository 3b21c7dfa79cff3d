"""The servers' connections are held to a deadline for each request's headers: a client that opens connections and
sends nothing, or half a request head, does not hold them (and their file descriptors) for good. A real uvicorn
server on loopback, configured as ``view``, ``task serve`` and ``gepa service`` configure theirs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import uvicorn

from synth_opt.listening import server_config

DEADLINE = 0.5


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/slow":  # a reply that takes longer than the deadline: the request began, so it stands
        await anyio.sleep(DEADLINE * 3)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = uvicorn.Server(
        server_config(app, host="127.0.0.1", port=0, header_timeout=DEADLINE, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(timeout=10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(DEADLINE * 10)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes the connection (before the socket's own timeout): what was left unread is read."""
    try:
        while data := sock.recv(4096):
            del data
    except TimeoutError:
        return False
    return True


def reply(sock: socket.socket) -> bytes:
    """One whole reply (the app's are 2-byte bodies, "ok"), however the bytes arrive."""
    data = b""
    while not data.endswith(b"\r\n\r\nok"):
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the connection mid-reply: {data!r}"
        data += chunk
    return data


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    with connect(port) as sock:
        assert closed_by_server(sock)


def test_a_connection_that_sends_half_a_request_head_is_closed(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n")  # no blank line: the head never ends
        time.sleep(DEADLINE * 0.6)
        sock.sendall(b"X-Slow: 1\r\n")  # a byte now and then does not keep it open
        assert closed_by_server(sock)


def test_a_whole_request_is_answered_and_a_slow_reply_is_not_cut(port: int) -> None:
    with connect(port) as sock:
        time.sleep(DEADLINE * 0.5)  # a client that takes a moment, but sends its head in time
        sock.sendall(get("/slow"))
        assert reply(sock).startswith(b"HTTP/1.1 200")


def test_after_a_reply_a_half_sent_next_request_is_closed_too(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(get("/"))
        assert reply(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET / HTTP/1.1\r\n")  # the next request's head, never finished
        assert closed_by_server(sock)
