"""Building endpoint URLs from a configured base URL without losing its query string.

A base URL may carry a query (``https://host/v1?api-version=2024-10-01``, some gateways need one): a route is
appended to its *path*, and the query and fragment stay where they belong.
"""

from __future__ import annotations

import httpx

__all__ = ["join_path"]


def join_path(base_url: str, route: str) -> str:
    """``base_url`` with ``route`` appended to its path (``join_path("http://h/v1?k=1", "models")`` is
    ``http://h/v1/models?k=1``)."""
    url = httpx.URL(base_url)
    return str(url.copy_with(path=url.path.rstrip("/") + "/" + route.lstrip("/")))
