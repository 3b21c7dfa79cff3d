"""A server's address checked before it starts, and its start-up failure as one error line.

``synth-opt view``, ``task serve`` and ``gepa service`` run uvicorn, which on a port in use logs a line and exits 3;
these turn that into the CLI's one ``error[...]`` line, naming the flag and the address and saying what to do.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

from synth_opt.errors import RunFailedError, UsageError

__all__ = ["check_bindable", "serve_until_stopped"]


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
