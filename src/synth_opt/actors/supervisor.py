"""The supervisor: the single writer of the GEPA state.

It plans proposals, dispatches their rollout batches and proposer calls to the lanes, and commits outcomes to the
state strictly in proposal order (a reorder buffer), so a run's decisions never depend on timing:

- proposal *k* is planned right after commit *k - max_in_flight* (the first ones right after the seed), so it
  always sees the same pool version;
- every budget change happens at plan time (a worst-case reservation) or at commit time (settlement), both in a
  fixed order, so whether work fits never depends on which lane finished first; a proposal that does not fit
  while others are in flight waits for the next commit (which releases what those did not use), and the search
  stops only when nothing is in flight and it still does not fit;
- decision events are emitted at commit time, in commit order; transport events are emitted as they happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from synth_opt.actors.messages import BatchDone, ProposeDone, ProposeJob, RolloutJob, SupervisorMessage
from synth_opt.actors.records import (
    CHECKPOINT_VERSION,
    Batch,
    CheckpointSink,
    Child,
    Counters,
    SearchOutcome,
    Slot,
    SupervisorSettings,
    minus_usage,
    rollout_id_for,
)
from synth_opt.errors import BudgetExceededError, ContainerContractError
from synth_opt.events import EventBus
from synth_opt.gepa import Amount, BudgetLedger, CandidateRecord, Decision, GepaState, ProposalPlan
from synth_opt.gepa.candidates import candidate_id, mean_score
from synth_opt.gepa.merge import SUBSAMPLE_PER_STRATUM
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest, ReflectiveRecord
from synth_opt.usage import Usage

__all__ = ["SearchOutcome", "Supervisor", "SupervisorSettings", "rollout_id_for"]

MERGE_SUBSAMPLE_ROWS = 3 * SUBSAMPLE_PER_STRATUM  # the most rows a merge's stratified subsample takes

MIN_ROLLOUTS_FOR_FAILURE_RATE = 20


class Supervisor:
    def __init__(
        self,
        *,
        state: GepaState,
        ledger: BudgetLedger,
        bus: EventBus,
        settings: SupervisorSettings,
        seed: dict[str, str],
        clock: Callable[[], float] = time.monotonic,
        checkpoint: CheckpointSink | None = None,
    ) -> None:
        self.state = state
        self.ledger = ledger
        self.bus = bus
        self.settings = settings
        self._seed_payload = seed
        self._clock = clock
        self._started = clock()
        self._batches: dict[int, Batch] = {}
        self._next_batch = 0
        self._slots: dict[int, Slot] = {}
        self._next_decide = 0
        self._next_commit = 0
        self._pending_children: set[str] = set()
        self._added: dict[int, bool] = {}
        self._heldout_reserved = Amount()
        self._stop_reason: str | None = None
        self._heldout: dict[str, dict[str, float]] = {}
        self._heldout_waiting = 0
        self._finished = False
        self.counters = Counters()
        self.registry: dict[str, dict[str, Any]] = {}
        self._checkpoint_sink = checkpoint
        self._resumed = False
        self._tg: TaskGroup | None = None
        self._rollout_out: MemoryObjectSendStream[RolloutJob] | None = None
        self._propose_out: MemoryObjectSendStream[ProposeJob] | None = None

    # -- the loop -------------------------------------------------------------------------------------------

    async def run(
        self,
        inbox: MemoryObjectReceiveStream[SupervisorMessage],
        rollout_out: MemoryObjectSendStream[RolloutJob],
        propose_out: MemoryObjectSendStream[ProposeJob],
    ) -> SearchOutcome:
        async with inbox, rollout_out, propose_out, anyio.create_task_group() as tg:
            self._tg, self._rollout_out, self._propose_out = tg, rollout_out, propose_out
            if self._resumed:
                self._continue_after_resume()
            else:
                self._score_seed()
            async for message in inbox:
                if isinstance(message, BatchDone):
                    await self._on_batch(message)
                else:
                    await self._on_proposal(message)
                if self._finished:
                    break
        return self.outcome()

    def _elapsed(self) -> float:
        return self._clock() - self._started

    # -- dispatch -------------------------------------------------------------------------------------------

    def _dispatch(
        self,
        kind: str,
        candidate: dict[str, str],
        rows: list[str],
        stage: str,
        proposal: int | None,
        child_index: int = 0,
    ) -> None:
        assert self._tg is not None
        cid = candidate_id(candidate)
        batch_id = self._next_batch
        self._next_batch += 1
        self._batches[batch_id] = Batch(kind, cid, proposal, child_index)
        jobs = [
            RolloutJob(
                batch_id=batch_id,
                batch_size=len(rows),
                position=position,
                rollout_id=rollout_id_for(self.settings.run_id, cid, stage, row),
                stage=stage,
                candidate_id=cid,
                candidate=candidate,
                task_id=row,
                task=self.settings.rows[row],
            )
            for position, row in enumerate(rows)
        ]
        self._tg.start_soon(self._send_jobs, jobs)

    async def _send_jobs(self, jobs: list[RolloutJob]) -> None:
        assert self._rollout_out is not None
        for job in jobs:
            await self._rollout_out.send(job)

    # -- seed -----------------------------------------------------------------------------------------------

    def _score_seed(self) -> None:
        pareto = list(self.state.pareto_ids)
        refused = self.ledger.reserve(self.ledger.estimate(train=len(pareto)))
        if refused is not None:
            raise BudgetExceededError(
                f"the budget cannot cover scoring the seed on {len(pareto)} pareto rows ({refused}); "
                "raise the limit or use fewer pareto_ids"
            )
        self._reserve_heldout()
        self._set_state("scoring_seed")
        self._dispatch("seed", self._seed_payload, pareto, "seed.pareto", None)

    def _reserve_heldout(self) -> None:
        """Hold the final heldout evaluation's cost and tokens from the start, so the search cannot spend them."""
        rows = min(2 * len(self.settings.heldout_ids), self.ledger.limits.heldout_rollouts)
        if not rows:
            return
        amount = self.ledger.estimate(heldout=rows)
        refused = self.ledger.reserve(amount)
        if refused is None:
            self._heldout_reserved = amount
        else:
            self.bus.emit(
                "budget.warning",
                f"{refused} leaves no room for the heldout evaluation of {rows} rollouts; it gets what is left",
                lane="supervisor",
                limit=refused,
            )

    def _on_seed(self, batch: BatchDone) -> None:
        self.ledger.settle(self.ledger.estimate(train=len(batch.results)), self._actual(batch))
        record = self.state.add_seed(self._seed_payload, batch.scores, batch.objective_scores)
        self._emit_candidate(record.candidate_id, record.payload, (), None, None)
        self._record_entry({**record.to_json(), "status": "seed"})
        self.bus.emit(
            "seed.scored",
            f"seed {record.candidate_id}: mean {record.mean:.4f} on {len(record.scores)} pareto rows",
            candidate_id=record.candidate_id,
            scores=record.scores,
            mean_score=record.mean,
        )
        self._emit_frontier(changed=list(self.state.pareto_ids))
        self._set_state("searching")
        self._checkpoint()
        self._fill()

    # -- planning -------------------------------------------------------------------------------------------

    def _fill(self) -> None:
        while self._stop_reason is None and len(self._slots) < self.settings.max_in_flight:
            elapsed = self._elapsed()
            refused = self.ledger.refusal(self._worst_case(), elapsed_seconds=elapsed)
            if refused is not None:
                if not self._slots or refused == "max_time_seconds":
                    self._stop(refused, f"the next proposal does not fit in the budget ({refused})")
                # else: in-flight proposals hold worst-case reservations; their commits release what they did
                # not use, and the next commit plans again (commits come in proposal order: still no timing)
                break
            plan = self.state.plan_next()
            amount = self._estimate(plan)
            assert self.ledger.reserve(amount, elapsed_seconds=elapsed) is None  # amount <= the worst case
            parent = self.state.by_id[plan.parent_id]
            summary = {
                "pool_size": len(self.state.pool),
                "pool_version": plan.pool_version,
                "best_mean_score": self.state.best().mean,
                "parent_mean_score": parent.mean,
            }
            slot = self._slots[plan.index] = Slot(plan, amount, summary)
            if plan.merge is not None:
                message = f"proposal {plan.index}: merge of {' and '.join(plan.parent_ids)}"
            else:
                message = f"proposal {plan.index}: parent {plan.parent_id}, module {plan.module}"
            self.bus.emit("proposal.planned", message, **plan.to_json())
            self._start_slot(slot)
        self._maybe_finish_search()

    def _estimate(self, plan: ProposalPlan) -> Amount:
        """The most a proposal can use: its batches, the pareto rows if accepted, and one proposer call."""
        pareto = len(self.state.pareto_ids)
        if plan.merge is not None:
            return self.ledger.estimate(train=len(plan.minibatch) + pareto)
        minibatches = (1 + self.settings.proposals_per_call) * len(plan.minibatch)
        return self.ledger.estimate(train=minibatches + pareto, proposer_calls=1)

    def _worst_case(self) -> Amount:
        """An upper bound of :meth:`_estimate` for whatever is planned next (checked before planning, so a
        proposal that has to wait leaves the planner's random stream untouched)."""
        pareto = len(self.state.pareto_ids)
        rows = (1 + self.settings.proposals_per_call) * self.state.sampler.batch_size
        if self.state.settings.use_merge:
            rows = max(rows, min(MERGE_SUBSAMPLE_ROWS, pareto))
        return self.ledger.estimate(train=rows + pareto, proposer_calls=1)

    def _start_slot(self, slot: Slot) -> None:
        """Dispatch a proposal's first batch: the merged candidate on its subsample, or the parent on its
        minibatch (the proposer call follows the parent's batch)."""
        plan = slot.plan
        if plan.merge is not None:
            merged = Child(plan.merge.payload, plan.merge.candidate_id)
            slot.children.append(merged)
            self._dispatch("child", merged.payload, list(plan.minibatch), f"p{plan.index}.merge", plan.index)
        else:
            parent = self.state.by_id[plan.parent_id].payload
            self._dispatch("parent", parent, list(plan.minibatch), f"p{plan.index}.parent", plan.index)

    def _stop(self, reason: str, message: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
            self.bus.emit("search.stopped", message, stop_reason=reason)

    # -- messages -------------------------------------------------------------------------------------------

    async def _on_batch(self, batch: BatchDone) -> None:
        info = self._batches.pop(batch.batch_id)
        self._account(batch, heldout=info.kind == "heldout")
        if info.kind == "seed":
            self._on_seed(batch)
            return
        if info.kind == "heldout":
            n = len(batch.results)
            self.ledger.settle(self.ledger.estimate(heldout=n), self._actual(batch, heldout=True))
            self._heldout[info.candidate_id] = batch.scores
            self._heldout_waiting -= 1
            if self._heldout_waiting == 0:
                self._finish()
            return
        assert info.proposal_index is not None
        slot = self._slots[info.proposal_index]
        if info.kind == "parent":
            slot.parent_batch = batch
            assert self._propose_out is not None
            await self._propose_out.send(ProposeJob(slot.plan.index, self._reflection(slot, batch)))
        elif info.kind == "child":
            slot.children[info.child_index].batch = batch
            self._advance()
        elif info.kind == "pareto":
            slot.pareto_batch = batch
            self._advance()

    async def _on_proposal(self, done: ProposeDone) -> None:
        if done.error is not None:
            raise done.error
        assert done.result is not None
        slot = self._slots[done.proposal_index]
        self.counters.proposer_usage += done.result.usage
        plan = slot.plan
        for text in done.result.texts[: self.settings.proposals_per_call]:
            payload = self.state.child_payload(plan, text)
            cid = candidate_id(payload)
            if cid != plan.parent_id and all(child.candidate_id != cid for child in slot.children):
                slot.children.append(Child(payload, cid))
        slot.proposal = done.result
        if slot.unchanged:
            self._advance()
            return
        for index, child in enumerate(slot.children):
            self._dispatch("child", child.payload, list(plan.minibatch), f"p{plan.index}.child", plan.index, index)

    def _reflection(self, slot: Slot, batch: BatchDone) -> ReflectionRequest:
        parent = self.state.by_id[slot.plan.parent_id]
        records = tuple(
            ReflectiveRecord(
                task_id=done.job.task_id,
                task=done.job.task,
                output=None if done.reply is None else done.reply.trace,
                reward=done.reward,
                feedback=done.error if done.reply is None else done.reply.feedback,
            )
            for done in batch.results
        )
        return ReflectionRequest(
            candidate_id=parent.candidate_id,
            candidate=parent.payload,
            target_module=slot.plan.module,
            records=records,
            task_info=self.settings.task_info,
            frontier_summary=slot.frontier_summary,
            proposals=self.settings.proposals_per_call,
        )

    def _account(self, batch: BatchDone, *, heldout: bool) -> None:
        c = self.counters
        if heldout:
            c.rollouts_heldout += len(batch.results)
        else:
            c.rollouts_train += len(batch.results)
        for done in batch.results:
            if done.reply is not None:
                c.rollout_usage += done.reply.usage
            else:
                c.degraded += 1
                c.last_error = done.error
        total = c.rollouts_train + c.rollouts_heldout
        allowed = self.settings.failure_tolerance * max(total, MIN_ROLLOUTS_FOR_FAILURE_RATE)
        if c.degraded > allowed:
            raise ContainerContractError(
                f"{c.degraded} of {total} rollouts failed after retries, more than "
                f"rollout_failure_rate_tolerance = {self.settings.failure_tolerance} allows; "
                f"last error: {c.last_error}"
            )

    def _actual(
        self, *batches: BatchDone | None, proposer: ProposerResult | None = None, heldout: bool = False
    ) -> Amount:
        """What the work really used. A proposer call of unknown cost is charged at its estimate, so a cost
        limit still binds when the proposer reports no prices."""
        usage = Usage()
        rollouts = 0
        for batch in batches:
            if batch is None:
                continue
            rollouts += len(batch.results)
            for done in batch.results:
                if done.reply is not None:
                    usage += done.reply.usage
        cost = usage.known_cost_usd
        if proposer is not None:
            usage += proposer.usage
            cost += (
                self.ledger.estimates.proposer_cost_usd if proposer.usage.cost_usd is None else proposer.usage.cost_usd
            )
        return Amount(
            train_rollouts=0 if heldout else rollouts,
            heldout_rollouts=rollouts if heldout else 0,
            proposer_calls=0 if proposer is None else 1,
            tokens=usage.total_tokens,
            cost_usd=cost,
        )

    # -- the reorder buffer ---------------------------------------------------------------------------------

    def _advance(self) -> None:
        while (slot := self._slots.get(self._next_decide)) is not None and slot.ready_to_decide:
            self._decide(slot)
            self._next_decide += 1
        while (slot := self._slots.get(self._next_commit)) is not None and slot.ready_to_commit:
            self._commit(slot)
            del self._slots[self._next_commit]
            self._next_commit += 1
            self._checkpoint()
            self._fill()

    def _decide(self, slot: Slot) -> None:
        """Decisions are made in proposal order, so everything they read is fixed: the parent's and the
        children's minibatch scores, and which earlier proposals added a candidate (the staleness gap)."""
        plan = slot.plan
        if plan.merge is not None:
            parent_sum = max(sum(self.state.by_id[p].scores[row] for row in plan.minibatch) for p in plan.parent_ids)
        else:
            assert slot.parent_batch is not None
            parent_sum = sum(slot.parent_batch.scores.values())
        first_unseen = max(0, plan.index - self.settings.max_in_flight + 1)
        slot.staleness = sum(self._added.get(j, False) for j in range(first_unseen, plan.index))
        self._added[plan.index] = False
        self._added.pop(first_unseen - 1, None)
        if slot.unchanged:
            slot.decision = Decision(False, "unchanged", parent_sum, parent_sum)
            return
        slot.chosen = max(slot.children, key=lambda child: child.minibatch_sum)
        if self.settings.staleness_policy == "guarded" and slot.staleness > self.settings.delta_max:
            slot.decision = Decision(False, "stale", parent_sum, slot.chosen.minibatch_sum)
            return
        if plan.merge is not None:
            accepted = slot.chosen.minibatch_sum >= parent_sum
            reason = "merge_as_good_as_parents" if accepted else "merge_worse_than_parent"
            slot.decision = Decision(accepted, reason, parent_sum, slot.chosen.minibatch_sum)
        else:
            slot.decision = self.state.decide(parent_sum, slot.chosen.minibatch_sum)
        cid = slot.chosen.candidate_id
        known = cid in self.state.by_id or cid in self._pending_children
        if slot.decision.accepted and not known:
            slot.needs_pareto = True
            self._added[plan.index] = True
            self._pending_children.add(cid)
            self._dispatch(
                "pareto", slot.chosen.payload, list(self.state.pareto_ids), f"p{plan.index}.pareto", plan.index
            )

    def _commit(self, slot: Slot) -> None:
        plan, decision, chosen = slot.plan, slot.decision, slot.chosen
        assert decision is not None
        child_batches = [child.batch for child in slot.children]
        self.ledger.settle(
            slot.reserved,
            self._actual(slot.parent_batch, *child_batches, slot.pareto_batch, proposer=slot.proposal),
        )
        chosen_id = plan.parent_id if chosen is None else chosen.candidate_id
        self.bus.emit(
            "proposal.created",
            f"proposal {plan.index}: {chosen_id} from {plan.parent_id} ({plan.module})",
            proposal_index=plan.index,
            candidate_id=chosen_id,
            candidate_ids=[child.candidate_id for child in slot.children],
            parent_id=plan.parent_id,
            parent_ids=list(plan.parent_ids),
            kind="merge" if plan.merge is not None else "reflection",
            module=plan.module,
            pool_version=plan.pool_version,
            staleness=slot.staleness,
        )
        if slot.parent_batch is not None:
            self._emit_scores(plan.parent_id, f"p{plan.index}.parent", slot.parent_batch)
        for child in slot.children:
            assert child.batch is not None
            self._emit_candidate(child.candidate_id, child.payload, plan.parent_ids, plan.module, plan.index)
            stage = "merge" if plan.merge is not None else "child"
            self._emit_scores(child.candidate_id, f"p{plan.index}.{stage}", child.batch)
        self.bus.emit(
            "acceptance.decided",
            f"proposal {plan.index}: {'accepted' if decision.accepted else 'rejected'} ({decision.reason}, "
            f"{decision.child_sum:g} vs {decision.parent_sum:g})",
            proposal_index=plan.index,
            candidate_id=chosen_id,
            accepted=decision.accepted,
            reason=decision.reason,
            parent_sum=decision.parent_sum,
            child_sum=decision.child_sum,
        )
        previous_best = self.state.best()
        record: CandidateRecord | None = None
        if slot.pareto_batch is not None and chosen is not None:
            self._pending_children.discard(chosen.candidate_id)
            self._emit_scores(chosen.candidate_id, f"p{plan.index}.pareto", slot.pareto_batch)
            batch = slot.pareto_batch
            record = self.state.commit(plan, chosen.payload, batch.scores, batch.objective_scores)
        else:
            self.state.commit(plan)
        self._register(slot, record)
        if decision.accepted:
            self.counters.accepted += 1
        else:
            self.counters.rejected += 1
        if record is not None:
            changed = [row for row, front in self.state.fronts().items() if record.candidate_id in front]
            self._emit_frontier(changed)
        best = self.state.best()
        if best.mean > previous_best.mean:
            self.counters.commits_since_improvement = 0
        else:
            self.counters.commits_since_improvement += 1
        self._check_rules(best)
        self._emit_stopper(plan.index)

    def _register(self, slot: Slot, record: CandidateRecord | None) -> None:
        assert slot.decision is not None
        if record is not None:
            self._record_entry({**record.to_json(), "status": "accepted", "reason": slot.decision.reason})
        for child in slot.children:
            if child.candidate_id in self.registry:
                continue
            if child is slot.chosen:
                status = "accepted_duplicate" if slot.decision.accepted else "rejected"
                reason = slot.decision.reason
            else:
                status, reason = "rejected", "outscored_by_sibling"
            self._record_entry(
                {
                    "candidate_id": child.candidate_id,
                    "payload": child.payload,
                    "parent_ids": list(slot.plan.parent_ids),
                    "module_changed": slot.plan.module,
                    "proposal_index": slot.plan.index,
                    "status": status,
                    "minibatch_scores": None if child.batch is None else child.batch.scores,
                    "reason": reason,
                }
            )

    def _record_entry(self, entry: dict[str, Any]) -> None:
        """The candidate registry entry, announced without its payload (``candidate.registered`` carries that),
        so the registry can be rebuilt from the feed."""
        cid = entry["candidate_id"]
        self.registry[cid] = entry
        self.bus.emit(
            "candidate.status",
            f"{cid}: {entry['status']}",
            **{key: value for key, value in entry.items() if key != "payload"},
        )

    def _check_rules(self, best: CandidateRecord) -> None:
        s = self.settings
        if s.score_threshold is not None and best.mean >= s.score_threshold:
            self._stop("score_threshold", f"best mean {best.mean:.4f} reached score_threshold {s.score_threshold}")
        limit = s.no_improvement_iterations
        if limit is not None and self.counters.commits_since_improvement >= limit:
            self._stop("no_improvement_iterations", f"no improvement in {limit} proposals")

    def _emit_candidate(
        self, cid: str, payload: dict[str, str], parents: tuple[str, ...], module: str | None, proposal: int | None
    ) -> None:
        self.bus.emit(
            "candidate.registered",
            f"candidate {cid}" + (f" from {', '.join(parents)}" if parents else " (seed)"),
            candidate_id=cid,
            parent_ids=list(parents),
            module=module,
            proposal_index=proposal,
            payload=payload,
        )

    def _emit_scores(self, cid: str, stage: str, batch: BatchDone) -> None:
        scores = batch.scores
        self.bus.emit(
            "candidate.scored",
            f"{cid} {stage}: sum {sum(scores.values()):g} over {len(scores)} rows",
            candidate_id=cid,
            stage=stage,
            scores=scores,
            objective_scores=batch.objective_scores,
            mean_score=mean_score(scores),
        )

    def _emit_frontier(self, changed: list[str]) -> None:
        fronts = self.state.fronts()
        members = sorted({cid for front in fronts.values() for cid in front})
        best = self.state.best()
        self.bus.emit(
            "frontier.updated",
            f"frontier: {len(members)} candidate(s); best {best.candidate_id} mean {best.mean:.4f}",
            pool_version=self.state.pool_version,
            pool_size=len(self.state.pool),
            members=members,
            rows_changed=changed,
            fronts={row: list(fronts[row]) for row in changed if row in fronts},
            best_candidate_id=best.candidate_id,
            best_mean_score=best.mean,
        )

    def _emit_stopper(self, proposal_index: int) -> None:
        used = self.ledger.used
        self.bus.emit(
            "budget.updated",
            f"rollouts used {used.rollouts}; train remaining {self.ledger.remaining_train()}",
            lane="supervisor",
            proposal_index=proposal_index,
            used=used.to_json(),
            reserved=self.ledger.reserved.to_json(),
            train_cap=self.ledger.limits.train_rollouts,
            accepted=self.counters.accepted,
            rejected=self.counters.rejected,
            since_improvement=self.counters.commits_since_improvement,
        )

    # -- the end --------------------------------------------------------------------------------------------

    def _maybe_finish_search(self) -> None:
        if self._stop_reason is None or self._slots or self._heldout_waiting or self._finished:
            return
        if self.state.pool and not self._heldout and self.settings.heldout_ids:
            self._start_heldout()
        elif not self._heldout_waiting:
            self._finish()

    def _start_heldout(self) -> None:
        seed, best = self.state.pool[0], self.state.best()
        targets = [seed] if best.candidate_id == seed.candidate_id else [seed, best]
        ids = list(self.settings.heldout_ids)
        per_candidate = min(len(ids), self.ledger.limits.heldout_rollouts // len(targets))
        self.ledger.settle(self._heldout_reserved, Amount())
        self._heldout_reserved = Amount()
        if per_candidate <= 0:
            self._finish()
            return
        rows = ids[:per_candidate]
        self._set_state("evaluating_heldout")
        for record in targets:
            refused = self.ledger.reserve(self.ledger.estimate(heldout=len(rows)))
            if refused is not None:
                break
            self._heldout_waiting += 1
            self._dispatch("heldout", record.payload, rows, "heldout", None)
        if not self._heldout_waiting:
            self._finish()

    def _finish(self) -> None:
        for cid in [cid for cid in self.state.order if cid in self._heldout]:  # pool order, not arrival order
            scores = self._heldout[cid]
            self.bus.emit(
                "heldout.scored",
                f"{cid}: heldout mean {mean_score(scores):.4f} on {len(scores)} rows",
                candidate_id=cid,
                scores=scores,
                mean_score=mean_score(scores),
            )
        self._finished = True

    def _set_state(self, name: str) -> None:
        self.bus.emit("run.state", f"state: {name}", lane="supervisor", state=name)

    # -- checkpoints and resume ------------------------------------------------------------------------------

    def _checkpoint(self) -> None:
        """Offer a checkpoint after a commit; the sink takes the snapshot now or later (any moment between two
        messages is a consistent one)."""
        if self._checkpoint_sink is not None:
            self._checkpoint_sink(self.snapshot)

    def snapshot(self) -> dict[str, Any] | None:
        """Everything a resume needs; None during the heldout evaluation (a resume redoes it from the search's
        last checkpoint).

        Work in flight is recorded by its plan only: a resume runs it again from the start (served from the cache
        when there is one), so the counters exclude what in-flight work has received so far."""
        if self._heldout_waiting or self._heldout:
            return None
        committed = Counters.from_json(self.counters.to_json())
        for slot in self._slots.values():
            for batch in (slot.parent_batch, *(child.batch for child in slot.children), slot.pareto_batch):
                if batch is None:
                    continue
                committed.rollouts_train -= len(batch.results)
                committed.degraded -= batch.degraded
                for done in batch.results:
                    if done.reply is not None:
                        committed.rollout_usage = minus_usage(committed.rollout_usage, done.reply.usage)
            if slot.proposal is not None:
                committed.proposer_usage = minus_usage(committed.proposer_usage, slot.proposal.usage)
        return {
            "version": CHECKPOINT_VERSION,
            "sequence_number": self.bus.sequence_number,
            "commits": self._next_commit,
            "state": self.state.snapshot(),
            "ledger": self.ledger.to_json(),
            "counters": committed.to_json(),
            "added": {str(k): v for k, v in self._added.items() if k < self._next_commit},
            "in_flight": [
                {
                    "plan": slot.plan.to_checkpoint(),
                    "reserved": slot.reserved.to_json(),
                    "summary": slot.frontier_summary,
                }
                for _, slot in sorted(self._slots.items())
            ],
            "stop_reason": self._stop_reason,
            "heldout_reserved": self._heldout_reserved.to_json(),
            "best_candidate_id": self.state.best().candidate_id,
            "pool_size": len(self.state.pool),
        }

    def resume(
        self, snapshot: dict[str, Any], records: dict[str, CandidateRecord], registry: dict[str, dict[str, Any]]
    ) -> None:
        """Return to a checkpoint before ``run``: the run then re-dispatches the work that was in flight."""
        if snapshot.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {snapshot.get('version')} is not {CHECKPOINT_VERSION}")
        self.state.restore(snapshot["state"], records)
        self.ledger = self.ledger.restored(snapshot["ledger"])
        self.counters = Counters.from_json(snapshot["counters"])
        self.registry = dict(registry)
        self._added = {int(k): bool(v) for k, v in snapshot["added"].items()}
        self._next_commit = self._next_decide = int(snapshot["commits"])
        self._stop_reason = snapshot["stop_reason"]
        self._heldout_reserved = Amount.from_json(snapshot["heldout_reserved"])
        for item in snapshot["in_flight"]:
            plan = ProposalPlan.from_checkpoint(item["plan"])
            self._slots[plan.index] = Slot(plan, Amount.from_json(item["reserved"]), dict(item["summary"]))
        self._resumed = True

    def _continue_after_resume(self) -> None:
        self._set_state("searching")
        for _, slot in sorted(self._slots.items()):
            self._start_slot(slot)
        self._fill()

    def release_reservations(self) -> None:
        """On a cancel: give back everything reserved for work that will not finish."""
        for slot in self._slots.values():
            self.ledger.settle(slot.reserved, Amount())
        self._slots.clear()
        self.ledger.settle(self._heldout_reserved, Amount())
        self._heldout_reserved = Amount()

    def outcome(self, *, stop_reason: str | None = None) -> SearchOutcome:
        """What the search has committed so far (the whole result once ``run`` returns)."""
        seed, best = self.state.pool[0], self.state.best()
        return SearchOutcome(
            seed=seed,
            best=best,
            stop_reason=stop_reason or self._stop_reason or "max_total_rollouts",
            heldout_scores=dict(self._heldout),
            rollouts_train=self.counters.rollouts_train,
            rollouts_heldout=self.counters.rollouts_heldout,
            rollout_usage=self.counters.rollout_usage,
            proposer_usage=self.counters.proposer_usage,
            registry=self.registry,
            proposals=self._next_commit,
            accepted=self.counters.accepted,
        )
