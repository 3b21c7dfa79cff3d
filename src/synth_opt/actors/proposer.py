"""The propose actor: one reflection request in, proposals (or the proposer's error) out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from synth_opt.actors.messages import ProposeDone, ProposeJob
from synth_opt.errors import ProposerError
from synth_opt.events import EventBus
from synth_opt.proposers.base import Proposer

__all__ = ["propose_handler"]


def propose_handler(proposer: Proposer, *, bus: EventBus) -> Callable[[ProposeJob], Awaitable[ProposeDone]]:
    async def handle(job: ProposeJob) -> ProposeDone:
        request = job.request
        bus.emit(
            "reflection.requested",
            f"proposal {job.proposal_index}: reflect on {len(request.records)} rows of {request.candidate_id}",
            lane="propose",
            proposal_index=job.proposal_index,
            candidate_id=request.candidate_id,
            module=request.target_module,
            records=[{"task_id": r.task_id, "reward": r.reward, "feedback": r.feedback} for r in request.records],
        )
        try:
            result = await proposer.propose(job.request)
        except ProposerError as exc:
            bus.emit(
                "proposer.failed",
                f"proposal {job.proposal_index}: {exc.message}",
                lane="propose",
                proposal_index=job.proposal_index,
                backend=proposer.backend,
                model=getattr(proposer, "model", None),
                outcome="error",
                error=exc.message,
            )
            return ProposeDone(job.proposal_index, None, exc)
        bus.emit(
            "proposer.called",
            f"proposal {job.proposal_index}: {len(result.texts)} text(s)",
            lane="propose",
            proposal_index=job.proposal_index,
            backend=proposer.backend,
            model=getattr(proposer, "model", None),
            outcome="ok",
            texts=len(result.texts),
            duration_seconds=round(result.duration_seconds, 6),
            usage=result.usage.to_dict(),
        )
        return ProposeDone(job.proposal_index, result, None)

    return handle
