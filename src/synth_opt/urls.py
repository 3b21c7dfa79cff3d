"""Building endpoint URLs from a configured base URL without losing its query string, and telling a loopback host.

A base URL may carry a query (``https://host/v1?api-version=2024-10-01``, some gateways need one): a route is
appended to its *path*, and the query and fragment stay where they belong.
"""

from __future__ import annotations

import ipaddress

import httpx

__all__ = ["is_loopback", "join_path"]


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def join_path(base_url: str, route: str) -> str:
    """``base_url`` with ``route`` appended to its path (``join_path("http://h/v1?k=1", "models")`` is
    ``http://h/v1/models?k=1``)."""
    url = httpx.URL(base_url)
    return str(url.copy_with(path=url.path.rstrip("/") + "/" + route.lstrip("/")))
