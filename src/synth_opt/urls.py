"""Building endpoint URLs from a configured base URL without losing its query string, and telling a loopback host.

A base URL may carry a query (``https://host/v1?api-version=2024-10-01``, some gateways need one): a route is
appended to its *path*, and the query and fragment stay where they belong.
"""

from __future__ import annotations

import ipaddress
import os

import httpx

from synth_opt.errors import ConfigError

__all__ = ["is_loopback", "join_path", "serving_token"]


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serving_token(host: str, token_env: str | None, *, flag: str, shown: str) -> str | None:
    """The bearer token a server bound to ``host`` requires: read from the variable ``token_env`` names (set and
    not empty), or None on a loopback host. Binding beyond loopback without one is a :class:`ConfigError` naming
    ``flag`` (``--bind`` or ``--host``, whose value is ``shown``)."""
    token = None
    if token_env is not None:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise ConfigError(
                f"--token-env {token_env}: the environment variable {token_env} is unset or empty; export the bearer "
                "token in it",
                field="--token-env",
            )
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"{flag} {shown}: {host} is not a loopback address, and serving elsewhere needs a bearer token; put one "
            "in an environment variable and pass --token-env NAME, or use 127.0.0.1",
            field=flag,
        )
    return token


def join_path(base_url: str, route: str) -> str:
    """``base_url`` with ``route`` appended to its path (``join_path("http://h/v1?k=1", "models")`` is
    ``http://h/v1/models?k=1``)."""
    url = httpx.URL(base_url)
    return str(url.copy_with(path=url.path.rstrip("/") + "/" + route.lstrip("/")))
