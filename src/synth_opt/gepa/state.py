"""The GEPA algorithm state: pool, frontier, generator, sampler and counters.

Pure: no I/O, no clock, no global randomness. The supervisor drives it with three calls, always in the same order
for the same run: :meth:`GepaState.plan` (choose parent, minibatch and module for the next proposal),
:meth:`GepaState.decide` (acceptance on the shared minibatch) and :meth:`GepaState.commit` (apply a proposal's
outcome; an accepted new candidate bumps the pool version). Everything random comes from one generator seeded
by ``[run].seed``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from synth_opt.gepa.acceptance import Decision, decide
from synth_opt.gepa.candidates import CandidateRecord, candidate_id
from synth_opt.gepa.frontier import instance_fronts, prune_dominated
from synth_opt.gepa.merge import MergePlan, plan_merge
from synth_opt.gepa.rebase import rebase_target
from synth_opt.gepa.sampler import EpochSampler
from synth_opt.gepa.selection import SelectionView, best_candidate, get_selector

__all__ = ["GepaState", "ProposalPlan", "SearchSettings"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SearchSettings:
    seed: int
    modules: tuple[str, ...]
    minibatch_size: int = 3
    selector: str = "pareto"
    acceptance: str = "strict_improvement"
    frontier_type: str = "instance"
    use_merge: bool = False
    max_merge_invocations: int = 5


@dataclass(frozen=True, slots=True)
class ProposalPlan:
    """What proposal ``index`` will do, fixed from the pool at ``pool_version`` (candidates added since the
    seed when it was planned). A merge proposal carries its :class:`MergePlan`; its ``minibatch`` is the
    merge's stratified subsample and ``module`` is ``MERGE_MODULE``."""

    index: int
    parent_id: str
    minibatch: tuple[str, ...]
    module: str
    pool_version: int
    merge: MergePlan | None = None

    @property
    def parent_ids(self) -> tuple[str, ...]:
        return self.merge.parent_ids if self.merge is not None else (self.parent_id,)

    def to_checkpoint(self) -> dict[str, Any]:
        """Everything needed to rebuild this plan exactly (``to_json`` plus the merge's payload)."""
        data = self.to_json()
        if self.merge is not None:
            data["merge"] = {**self.merge.to_json(), "payload": self.merge.payload}
        return data

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any]) -> ProposalPlan:
        merge = None
        if data.get("merge") is not None:
            m = data["merge"]
            merge = MergePlan(
                index=m["index"],
                parent_ids=(m["parent_ids"][0], m["parent_ids"][1]),
                ancestor_id=m["ancestor_id"],
                payload=dict(m["payload"]),
                rows=tuple(m["rows"]),
                pool_version=m["pool_version"],
            )
        return cls(
            data["index"], data["parent_id"], tuple(data["minibatch"]), data["module"], data["pool_version"], merge
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "index": self.index,
            "kind": "merge" if self.merge is not None else "reflection",
            "parent_id": self.parent_id,
            "parent_ids": list(self.parent_ids),
            "minibatch": list(self.minibatch),
            "module": self.module,
            "pool_version": self.pool_version,
        }
        if self.merge is not None:
            data["ancestor_id"] = self.merge.ancestor_id
        return data


MERGE_MODULE = "*merge*"


