"""The service process's own worker: claims and runs requests one at a time, until told to stop.

``POST /worker/run-next`` and the background loop share one lock, so a service process never runs two requests at
once. Shutdown is graceful: stop claiming, ask the running request to stop (its lease is released, so it is queued
again and resumes later), wait up to a grace period, and only then tear the run down (the lease is still released).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from synth_opt.errors import LeaseLostError
from synth_opt.logs import get_logger
from synth_opt.service.confine import Confinement
from synth_opt.service.queue import AsyncRunQueue, RunRequest
from synth_opt.service.worker import Execution, execute_claimed

__all__ = ["ServiceWorker"]

_log = get_logger("synth_opt.service")


class ServiceWorker:
    def __init__(
        self,
        queue: AsyncRunQueue,
        *,
        worker_id: str,
        config_root: Path | None = None,
        confinement: Confinement | None = None,
        poll_seconds: float = 1.0,
        cancel_poll_seconds: float = 0.5,
    ) -> None:
        self.queue = queue
        self.worker_id = worker_id
        if confinement is None and config_root is not None:
            confinement = Confinement.of(config_root)
        self.confinement = confinement
        self.poll_seconds = poll_seconds
        self.cancel_poll_seconds = cancel_poll_seconds
        self.state = "not_started"
        self.current: Execution | None = None
        self.finished: dict[str, int] = {}
        self.last_request: dict[str, Any] | None = None
        self.last_error: dict[str, Any] | None = None
        self.loop_running = False
        self.stopping = False
        self._lock = anyio.Lock()
        self._wake = anyio.Event()
        self._last_recover = 0.0

    def describe(self) -> dict[str, Any]:
        """The worker's state for ``GET /status``."""
        return {
            "worker_id": self.worker_id,
            "state": self.state,
            "loop_running": self.loop_running,
            "current": None if self.current is None else self.current.describe(),
            "finished": dict(self.finished),
            "last_request": self.last_request,
            "last_error": self.last_error,
        }

    def wake(self) -> None:
        """A request was submitted: look at the queue now rather than at the next poll."""
        self._wake.set()

    def cancel_local(self, request_id: str) -> bool:
        """Stop the request at once if this process runs it (the queue's flag would be seen at the next poll)."""
        if self.current is not None and self.current.request_id == request_id:
            self.current.cancel()
            return True
        return False

    def _track(self, execution: Execution) -> None:
        self.current = execution
        self.state = "running"

    async def run_next(self, *, recover: bool = True) -> RunRequest | None:
        """Claim and execute one request (after the current one, if any): the request as finally written, or None."""
        async with self._lock:
            if self.stopping:
                return None
            if recover:
                await self.queue.recover()
                self._last_recover = time.monotonic()
            claimed = await self.queue.claim(self.worker_id)
            if claimed is None:
                return None
            try:
                final = await execute_claimed(
                    self.queue,
                    claimed,
                    confinement=self.confinement,
                    poll_seconds=self.cancel_poll_seconds,
                    on_start=self._track,
                )
            except LeaseLostError as lost:
                self.last_error = lost.to_dict()
                raise
            finally:
                self.current = None
                self.state = "stopping" if self.stopping else "idle"
            status = final.status.value
            self.finished[status] = self.finished.get(status, 0) + 1
            self.last_request = {"request_id": final.request_id, "run_id": final.run_id, "status": status}
            if final.error:
                self.last_error = final.error
            return final

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The background loop: run requests while there are any, else wait for a submission or the poll."""
        self.loop_running = True
        self.state = "idle"
        task_status.started()
        try:
            while not self.stopping:
                self._wake = anyio.Event()
                recover = time.monotonic() - self._last_recover >= self.queue.lease_seconds / 2
                try:
                    final = await self.run_next(recover=recover)
                except LeaseLostError:
                    continue  # another worker owns that request now
                except Exception as error:  # the loop outlives one bad request or a briefly locked database
                    _log.exception("the service worker loop hit an error; continuing")
                    self.last_error = {"code": "worker_error", "message": str(error), "detail": {}}
                    final = None
                if final is None and not self.stopping:
                    await self._idle()
        finally:
            self.loop_running = False
            self.state = "stopped"

    async def _idle(self) -> None:
        """Wait for work: a submission through this process (:meth:`wake`), the queue's signal that a request may
        be claimable (another host's submission, a release, a finished run: PostgreSQL's ``NOTIFY``), or the poll
        interval, whichever comes first."""
        async with anyio.create_task_group() as tg:

            async def woken_here() -> None:
                await self._wake.wait()
                tg.cancel_scope.cancel()

            async def woken_by_queue() -> None:
                await self.queue.wait_for_work(self.poll_seconds)
                tg.cancel_scope.cancel()

            tg.start_soon(woken_here)
            tg.start_soon(woken_by_queue)

    async def shutdown(self, grace_seconds: float) -> bool:
        """Stop claiming and ask the running request to stop; True when it ended within the grace period."""
        self.stopping = True
        self.state = "stopping"
        self._wake.set()
        if self.current is not None:
            self.current.shutdown()
        with anyio.move_on_after(grace_seconds):
            async with self._lock:
                return True
        request_id = self.current and self.current.request_id
        _log.warning("the running request did not stop in time", request_id=request_id, grace_seconds=grace_seconds)
        return False
