"""The search's parts, built from a config: the seed and its target modules, the proposer, the GEPA state, the
budget ledger and the supervisor's settings."""

from __future__ import annotations

from pathlib import Path

from synth_opt.actors import SupervisorSettings
from synth_opt.cache import CachedProposer, CacheStore
from synth_opt.config import GepaConfig
from synth_opt.container.wire import ProgramInfo
from synth_opt.errors import ConfigError
from synth_opt.gepa import BudgetLedger, Estimates, GepaState, Limits, SearchSettings
from synth_opt.proposers.base import Proposer
from synth_opt.proposers.factory import build_proposer
from synth_opt.run_container import with_python
from synth_opt.run_dataset import Dataset

__all__ = ["budget_ledger", "cached_proposer", "search_state", "seed_and_modules", "supervisor_settings"]


def seed_and_modules(config: GepaConfig, program: ProgramInfo) -> tuple[dict[str, str], tuple[str, ...]]:
    """The seed candidate and the modules to optimize: the config's, or else the container program's."""
    seed = dict(config.seed_candidate or program.seed_candidate)
    modules = tuple(config.candidate.target_modules or program.target_modules)
    missing = [m for m in modules if m not in seed]
    if missing:
        raise ConfigError(
            f"{config.source_path}: candidate.target_modules: {missing[0]!r} is not a field of the seed "
            f"candidate (fields: {', '.join(sorted(seed))}); name an existing field"
        )
    return seed, modules


def cached_proposer(store: CacheStore, config: GepaConfig, seam: Proposer | None, run_dir: Path) -> CachedProposer:
    """The proposer through the cache; ``seam`` (or else ``[proposer]``) is built on the first miss only."""
    section = config.proposer
    return CachedProposer(
        store,
        section.backend,
        {"model": section.model, "proposals_per_call": section.proposals_per_call, "config": section.config},
        lambda: (
            seam
            or build_proposer(section.model_copy(update={"command": with_python(section.command)}), run_dir=run_dir)
        ),
    )


def search_state(config: GepaConfig, modules: tuple[str, ...], dataset: Dataset) -> GepaState:
    return GepaState(
        SearchSettings(
            seed=config.run.seed,
            modules=modules,
            minibatch_size=config.gepa.minibatch_size,
            selector=config.gepa.candidate_selector,
            acceptance=config.gepa.acceptance,
            frontier_type=config.gepa.frontier_type,
            use_merge=config.gepa.use_merge,
            max_merge_invocations=config.gepa.max_merge_invocations,
        ),
        dataset.pareto_ids,
        dataset.minibatch_ids,
    )


def budget_ledger(config: GepaConfig, n_heldout: int) -> BudgetLedger:
    g = config.gepa
    limits = Limits(
        train_rollouts=config.train_cap(n_heldout),
        heldout_rollouts=config.heldout_cap(n_heldout),
        total_rollouts=config.total_cap(),
        cost_usd=g.max_cost_usd if g.max_cost_usd > 0 else None,
        total_tokens=g.max_total_tokens,
        time_seconds=g.max_time_seconds,
        train_cap_key=config.train_cap_key(),
    )
    estimates = Estimates(
        proposer_cost_usd=g.proposer_estimated_cost_usd or 0.0,
        proposer_tokens=g.proposer_estimated_tokens or 0,
        proposer_seconds=g.proposer_estimated_seconds or 0.0,
        rollout_cost_usd=g.rollout_estimated_cost_usd or 0.0,
        rollout_tokens=g.rollout_estimated_tokens or 0,
        rollout_seconds=g.rollout_estimated_seconds or 0.0,
    )
    return BudgetLedger(limits, estimates)


def supervisor_settings(
    config: GepaConfig, run_id: str, max_in_flight: int, dataset: Dataset, task_info: str | None
) -> SupervisorSettings:
    return SupervisorSettings(
        run_id=run_id,
        max_in_flight=max_in_flight,
        heldout_ids=tuple(dataset.heldout_ids),
        rows=dataset.rows,
        task_info=task_info,
        proposals_per_call=config.proposer.proposals_per_call,
        failure_tolerance=config.gepa.rollout_failure_rate_tolerance,
        no_improvement_iterations=config.gepa.no_improvement_iterations,
        score_threshold=config.gepa.score_threshold,
        staleness_policy=config.gepa.pipeline.staleness_policy,
        delta_max=config.gepa.pipeline.delta_max,
        skip_perfect_score=config.gepa.skip_perfect_score,
        perfect_score=config.gepa.perfect_score,
        proposer_max_consecutive_failures=config.proposer.max_consecutive_failures,
        proposer_failure_tolerance=config.proposer.failure_tolerance,
    )
