"""The queue protocol: what the service and its workers need from a queue backend.

:class:`~synth_opt.service.queue.SqliteRunQueue` is the implementation today; a PostgreSQL one (claims with
``FOR UPDATE SKIP LOCKED``) would be a second class passing the same contract suite
(``tests/unit/test_queue_contract.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["RunQueue"]


@runtime_checkable
class RunQueue(Protocol):
    """What the service and its workers need from a queue backend (SQLite today; PostgreSQL could follow with
    ``FOR UPDATE SKIP LOCKED``). Every method returns plain dicts; ``tests/unit/test_queue_contract.py`` is the
    suite each backend must pass."""

    lease_seconds: float

    def submit(
        self,
        *,
        run_id: str,
        config_path: str,
        run_dir: str | None = None,
        container_url: str | None = None,
        cache_namespace: str | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        fresh: bool = False,
    ) -> dict[str, Any]: ...

    def claim(self, worker_id: str, *, lease_seconds: float | None = None) -> dict[str, Any] | None: ...

    def start(self, request_id: str, lease_token: str | None = None) -> dict[str, Any]: ...

    def heartbeat(self, request_id: str, lease_token: str) -> dict[str, Any]: ...

    def complete(
        self,
        request_id: str,
        *,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        lease_token: str | None = None,
    ) -> dict[str, Any]: ...

    def release(self, request_id: str, lease_token: str, *, reason: str) -> dict[str, Any]: ...

    def recover(self) -> dict[str, Any]: ...

    def cancel(self, request_id: str, *, reason: str = "cancelled by the caller") -> dict[str, Any]: ...

    def get(self, request_id: str) -> dict[str, Any]: ...

    def list_requests(self, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...