class GepaState:
    def __init__(self, settings: SearchSettings, pareto_ids: Sequence[str], minibatch_ids: Sequence[str]) -> None:
        if not settings.modules:
            raise ValueError("GEPA needs at least one target module")
        if not pareto_ids:
            raise ValueError("GEPA needs at least one pareto row")
        self.settings = settings
        self.pareto_ids = tuple(pareto_ids)
        self.rng = random.Random(settings.seed)
        self.sampler = EpochSampler(tuple(minibatch_ids), settings.minibatch_size)
        self.pool: list[CandidateRecord] = []
        self.by_id: dict[str, CandidateRecord] = {}
        self.pool_version = 0  # candidates added after the seed: the pool's version
        self.commits = 0  # proposals committed, accepted or not
        self.proposals_planned = 0
        self.module_cursor = 0
        self._cache: dict[str, Any] = {}  # derived from the pool; cleared whenever the pool changes
        self.merges_due = 0
        self.merges_done = 0
        self.tried_merges: set[str] = set()

    # -- pool ---------------------------------------------------------------------------------------------

    def add_seed(
        self,
        payload: dict[str, str],
        scores: dict[str, float],
        objective_scores: dict[str, dict[str, float]] | None = None,
    ) -> CandidateRecord:
        if self.pool:
            raise ValueError("the seed is already in the pool")
        return self._add(payload, (), None, None, scores, objective_scores or {})

    def _add(
        self,
        payload: dict[str, str],
        parents: tuple[str, ...],
        module: str | None,
        proposal: int | None,
        scores: dict[str, float],
        objective_scores: dict[str, dict[str, float]],
    ) -> CandidateRecord:
        missing = [row for row in self.pareto_ids if row not in scores]
        if missing:
            raise ValueError(f"a pool candidate needs a score on every pareto row; missing {missing[:3]}")
        record = CandidateRecord(
            candidate_id=candidate_id(payload),
            payload=dict(payload),
            parent_ids=parents,
            pool_index=len(self.pool),
            module_changed=module,
            proposal_index=proposal,
            scores={row: scores[row] for row in self.pareto_ids},
            objective_scores=objective_scores,
        )
        self.pool.append(record)
        self.by_id[record.candidate_id] = record
        self._cache.clear()
        return record

    def _cached(self, key: str, build: Callable[[], _T]) -> _T:
        if key not in self._cache:
            self._cache[key] = build()
        value: _T = self._cache[key]
        return value

    @property
    def order(self) -> list[str]:
        return self._cached("order", lambda: [record.candidate_id for record in self.pool])

    def means(self) -> dict[str, float]:
        return self._cached("means", lambda: {record.candidate_id: record.mean for record in self.pool})

    def best(self) -> CandidateRecord:
        return self.by_id[self._cached("best", lambda: best_candidate(self.order, self.means()))]

    def pruned_fronts(self) -> dict[str, tuple[str, ...]]:
        return self._cached("pruned", lambda: prune_dominated(self.fronts(), self.means(), self.order))

    def frontier_table(self) -> tuple[list[str], dict[str, dict[str, float]]]:
        return self._cached("table", self._frontier_table)

    def _frontier_table(self) -> tuple[list[str], dict[str, dict[str, float]]]:
        """The keys the frontier is built over, and each candidate's score per key.

        ``instance``: one key per pareto row. ``objective``: one key per objective the container reports
        (``objective:<name>``, the candidate's mean over the pareto rows; the reward itself when none is
        reported). ``hybrid``: both.
        """
        instance = {record.candidate_id: dict(record.scores) for record in self.pool}
        if self.settings.frontier_type == "instance":
            return list(self.pareto_ids), instance
        names = sorted({name for r in self.pool for row in r.objective_scores.values() for name in row})
        objective: dict[str, dict[str, float]] = {}
        for record in self.pool:
            if not names:
                objective[record.candidate_id] = {"objective:reward": record.mean}
                continue
            means: dict[str, float] = {}
            for name in names:
                values = [row[name] for row in record.objective_scores.values() if name in row]
                means[f"objective:{name}"] = sum(values) / len(values) if values else 0.0
            objective[record.candidate_id] = means
        keys = [f"objective:{name}" for name in names] or ["objective:reward"]
        if self.settings.frontier_type == "objective":
            return keys, objective
        return list(self.pareto_ids) + keys, {cid: {**instance[cid], **objective[cid]} for cid in instance}

    def fronts(self) -> dict[str, tuple[str, ...]]:
        def build() -> dict[str, tuple[str, ...]]:
            keys, scores = self.frontier_table()
            return instance_fronts(keys, scores, self.order)

        return dict(self._cached("fronts", build))

    # -- the three steps ----------------------------------------------------------------------------------

    def plan(self) -> ProposalPlan:
        """Choose the parent, minibatch and module of the next proposal from the current pool."""
        if not self.pool:
            raise ValueError("score the seed before planning proposals")
        keys, scores = self.frontier_table()
        view = SelectionView(
            order=self.order, row_ids=keys, scores=scores, means=self.means(), pool_fronts=self.pruned_fronts
        )
        parent = get_selector(self.settings.selector).select(view, self.rng)
        minibatch = tuple(self.sampler.next_batch(self.rng))
        modules = self.settings.modules
        module = modules[self.module_cursor % len(modules)]
        self.module_cursor += 1
        plan = ProposalPlan(self.proposals_planned, parent, minibatch, module, self.pool_version)
        self.proposals_planned += 1
        return plan

    def plan_next(self) -> ProposalPlan:
        """A merge when one is due (after an accepted child, while invocations are left), else a reflection."""
        s = self.settings
        if s.use_merge and self.merges_due > 0 and self.merges_done < s.max_merge_invocations:
            self.merges_due -= 1
            fronts = self.pruned_fronts()
            frontier = [cid for cid in self.order if any(cid in front for front in fronts.values())]
            merge = plan_merge(
                index=self.proposals_planned,
                frontier=frontier,
                by_id=self.by_id,
                row_ids=self.pareto_ids,
                tried=self.tried_merges,
                pool_version=self.pool_version,
                rng=self.rng,
            )
            if merge is not None:
                self.merges_done += 1
                self.tried_merges.add(merge.candidate_id)
                plan = ProposalPlan(
                    self.proposals_planned, merge.parent_ids[0], merge.rows, MERGE_MODULE, self.pool_version, merge
                )
                self.proposals_planned += 1
                return plan
        return self.plan()

    def child_payload(self, plan: ProposalPlan, text: str) -> dict[str, str]:
        payload = dict(self.by_id[plan.parent_id].payload)
        payload[plan.module] = text
        return payload

    def rebase_target(self, plan: ProposalPlan) -> CandidateRecord:
        """The candidate a stale proposal is carried onto (``staleness_policy = "rebase"``): the best of its parent
        and the parent's descendants that joined the pool after the plan (the parent when none improves on it)."""
        return rebase_target(self.by_id[plan.parent_id], self.pool[plan.pool_version + 1 :], self.by_id)

    def decide(self, parent_sum: float, child_sum: float) -> Decision:
        return decide(self.settings.acceptance, parent_sum, child_sum)

    def commit(
        self,
        plan: ProposalPlan,
        child: dict[str, str] | None = None,
        scores: dict[str, float] | None = None,
        objective_scores: dict[str, dict[str, float]] | None = None,
        parents: tuple[str, ...] | None = None,
    ) -> CandidateRecord | None:
        """Apply proposal ``plan``'s outcome: an accepted new child joins the pool and bumps the pool version.
        ``parents`` replaces the plan's parents (a rebased proposal's child descends from its rebase target)."""
        record = None
        if child is not None and scores is not None and candidate_id(child) not in self.by_id:
            lineage = plan.parent_ids if parents is None else parents
            record = self._add(child, lineage, plan.module, plan.index, scores, objective_scores or {})
            self.pool_version += 1
            if plan.merge is None and self.settings.use_merge:
                self.merges_due += 1
        self.commits += 1
        return record

    # -- checkpoints --------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The state besides the pool records themselves (those are referenced by id, in pool order)."""
        version, internal, gauss = self.rng.getstate()
        position = {cid: i for i, cid in enumerate(self.sampler.ids)}
        return {
            "pool_ids": self.order,
            "pool_version": self.pool_version,
            "commits": self.commits,
            "proposals_planned": self.proposals_planned,
            "module_cursor": self.module_cursor,
            "merges_due": self.merges_due,
            "merges_done": self.merges_done,
            "tried_merges": sorted(self.tried_merges),
            "rng": [version, list(internal), gauss],
            "sampler": {
                "epoch": self.sampler.epoch,
                "order": [position[cid] for cid in self.sampler.order],
                "position": self.sampler.position,
            },
        }

    def restore(self, snapshot: dict[str, Any], records: dict[str, CandidateRecord]) -> None:
        """Return to ``snapshot``; ``records`` holds every pool candidate named by ``snapshot["pool_ids"]``."""
        missing = [cid for cid in snapshot["pool_ids"] if cid not in records]
        if missing:
            raise ValueError(f"cannot restore the pool: no record for {missing[:3]}")
        self.pool = [records[cid] for cid in snapshot["pool_ids"]]
        self.by_id = {record.candidate_id: record for record in self.pool}
        self._cache.clear()
        self.pool_version = snapshot["pool_version"]
        self.commits = snapshot["commits"]
        self.proposals_planned = snapshot["proposals_planned"]
        self.module_cursor = snapshot["module_cursor"]
        self.merges_due = snapshot["merges_due"]
        self.merges_done = snapshot["merges_done"]
        self.tried_merges = set(snapshot["tried_merges"])
        version, internal, gauss = snapshot["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        sampler = snapshot["sampler"]
        self.sampler.epoch = sampler["epoch"]
        self.sampler.order = [self.sampler.ids[i] for i in sampler["order"]]
        self.sampler.position = sampler["position"]

    def staleness(self, plan: ProposalPlan) -> int:
        """How many candidates joined the pool between the plan and now (the staleness gap)."""
        return self.pool_version - plan.pool_version
