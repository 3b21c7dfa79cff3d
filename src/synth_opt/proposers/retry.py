"""Retrying the transient failures of an OpenAI-compatible HTTP endpoint: bounded, jittered backoff that honours
``Retry-After``.

Retried: HTTP 429, 500, 502, 503 and 504, and connection errors (refused, reset, closed before a reply), none of
which served a reply (so none is billed). Not retried: any other status (the request itself is wrong and would
fail again) and a read timeout (the request may have reached the model). The jitter comes from a generator
seeded by the caller, so a run's sequence of waits is reproducible and nothing but timing depends on it.
"""

from __future__ import annotations

import email.utils
import random
import time
import zlib
from dataclasses import dataclass, field

import httpx

__all__ = [
    "MAX_DELAY_SECONDS",
    "RETRY_STATUSES",
    "Backoff",
    "is_retryable_error",
    "retry_after_seconds",
]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_DELAY_SECONDS = 60.0  # no single wait is longer, whatever Retry-After says

# Connection failures: nothing was served. A read timeout is not one of them.
_RETRY_ERRORS: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def is_retryable_error(error: BaseException) -> bool:
    """True for a connection error that served nothing (refused, reset, closed before a reply)."""
    return isinstance(error, _RETRY_ERRORS)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header as seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(slots=True)
class Backoff:
    """Capped exponential backoff with seeded jitter: attempt ``n`` (0-based) waits between half and all of
    ``base_seconds * 2**n`` (at most ``max_seconds``), or ``Retry-After`` when the server asks for longer (at most
    :data:`MAX_DELAY_SECONDS`)."""

    base_seconds: float = 0.5
    max_seconds: float = 8.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @classmethod
    def for_url(cls, url: str, *, base_seconds: float = 0.5, max_seconds: float = 8.0) -> Backoff:
        """A backoff whose jitter is seeded from ``url`` (the same endpoint waits the same way every run)."""
        return cls(base_seconds=base_seconds, max_seconds=max_seconds, seed=zlib.crc32(url.encode("utf-8")))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * 2.0**attempt)
        wait = ceiling * (0.5 + 0.5 * self._rng.random())
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, MAX_DELAY_SECONDS)
