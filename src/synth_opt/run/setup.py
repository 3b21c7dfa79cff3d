"""The search's parts, built from a config: the seed and its target modules, the proposer, the GEPA state, the
budget ledger and the supervisor's settings; and the start-up warnings for settings that do nothing."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from synth_opt.actors import SupervisorSettings
from synth_opt.cache import CachedProposer, CacheStore
from synth_opt.config import OVERRIDE_VARIABLES, GepaConfig, ProposerSection
from synth_opt.container.wire import ProgramInfo
from synth_opt.errors import ConfigError
from synth_opt.events import EventBus
from synth_opt.events.types import ConfigWarning
from synth_opt.gepa import BudgetLedger, Estimates, GepaState, Limits, SearchSettings
from synth_opt.logs import get_logger
from synth_opt.proposers.backends import PROPOSER_BACKENDS, proposer_backend
from synth_opt.proposers.base import Proposer
from synth_opt.proposers.factory import build_proposer, proposer_call_reservation
from synth_opt.run.container import with_python
from synth_opt.run.dataset import Dataset

__all__ = [
    "CONFIG_WARNING",
    "budget_ledger",
    "cached_proposer",
    "config_warnings",
    "emit_config_warnings",
    "search_state",
    "seed_and_modules",
    "supervisor_settings",
]

CONFIG_WARNING = "config.warning"  # not a decision event: the normalized feed and the digest never see it
_log = get_logger("synth_opt.config")


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
    # a proposal reserves what its proposer call can use at most, where that is known (see the function)
    proposer_tokens, proposer_cost = proposer_call_reservation(
        config.proposer, estimated_tokens=g.proposer_estimated_tokens, estimated_cost_usd=g.proposer_estimated_cost_usd
    )
    estimates = Estimates(
        proposer_cost_usd=proposer_cost,
        proposer_tokens=proposer_tokens,
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
        reuse_evaluations=config.gepa.reuse_evaluations,
        # a whole epoch of minibatches (and at least 10 proposals) with nothing rolled out: the search is stuck
        max_commits_without_rollouts=max(10, -(-len(dataset.minibatch_ids) // config.gepa.minibatch_size)),
        proposer_max_consecutive_failures=config.proposer.max_consecutive_failures,
        proposer_failure_tolerance=config.proposer.failure_tolerance,
        max_feedback_chars=config.proposer.max_feedback_chars,
        max_prompt_tokens=config.proposer.max_prompt_tokens,
        prompt_template=config.proposer.template_text(),
        proposal_memory=config.gepa.proposal_memory,
        proposal_memory_size=config.gepa.proposal_memory_size,
        concurrent_edits=config.gepa.pipeline.concurrent_edits,
    )


def config_warnings(config: GepaConfig, modules: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(key, message)`` for each setting the config gives that this run will not use (``modules`` are the target
    modules in effect). Keys left at their defaults are not reported."""
    g, pipeline, proposer = config.gepa, config.gepa.pipeline, config.proposer
    given, pipeline_given = g.model_fields_set, pipeline.model_fields_set
    found: list[tuple[str, str]] = []
    if g.use_merge and len(modules) < 2:
        found.append(
            (
                "gepa.use_merge",
                f"use_merge = true does nothing with a single target module ({', '.join(modules) or 'none'}): a "
                "merge combines modules that two candidates changed; set it to false, or optimize several modules",
            )
        )
    if not g.use_merge and "max_merge_invocations" in given:
        found.append(("gepa.max_merge_invocations", "does nothing without gepa.use_merge = true"))
    if pipeline.mode == "sync_serial":
        for key in ("max_in_flight_candidates", "workers"):
            if key in pipeline_given:
                found.append(
                    (
                        f"gepa.pipeline.{key}",
                        'is ignored in mode = "sync_serial" (one worker per lane, one candidate in flight); set '
                        'gepa.pipeline.mode = "async_pipelined" to use it',
                    )
                )
    if config.effective_max_in_flight() == 1:
        for key in ("staleness_policy", "delta_max"):
            if key in pipeline_given:
                found.append((f"gepa.pipeline.{key}", "does nothing with one candidate in flight"))
    elif "delta_max" in pipeline_given and pipeline.staleness_policy != "guarded":
        found.append(
            (
                "gepa.pipeline.delta_max",
                f'is used only with staleness_policy = "guarded" (this run uses "{pipeline.staleness_policy}")',
            )
        )
    found += _no_proposal(config)
    found += _unknown_overrides()
    temperature = config.policy.temperature or 0.0
    if g.reuse_evaluations and temperature > 0:
        found.append(
            (
                "gepa.reuse_evaluations",
                f"is on with policy.temperature = {temperature:g}: a candidate's reply on a row is sampled once and "
                "reused, which hides the policy's sampling noise from the search; set gepa.reuse_evaluations = "
                "false for a stochastic policy",
            )
        )
    if not g.skip_perfect_score and "perfect_score" in given:
        found.append(("gepa.perfect_score", "does nothing without gepa.skip_perfect_score = true"))
    limits = (("cost_usd", "max_cost_usd", g.max_cost_usd > 0), ("tokens", "max_total_tokens", g.max_total_tokens))
    for unit, limit, active in (*limits, ("seconds", "max_time_seconds", g.max_time_seconds)):
        for key in (f"proposer_estimated_{unit}", f"rollout_estimated_{unit}"):
            if not active and key in given:
                found.append((f"gepa.{key}", f"is used only with a gepa.{limit} limit, which is not set"))
    unpriced = proposer.cost_per_million_input_tokens is None and proposer.cost_per_million_output_tokens is None
    if g.max_cost_usd > 0 and unpriced:
        found.append(
            (
                "proposer.cost_per_million_input_tokens",
                "and ..._output_tokens are not set, so the proposer's cost is unknown: the gepa.max_cost_usd limit "
                f"charges each proposer call its estimate (gepa.proposer_estimated_cost_usd = "
                f"${g.proposer_estimated_cost_usd or 0:g}) and costs are reported as unknown",
            )
        )
    if "max_heldout_rollouts" in given and config.dataset.heldout_ids == []:
        found.append(("gepa.max_heldout_rollouts", "does nothing with no dataset.heldout_ids"))
    if config.cache.mode == "off":
        for key in ("path", "namespace"):
            if getattr(config.cache, key) is not None:
                found.append((f"cache.{key}", 'does nothing with cache.mode = "off"'))
    container = config.container
    if not container.command:
        unused = [key for key in ("cwd",) if getattr(container, key) is not None]
        unused += [key for key in ("env",) if getattr(container, key)]
        unused += [key for key in ("startup_timeout_seconds",) if key in container.model_fields_set]
        found += [(f"container.{key}", "is used only with container.command (a launched container)") for key in unused]
    backend = proposer_backend(proposer.backend)  # what differs between backends is its entry's
    for key in _proposer_keys_set(proposer):
        readers = PROPOSER_BACKENDS.readers(key)
        if readers and backend.name not in readers:
            backends = " or ".join(f'"{name}"' for name in readers)
            found.append((f"proposer.{key}", f"is used only with backend = {backends}"))
    found += backend.warnings(proposer)
    return found


