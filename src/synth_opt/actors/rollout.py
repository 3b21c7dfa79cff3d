"""The rollout actor: runs one candidate on one row through the container client."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from synth_opt.actors.messages import RolloutDone, RolloutJob
from synth_opt.container.circuit import ContainerOutageError
from synth_opt.container.kept import trace_digest
from synth_opt.container.wire import RolloutReply, RolloutRequest
from synth_opt.errors import ContainerContractError
from synth_opt.events import EventBus, Stage
from synth_opt.events.types import UNSET, RolloutCompleted, RolloutDegraded

__all__ = ["RolloutRunner", "rollout_handler"]

RolloutRunner = Callable[[RolloutRequest], Awaitable[RolloutReply]]


def rollout_handler(
    run_rollout: RolloutRunner,
    *,
    bus: EventBus,
    policy: dict[str, Any],
    submission_mode: str,
    run_id: str,
    keep_output: bool = False,
) -> Callable[[RolloutJob], Awaitable[RolloutDone]]:
    """A handler for the rollout lane. A rollout that ends in a task failure, or in a transport failure that the
    container's outage circuit judged to be its own row's (:mod:`synth_opt.container.circuit`), comes back as a
    *degraded attempt* (``reply`` None, ``error`` set); the supervisor counts it against the tolerance. An outage
    (:class:`~synth_opt.container.circuit.ContainerOutageError`) is never an outcome: it ends the run, and no
    rollout it touched reaches the supervisor. ``keep_output``: the ``rollout.completed`` line keeps the reply's
    trace (evaluation reuse rebuilds its store from the feed on a resume). ``run_rollout`` gives the reply as the run
    keeps it (the cache boundary cuts a long feedback and trace: :mod:`synth_opt.container.kept`); the line's
    ``trace_digest`` is the whole trace's."""

    async def handle(job: RolloutJob) -> RolloutDone:
        request = RolloutRequest(
            rollout_id=job.rollout_id,
            submission_mode=submission_mode,
            task_id=job.task_id,
            candidate_id=job.candidate_id,
            candidate=job.candidate,
            policy=policy,
            task=job.task,
            metadata={"run_id": run_id, "stage": job.stage},
        )
        started = time.perf_counter()
        reply: RolloutReply | None = None
        error: str | None = None
        digest: str | None = None
        verifiers: list[dict[str, Any]] = []
        try:
            reply = await run_rollout(request)
            digest = reply.whole_trace_digest or trace_digest(reply.trace)
            verifiers = _verifier_jobs(reply)
        except ContainerOutageError:
            raise
        except ContainerContractError as exc:
            error = exc.message
        duration = time.perf_counter() - started
        kind = RolloutCompleted if reply is not None else RolloutDegraded
        bus.emit(
            kind(
                rollout_id=job.rollout_id,
                candidate_id=job.candidate_id,
                task_id=job.task_id,
                stage=Stage.parse(job.stage),
                reward=None if reply is None else reply.reward,
                status="degraded" if reply is None else reply.status,
                objectives=None if reply is None else reply.objectives,
                error=error,
                feedback=None if reply is None else reply.feedback,
                trace_digest=digest,
                duration_seconds=round(duration, 6),
                usage=None if reply is None else reply.usage.to_dict(),
                verifier_jobs=tuple(verifiers),
                output=reply.trace if keep_output and reply is not None else UNSET,
                cut=reply.cut if reply is not None and reply.cut else UNSET,
            ),
            f"{job.stage} {job.candidate_id} on {job.task_id}",
            lane="rollout",
        )
        return RolloutDone(job, reply, error, duration)

    return handle


def _verifier_jobs(reply: RolloutReply) -> list[dict[str, Any]]:
    """Judge or checker calls the container reports (``verifier_jobs`` or ``reward_info.verifier_jobs``)."""
    info = reply.raw.get("reward_info")
    jobs = reply.raw.get("verifier_jobs") or (info.get("verifier_jobs") if isinstance(info, dict) else None)
    if not isinstance(jobs, list):
        return []
    return [job for job in jobs if isinstance(job, dict)]
