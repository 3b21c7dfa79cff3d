"""A server's address checked before it starts, its start-up failure as one error line, and its connections held
to a deadline.

``synth-opt view``, ``task serve`` and ``gepa service`` run uvicorn, which on a port in use logs a line and exits 3;
these turn that into the CLI's one ``error[...]`` line, naming the flag and the address and saying what to do.

uvicorn closes an idle connection between two requests (its keep-alive timeout), but not one that never finishes
sending a request's headers: a client that opens connections and sends nothing (or a byte now and then) holds a
file descriptor each for good. :func:`server_config` gives every server a protocol that closes a connection whose
request headers have not all arrived ``HEADER_TIMEOUT_SECONDS`` after it opened or after its last reply.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any, Final

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from synth_opt.errors import RunFailedError, UsageError

__all__ = ["HEADER_TIMEOUT_SECONDS", "check_bindable", "serve_until_stopped", "server_config"]

HEADER_TIMEOUT_SECONDS: Final = 30.0


def server_config(
    app: Any, *, host: str, port: int, header_timeout: float = HEADER_TIMEOUT_SECONDS, **options: Any
) -> uvicorn.Config:
    """uvicorn's config for ``app`` on ``host:port`` (``options`` as uvicorn takes them), its connections held to
    ``header_timeout`` for each request's headers."""

    class Deadlined(_HeaderDeadline):
        timeout = header_timeout

    return uvicorn.Config(app, host=host, port=port, http=Deadlined, **options)


class _HeaderDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection that has not sent a whole request head ``timeout`` seconds
    after it opened or after its last reply."""

    timeout: float = HEADER_TIMEOUT_SECONDS
    _deadline: asyncio.TimerHandle | None = None
    _waiting_since: object = None  # the request cycle that was current when the deadline was set

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._disarm()  # the connection is the WebSocket protocol's now
        super().handle_websocket_upgrade(event)

    def _arm(self) -> None:
        self._disarm()
        self._waiting_since = self.cycle
        self._deadline = self.loop.call_later(self.timeout, self._late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _late(self) -> None:
        self._deadline = None
        if self.cycle is self._waiting_since and not self.transport.is_closing():  # no new request began
            self.transport.close()


def check_bindable(host: str, port: int, flag: str) -> None:
    """A UsageError naming ``flag`` (and the address) when a server could not listen on ``host:port`` (a port in use,
    an address this host does not have, a name that does not resolve), found before the server starts, so the
    caller gets one line rather than the server's log and exit code."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as error:
        raise UsageError(f"{flag}: cannot resolve {host!r} ({error}); give an IP address or a host name") from None
    for family, kind, proto, _, address in found:
        shown = f"[{address[0]}]:{port}" if family == socket.AF_INET6 else f"{address[0]}:{port}"
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no use
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise UsageError(
                        f"{flag}: {shown} is already in use (another server listens there); stop that server or "
                        "choose another port"
                    ) from None
                raise UsageError(
                    f"{flag}: cannot listen on {shown} ({error.strerror or error}); choose another address or port"
                ) from None


def serve_until_stopped(start: Callable[[], int], address: str, flag: str) -> int:
    """Run a server (``start``); uvicorn's exit for a server that did not start (code 3: it could not bind, or its
    start-up failed; the reason is the log line above) becomes one error line, exit 1."""
    try:
        return start()
    except SystemExit as stop:
        if stop.code != _UVICORN_STARTUP_FAILURE:
            raise
        raise RunFailedError(
            f"the server on {address} ({flag}) did not start; its reason is logged above; fix it (another port, a "
            "free address) and start it again"
        ) from None


_UVICORN_STARTUP_FAILURE = 3
