"""Actors: one async handler per lane, and the supervisor that owns the GEPA state."""

from synth_opt.actors.evaluator import batch_collector
from synth_opt.actors.messages import BatchDone, ProposeDone, ProposeJob, RolloutDone, RolloutJob
from synth_opt.actors.proposer import propose_handler
from synth_opt.actors.records import SearchOutcome, SupervisorSettings, rollout_id_for
from synth_opt.actors.rollout import rollout_handler
from synth_opt.actors.supervisor import Supervisor

__all__ = [
    "BatchDone",
    "ProposeDone",
    "ProposeJob",
    "RolloutDone",
    "RolloutJob",
    "SearchOutcome",
    "Supervisor",
    "SupervisorSettings",
    "batch_collector",
    "propose_handler",
    "rollout_handler",
    "rollout_id_for",
]
