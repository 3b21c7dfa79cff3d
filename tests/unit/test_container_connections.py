"""The container client's connection pools: requests spread over small pools and are counted until closed."""

from __future__ import annotations

import anyio
import anyio.abc
import httpx
import pytest

from synth_opt.container.client import ContainerClient
from synth_opt.container.connections import (
    SHARD_CONNECTIONS,
    ShardedTransport,
    container_transport,
    environment_proxy,
)
from synth_opt.container.plain_http import PlainHttpTransport


class Gate:
    """Mock shards whose responses wait until the test opens the gate; each shard answers with its number."""

    def __init__(self) -> None:
        self.open = anyio.Event()
        self.made = 0

    def make(self) -> httpx.AsyncBaseTransport:
        number = self.made
        self.made += 1

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/boom":
                raise httpx.ConnectError("refused", request=request)
            await self.open.wait()
            return httpx.Response(200, json={"shard": number})

        return httpx.MockTransport(handler)


@pytest.mark.anyio
async def test_requests_go_to_the_least_busy_shard_and_are_released_when_read() -> None:
    gate = Gate()
    transport = ShardedTransport(3, gate.make)
    answers: list[int] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://container") as client:

        async def get() -> None:
            answers.append((await client.get("/rollout")).json()["shard"])

        async with anyio.create_task_group() as group:
            for _ in range(7):
                group.start_soon(get)
            await anyio.wait_all_tasks_blocked()
            assert transport.in_flight == [3, 2, 2]  # 0, 1, 2, 0, 1, 2, 0: the fewest first, ties to the lowest
            gate.open.set()
        assert sorted(answers) == [0, 0, 0, 1, 1, 2, 2]
        assert transport.in_flight == [0, 0, 0]
        assert transport.requests == [3, 2, 2]
        await client.get("/rollout")
        assert transport.requests == [4, 2, 2]  # all idle again: the first shard


@pytest.mark.anyio
async def test_a_failed_request_is_released() -> None:
    gate = Gate()
    transport = ShardedTransport(2, gate.make)
    async with httpx.AsyncClient(transport=transport, base_url="http://container") as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/boom")
        assert transport.in_flight == [0, 0]


@pytest.mark.anyio
async def test_a_streamed_response_counts_until_it_is_closed() -> None:
    gate = Gate()
    gate.open.set()
    transport = ShardedTransport(2, gate.make)
    async with httpx.AsyncClient(transport=transport, base_url="http://container") as client:
        async with client.stream("GET", "/rollout") as response:
            assert transport.in_flight == [1, 0]
            assert (await response.aread()) == b'{"shard":0}'
        assert transport.in_flight == [0, 0]


def test_pools_are_sized_for_the_concurrency() -> None:
    for concurrency, shards in ((1, 1), (SHARD_CONNECTIONS, 1), (SHARD_CONNECTIONS + 1, 2), (20, 5)):
        transport = container_transport(concurrency)
        assert isinstance(transport, ShardedTransport)
        assert len(transport.in_flight) == shards
    with pytest.raises(ValueError, match="shards must be at least 1"):
        ShardedTransport(0, Gate().make)
    plain = container_transport(SHARD_CONNECTIONS + 1, scheme="http")  # as many connections as those pools hold
    assert isinstance(plain, PlainHttpTransport) and plain.max_connections == 2 * SHARD_CONNECTIONS


def clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_the_proxy_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxies(monkeypatch)
    assert environment_proxy("http://10.0.0.5:8931") is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert environment_proxy("http://10.0.0.5:8931") == "http://proxy.internal:3128"
    assert environment_proxy("https://10.0.0.5:8931") is None  # no HTTPS_PROXY
    assert environment_proxy("http://127.0.0.1:8931") is None  # bypassed
    monkeypatch.setenv("ALL_PROXY", "http://all.internal:3128")
    assert environment_proxy("https://10.0.0.5:8931") == "http://all.internal:3128"


@pytest.mark.anyio
async def test_a_container_behind_an_environment_proxy_is_reached_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain HTTP proxy on loopback answers for a container address nothing listens on."""
    seen: list[bytes] = []

    async def proxy(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                head += await stream.receive()
            seen.append(head.split(b"\r\n", 1)[0])
            body = b'{"status": "ok"}'
            reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
            await stream.send(reply + body)

    clear_proxies(monkeypatch)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, proxy)
        async with ContainerClient("http://192.0.2.1:8931", request_timeout_seconds=5) as client:
            assert await client.health() == {"status": "ok"}
        group.cancel_scope.cancel()
    assert seen == [b"GET http://192.0.2.1:8931/health HTTP/1.1"]
