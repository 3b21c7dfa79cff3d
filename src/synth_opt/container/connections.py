"""Connection pools for one container: for ``http://``, :class:`~synth_opt.container.plain_http.PlainHttpTransport`;
for ``https://``, several small httpcore pools instead of one large one.

httpcore's pool (1.0) walks every connection for every queued request each time a request starts or ends (and
checks each connection's socket), so its cost per request grows with the square of the requests in flight: with 16
rollout workers on one pool the pool's bookkeeping took a third of the optimizer process's time (see
``benchmarks/README.md``). :class:`ShardedTransport` spreads requests over small independent pools, a request to the
pool with the fewest requests in flight, so each pool's walk stays short. Which pool a request takes has no effect
on what the run decides. A container reached through a proxy named in the environment (``HTTP_PROXY``,
``HTTPS_PROXY``, ``ALL_PROXY``, not bypassed by ``NO_PROXY``) keeps httpx's own transport, which honours it.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import AsyncIterator, Callable
from http.cookiejar import CookieJar
from typing import Any

import httpx

from synth_opt.container.plain_http import PlainHttpTransport

__all__ = ["SHARD_CONNECTIONS", "ContainerHttpClient", "ShardedTransport", "container_transport", "environment_proxy"]

SHARD_CONNECTIONS = 4  # connections per pool


_CookieTypes = httpx.Cookies | CookieJar | dict[str, str] | list[tuple[str, str]]  # what httpx takes as cookies


class _CookiesWhenSet(httpx.Cookies):
    """A cookie jar that reads a reply only when it sets a cookie."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class ContainerHttpClient(httpx.AsyncClient):
    """httpx's client, but a reply goes to ``http.cookiejar`` only when it sets a cookie: httpx hands it every
    reply, about a tenth of the CPU a small request costs. Cookies a container (or a gateway in front of it) sets
    are still kept and sent back."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._jar = _CookiesWhenSet(super().cookies)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: _CookieTypes) -> None:
        self._jar = _CookiesWhenSet(cookies)


class ShardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over ``shards`` transports made by ``make_shard``: each request goes to the shard with
    the fewest requests in flight (the lowest index on a tie) and counts there until its response is closed.
    ``in_flight`` and ``requests`` (all requests so far) are per shard."""

    def __init__(self, shards: int, make_shard: Callable[[], httpx.AsyncBaseTransport]) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, not {shards}")
        self._shards = [make_shard() for _ in range(shards)]
        self.in_flight = [0] * shards
        self.requests = [0] * shards

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._shards)), key=self.in_flight.__getitem__)
        self.in_flight[index] += 1
        self.requests[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            self.in_flight[index] -= 1
            raise
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):  # every async transport answers with an async body
            self.in_flight[index] -= 1
            raise TypeError(f"{type(self._shards[index]).__name__} returned a synchronous response body")
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Released(stream, lambda: self._release(index)),
            extensions=response.extensions,
        )

    def _release(self, index: int) -> None:
        self.in_flight[index] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _Released(httpx.AsyncByteStream):
    """A response body that calls ``release`` once, when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


def container_transport(concurrency: int, *, scheme: str = "https") -> httpx.AsyncBaseTransport:
    """The transport for ``concurrency`` requests at once to a container reached by ``scheme``: for ``http``, a
    :class:`~synth_opt.container.plain_http.PlainHttpTransport` of as many connections as the pools below would
    hold; otherwise pools of :data:`SHARD_CONNECTIONS` connections sharing one TLS context (loading the certificate
    store takes about 20 ms)."""
    shards = max(1, math.ceil(concurrency / SHARD_CONNECTIONS))
    if scheme == "http":
        return PlainHttpTransport(
            max_connections=shards * SHARD_CONNECTIONS, fallback=lambda: container_transport(concurrency)
        )
    per_shard = httpx.Limits(max_connections=SHARD_CONNECTIONS, max_keepalive_connections=SHARD_CONNECTIONS)
    tls = httpx.create_ssl_context()
    return ShardedTransport(shards, lambda: httpx.AsyncHTTPTransport(verify=tls, limits=per_shard))


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (as httpx would use it), or None."""
    target = httpx.URL(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(target.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(target.host):
        return None
    return proxy