_RESOLVED_AT_LOAD = frozenset({"command", "codex_home"})
"""``[proposer]`` keys :func:`~synth_opt.config.load_config` rewrites (their paths resolved), so they are always
among the section's set fields: only a value other than the default says the file set them."""


def _proposer_keys_set(proposer: ProposerSection) -> list[str]:
    """The backend-specific ``[proposer]`` keys (some backend's ``own_keys``) this config sets, in the section's
    order."""
    found = []
    for key, info in ProposerSection.model_fields.items():
        if not PROPOSER_BACKENDS.readers(key):
            continue
        named = key in proposer.model_fields_set and key not in _RESOLVED_AT_LOAD
        if named or getattr(proposer, key) != info.get_default(call_default_factory=True):
            found.append(key)
    return found


def _unknown_overrides() -> list[tuple[str, str]]:
    """A ``SYNTH_OPTIMIZERS_*`` variable that overrides nothing (a misspelt override would otherwise do nothing
    silently)."""
    found = []
    for name in sorted(os.environ):
        if name.startswith("SYNTH_OPTIMIZERS_") and name not in OVERRIDE_VARIABLES:
            close = difflib.get_close_matches(name, sorted(OVERRIDE_VARIABLES), n=1)
            hint = f"did you mean {close[0]}?" if close else f"the overrides: {', '.join(sorted(OVERRIDE_VARIABLES))}"
            found.append((name, f"is set but overrides nothing ({hint}); it changes nothing in this run"))
    return found


def _no_proposal(config: GepaConfig) -> list[tuple[str, str]]:
    """A limit that leaves no room for one proposal after the seed's scoring (``synth-opt gepa plan``'s
    forecast from the config's row counts): the run would score the seed and stop."""
    from synth_opt.run.plan import plan_run  # (the plan reads this module's setup)

    plan = plan_run(config)
    if plan.expected_proposals > 0:
        return []
    key = plan.stopping_limit
    return [
        (
            f"gepa.{key}",
            f"buys no proposal: the seed's scoring takes {plan.seed_rollouts} rollouts and one proposal may need "
            f"{plan.worst_case_rollouts_per_proposal} more, so the run scores the seed and stops; raise gepa.{key} "
            "(synth-opt gepa plan shows what a budget buys) or lower gepa.minibatch_size",
        )
    ]


def emit_config_warnings(bus: EventBus, config: GepaConfig, modules: tuple[str, ...]) -> None:
    """A ``config.warning`` event and a log line for each setting that does nothing in this run."""
    for key, message in config_warnings(config, modules):
        bus.emit(ConfigWarning(key), f"{key} {message}", lane="supervisor")
        _log.warning(f"config warning: {key} {message}", key=key)


async def preflight_proposer(config: GepaConfig) -> None:
    """Fail before spending: the configured backend's check (its entry's ``preflight``; see
    :mod:`synth_opt.proposers.preflight`), from the config's directory."""
    section = config.proposer
    resolved = section.model_copy(update={"command": with_python(list(section.command))})
    await proposer_backend(section.backend).preflight(resolved, config.source_path.parent)
