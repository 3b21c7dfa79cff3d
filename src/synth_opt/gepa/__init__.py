"""The GEPA algorithm, pure: no I/O, no clock, no global randomness (a test enforces the imports)."""

from synth_opt.gepa.acceptance import (
    ACCEPTANCE_RULES,
    AcceptanceRule,
    Decision,
    decide,
    get_acceptance_rule,
    register_acceptance_rule,
)
from synth_opt.gepa.budget import Amount, BudgetLedger, Estimates, Limits
from synth_opt.gepa.candidates import CandidateRecord, candidate_id, mean_score
from synth_opt.gepa.frontier import instance_fronts, lead_counts, prune_dominated
from synth_opt.gepa.rebase import merge_text, rebase_payload
from synth_opt.gepa.sampler import EpochSampler
from synth_opt.gepa.selection import (
    SELECTORS,
    ParentSelector,
    SelectionView,
    best_candidate,
    get_selector,
    register_selector,
    select_parent,
)
from synth_opt.gepa.state import GepaState, ProposalPlan, SearchSettings
from synth_opt.gepa.stopping import (
    STOPPING_RULES,
    Stop,
    StoppingRule,
    StopView,
    budget_stop,
    first_stop,
    get_stopping_rule,
    register_stopping_rule,
)

__all__ = [
    "ACCEPTANCE_RULES",
    "SELECTORS",
    "STOPPING_RULES",
    "AcceptanceRule",
    "Amount",
    "BudgetLedger",
    "CandidateRecord",
    "Decision",
    "EpochSampler",
    "Estimates",
    "GepaState",
    "Limits",
    "ParentSelector",
    "ProposalPlan",
    "SearchSettings",
    "SelectionView",
    "Stop",
    "StopView",
    "StoppingRule",
    "best_candidate",
    "budget_stop",
    "candidate_id",
    "decide",
    "first_stop",
    "get_acceptance_rule",
    "get_selector",
    "get_stopping_rule",
    "instance_fronts",
    "lead_counts",
    "mean_score",
    "merge_text",
    "prune_dominated",
    "rebase_payload",
    "register_acceptance_rule",
    "register_selector",
    "register_stopping_rule",
    "select_parent",
]
