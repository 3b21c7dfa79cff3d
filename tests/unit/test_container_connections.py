"""The container client's connection pools: requests spread over small pools and are counted until closed."""

from __future__ import annotations

import anyio
import httpx
import pytest

from synth_opt.container.connections import SHARD_CONNECTIONS, ShardedTransport, container_transport


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
