"""The supervisor: the single writer of the GEPA state.

It plans proposals, dispatches their rollout batches and proposer calls to the lanes, and commits outcomes to the
state strictly in proposal order (a reorder buffer), so a run's decisions never depend on timing:

- proposal *k* is planned right after commit *k - max_in_flight* (the first ones right after the seed), so it
  always sees the same pool version;
- every budget change happens at plan time (a worst-case reservation) or at commit time (settlement), both in a
  fixed order, so whether work fits never depends on which lane finished first; a proposal that does not fit
  while others are in flight waits for the next commit (which releases what those did not use), and the search
  stops only when nothing is in flight and it still does not fit;
- decision events are emitted at commit time, in commit order; transport events are emitted as they happen;
- with ``staleness_policy = "rebase"``, an accepted child's pareto scoring waits until every earlier proposal has
  committed; the child is then carried onto the best descendant of its parent that joined the pool since the
  plan (:mod:`~synth_opt.gepa.rebase`), a fixed pool version again, so still no timing;
- with ``reuse_evaluations``, a batch takes the replies of the evaluations committed before its proposal was
  planned (and of the proposal's own earlier batches) instead of rolling those rows out again
  (:mod:`~synth_opt.actors.evaluations`): a fixed set again; the reused rows reach the evaluate lane directly.

This module holds the loop and the order of things; what each step computes lives beside it: budget amounts and
counters (:mod:`~synth_opt.actors.accounting`), decisions (:mod:`~synth_opt.actors.decisions`), stop rules
(:mod:`~synth_opt.gepa.stopping`), the heldout phase (:mod:`~synth_opt.actors.heldout`), the events
(:mod:`~synth_opt.actors.supervisor_events`), the candidate registry (:mod:`~synth_opt.actors.registry`), the
proposer's request (:mod:`~synth_opt.actors.reflection`) and checkpoints (:mod:`~synth_opt.actors.checkpointing`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from synth_opt.actors.accounting import actual_amount, count_batch, proposal_estimate, worst_case_estimate
from synth_opt.actors.checkpointing import restore_checkpoint, take_snapshot
from synth_opt.actors.decisions import (
    check_proposer_failures,
    count_proposer_call,
    decide_proposal,
    failure_summary,
    prune_added,
)
from synth_opt.actors.evaluations import EvaluationStore, Lookup
from synth_opt.actors.heldout import HeldoutPhase
from synth_opt.actors.messages import (
    BatchDone,
    ProposeDone,
    ProposeJob,
    RolloutDone,
    RolloutJob,
    SupervisorMessage,
)
from synth_opt.actors.records import (
    Batch,
    CheckpointSink,
    Child,
    Counters,
    Rebase,
    SearchOutcome,
    Slot,
    SupervisorSettings,
    rollout_id_for,
)
from synth_opt.actors.reflection import frontier_summary, reflection_request
from synth_opt.actors.registry import record_entry, register_proposal
from synth_opt.actors.supervisor_events import (
    emit_budget,
    emit_candidate,
    emit_decision,
    emit_forecast,
    emit_frontier,
    emit_heldout_scores,
    emit_planned,
    emit_proposal_created,
    emit_scores,
    emit_seed_scored,
    emit_state,
    warn_on_a_broken_seed,
)
from synth_opt.errors import BudgetExceededError, ProposerReplyError
from synth_opt.events import EventBus, Stage
from synth_opt.events.types import ConfigWarning, RolloutReused, SearchStopped
from synth_opt.gepa import (
    Amount,
    BudgetLedger,
    CandidateRecord,
    GepaState,
    ProposalPlan,
    StopView,
    budget_stop,
    first_stop,
)
from synth_opt.gepa.candidates import candidate_id, mean_score
from synth_opt.gepa.forecast import Spend, live_forecast
from synth_opt.gepa.rebase import descends_from, rebase_payload, repeats_edit
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ConcurrentEdit, RejectedEdit, cut_text
from synth_opt.usage import Usage

__all__ = ["SearchOutcome", "Supervisor", "SupervisorSettings", "rollout_id_for"]


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
        self._stop_reason: str | None = None
        self._heldout = HeldoutPhase()
        self._finished = False
        self.counters = Counters()
        self.registry: dict[str, dict[str, Any]] = {}
        self._checkpoint_sink = checkpoint
        self._resumed = False
        self._heldout_progress: dict[str, Any] | None = None  # from the checkpoint a resume starts at
        self._last_proposer_failure: str | None = None
        self._warned_beyond_reservation = False
        self._tg: TaskGroup | None = None
        self._rollout_out: MemoryObjectSendStream[RolloutJob] | None = None
        self._propose_out: MemoryObjectSendStream[ProposeJob] | None = None
        self._reused_out: MemoryObjectSendStream[RolloutDone] | None = None
        self._reuse = settings.reuse_evaluations
        self.evaluations = EvaluationStore(settings.max_feedback_chars)
        self._seed_used: Amount | None = None  # the ledger after the seed's scoring: the live forecast's base
        self._share = settings.concurrent_edits and settings.max_in_flight > 1
        # (concurrent_edits) proposal index -> its parent and final child texts, while a later proposal may need them
        self._edits: dict[int, tuple[str, tuple[dict[str, str], ...]]] = {}

    # -- the loop -------------------------------------------------------------------------------------------

    async def run(
        self,
        inbox: MemoryObjectReceiveStream[SupervisorMessage],
        rollout_out: MemoryObjectSendStream[RolloutJob],
        propose_out: MemoryObjectSendStream[ProposeJob],
        reused_out: MemoryObjectSendStream[RolloutDone] | None = None,
    ) -> SearchOutcome:
        """``reused_out``: the evaluate lane's inbox, where reused rows join their batches (needed only with
        ``reuse_evaluations``)."""
        if self._reuse and reused_out is None:
            raise ValueError("reuse_evaluations needs the evaluate lane's inbox (reused_out)")
        reused = nullcontext() if reused_out is None else reused_out  # the evaluate lane ends once every sender closed
        async with inbox, rollout_out, propose_out, reused, anyio.create_task_group() as tg:
            self._tg, self._rollout_out, self._propose_out = tg, rollout_out, propose_out
            self._reused_out = reused_out
            if self._resumed:
                self._continue_after_resume()  # (finished at once when nothing was left to do)
            else:
                self._score_seed()
            if not self._finished:
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

    def time_left(self) -> float | None:
        """Seconds left of ``gepa.max_time_seconds`` (None without a time limit)."""
        limit = self.ledger.limits.time_seconds
        return None if limit is None else limit - self._elapsed()

    # -- dispatch -------------------------------------------------------------------------------------------

    def _dispatch(
        self,
        kind: str,
        candidate: dict[str, str],
        rows: list[str],
        stage: str,
        proposal: int | None,
        child_index: int = 0,
        *,
        reuse: Lookup | None = None,
    ) -> None:
        """Send a batch to the lanes: each row to the rollout lane, or (``reuse`` finds its reply) straight to
        the evaluate lane as a reused rollout."""
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
        reused: list[RolloutDone] = []
        if reuse is not None and self._reuse:
            live: list[RolloutJob] = []
            for job in jobs:
                reply = reuse(cid, job.task_id)
                if reply is None:
                    live.append(job)
                    continue
                reused.append(RolloutDone(job, reply, None, 0.0, reused=True))
                self.bus.emit(
                    RolloutReused(job.rollout_id, cid, job.task_id, Stage.parse(stage), reply.reward, reply.rollout_id),
                    f"{stage} {cid} on {job.task_id}: reused {reply.rollout_id}",
                    lane="supervisor",
                )
            jobs = live
        self._tg.start_soon(self._send_jobs, jobs, reused)

    async def _send_jobs(self, jobs: list[RolloutJob], reused: list[RolloutDone]) -> None:
        assert self._rollout_out is not None
        if reused:
            assert self._reused_out is not None
            for done in reused:
                await self._reused_out.send(done)
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
        self._heldout.reserve(self.ledger, self.bus, self.settings.heldout_ids)
        self._set_state("scoring_seed")
        self._dispatch("seed", self._seed_payload, pareto, "seed.pareto", None)

    def _on_seed(self, batch: BatchDone) -> None:
        self.ledger.settle(self.ledger.estimate(train=len(batch.results)), actual_amount(self.ledger, batch))
        self._seed_used = self.ledger.used
        record = self.state.add_seed(self._seed_payload, batch.scores, batch.objective_scores)
        if self._reuse:  # (without reuse nothing reads the store)
            self.evaluations.add(batch, visible_from=0)
        emit_candidate(self.bus, record.candidate_id, record.payload, (), None, None)
        record_entry(self.registry, self.bus, {**record.to_json(), "status": "seed"})
        emit_seed_scored(self.bus, record)
        warn_on_a_broken_seed(self.bus, batch)
        emit_frontier(self.bus, self.state, changed=list(self.state.pareto_ids))
        self._set_state("searching")
        self._checkpoint()
        self._fill()

    # -- planning -------------------------------------------------------------------------------------------

    def _fill(self) -> None:
        while self._stop_reason is None and len(self._slots) < self.settings.max_in_flight:
            elapsed = self._elapsed()
            calls = self._calls_at_plan()
            worst_case = worst_case_estimate(
                self.ledger, self.state, self.settings.proposals_per_call, proposer_calls=calls
            )
            refused = self.ledger.refusal(worst_case, elapsed_seconds=elapsed)
            if refused is not None:
                stop = budget_stop(refused, in_flight=len(self._slots))
                if stop is not None:
                    self._stop(*stop)
                # else: in-flight proposals hold worst-case reservations; their commits release what they did
                # not use, and the next commit plans again (commits come in proposal order: still no timing)
                break
            plan = self.state.plan_next()
            amount = proposal_estimate(
                self.ledger, self.state, self.settings.proposals_per_call, plan, proposer_calls=calls
            )
            if self.ledger.reserve(amount, elapsed_seconds=elapsed) is not None:  # amount <= the worst case
                raise AssertionError(f"proposal {plan.index} exceeds the worst case it was checked against")
            slot = self._slots[plan.index] = Slot(
                plan, amount, frontier_summary(self.state, plan), commits_at_plan=self._next_commit
            )
            emit_planned(self.bus, plan)
            self._start_slot(slot)
        self._maybe_finish_search()

    def _calls_at_plan(self) -> int:
        """The proposer calls a proposal planned now may make: two when it may be asked again (its texts are
        compared with the edits of the proposals in flight: ``gepa.pipeline.concurrent_edits``)."""
        return 2 if self._share and self._slots else 1

    def _start_slot(self, slot: Slot) -> None:
        """Dispatch a proposal's first batch: the merged candidate on its subsample, or the parent on its
        minibatch (the proposer call follows the parent's batch)."""
        plan = slot.plan
        if plan.merge is not None:
            if self._share:
                self._edits[plan.index] = (plan.parent_id, ())  # a merge has no edit of its own to repeat
            merged = Child(plan.merge.payload, plan.merge.candidate_id)
            slot.children.append(merged)
            stage = f"p{plan.index}.merge"
            self._dispatch("child", merged.payload, list(plan.minibatch), stage, plan.index, reuse=self._lookup(slot))
        else:
            parent = self.state.by_id[plan.parent_id].payload
            stage = f"p{plan.index}.parent"
            self._dispatch("parent", parent, list(plan.minibatch), stage, plan.index, reuse=self._lookup(slot))

    def _lookup(self, slot: Slot, *own: BatchDone | None) -> Lookup:
        """What the slot's next batch may reuse: the evaluations committed before its plan, and ``own``."""
        return self.evaluations.lookup(slot.commits_at_plan, *own)

    def _stop(self, reason: str, message: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
            self.bus.emit(SearchStopped(reason), message)

    # -- messages -------------------------------------------------------------------------------------------

    async def _on_batch(self, batch: BatchDone) -> None:
        info = self._batches.pop(batch.batch_id)
        count_batch(
            self.counters, batch, heldout=info.kind == "heldout", failure_tolerance=self.settings.failure_tolerance
        )
        if info.kind == "seed":
            self._on_seed(batch)
            return
        if info.kind == "heldout":
            n = len(batch.results)
            self.ledger.settle(self.ledger.estimate(heldout=n), actual_amount(self.ledger, batch, heldout=True))
            if self._heldout.record(info.candidate_id, batch.scores):
                self._finish()
            else:
                self._checkpoint(now=True)  # a whole heldout evaluation a resume need not redo
            return
        assert info.proposal_index is not None
        slot = self._slots[info.proposal_index]
        if info.kind == "parent":
            slot.parent_batch = batch
            if self.settings.skip_perfect_score and all(
                score >= self.settings.perfect_score for score in batch.scores.values()
            ):
                slot.perfect = True  # nothing to reflect on: no proposer call (GEPA's skip_perfect_score)
                await self._edits_known(slot.plan.index, ())
                self._advance()
                return
            assert self._propose_out is not None
            request = reflection_request(self.state, self.settings, slot, batch, rejected=self._rejected_edits(slot))
            await self._propose_out.send(ProposeJob(slot.plan.index, request))
        elif info.kind == "child":
            slot.children[info.child_index].batch = batch
            self._advance()
        elif info.kind == "pareto":
            slot.pareto_batch = batch
            self._advance()

    async def _on_proposal(self, done: ProposeDone) -> None:
        slot = self._slots[done.proposal_index]
        if done.time_limit:  # given up in an outage once the time limit passed: decided in order, nothing adopted
            slot.time_limit = True
            if slot.first_usage is not None:  # asked again: the first call was served, and is charged
                slot.proposal = ProposerResult(texts=(), usage=slot.first_usage, raw_text="")
            self._stop("max_time_seconds", "the time limit passed while the proposer served nothing")
            await self._edits_known(slot.plan.index, ())
            self._advance()
            return
        if isinstance(done.error, ProposerReplyError):  # served, but unusable: a failed proposal, decided in order
            usage = done.error.usage if isinstance(done.error.usage, Usage) else Usage()
            self.counters.proposer_usage += usage
            failed = ProposerResult(texts=(), usage=usage, raw_text=done.error.raw_reply)
            slot.proposal = self._with_first_call(failed, slot)
            if slot.first_usage is None:
                slot.failure = failure_summary(done.error)
            else:  # asked again: the first reply stands, and held nothing but repeats (a duplicate, not a failure)
                slot.duplicates += 1
            await self._edits_known(slot.plan.index, ())
            self._advance()
            return
        if done.error is not None:
            raise done.error
        assert done.result is not None
        self.counters.proposer_usage += done.result.usage
        if self._shares_edits(slot) and slot.first_usage is None:
            slot.waiting = done.result  # decided once every earlier proposal in flight has its texts
            await self._release_waiting()
            return
        await self._take_proposal(slot, done.result)

    async def _take_proposal(self, slot: Slot, result: ProposerResult) -> None:
        """The proposer's texts become the slot's children (a text equal to its parent, a sibling or, with
        proposal memory, a known one is not rolled out) and go to their minibatch."""
        plan = slot.plan
        in_flight = (self._in_flight_edits(slot) or []) if slot.first_usage is not None else []
        for text in result.texts[: self.settings.proposals_per_call]:
            payload = self.state.child_payload(plan, text)
            cid = candidate_id(payload)
            if cid != plan.parent_id and all(child.candidate_id != cid for child in slot.children):
                if self.settings.proposal_memory and self._known_to(slot, cid):
                    slot.duplicates += 1  # in the pool, or rejected for this parent, before the plan: not rolled out
                    continue
                if self._repeating(slot, payload, in_flight):
                    slot.duplicates += 1  # asked again and still repeating an edit in flight: not rolled out
                    continue
                slot.children.append(Child(payload, cid))
        slot.proposal = self._with_first_call(result, slot)
        await self._edits_known(plan.index, tuple(child.payload for child in slot.children))
        if slot.unchanged:
            self._advance()
            return
        lookup = self._lookup(slot)  # (a child equal to a candidate evaluated before)
        for index, child in enumerate(slot.children):
            stage = f"p{plan.index}.child"
            self._dispatch("child", child.payload, list(plan.minibatch), stage, plan.index, index, reuse=lookup)

    # -- edits in flight (gepa.pipeline.concurrent_edits) -------------------------------------------------------

    def _shares_edits(self, slot: Slot) -> bool:
        """Whether the slot's texts are checked against the edits of the proposals in flight when it was planned."""
        return self._share and slot.plan.merge is None and slot.commits_at_plan < slot.plan.index

    def _with_first_call(self, result: ProposerResult, slot: Slot) -> ProposerResult:
        """``result`` with the first call's usage added when the proposer was asked again."""
        return result if slot.first_usage is None else replace(result, usage=slot.first_usage + result.usage)

    async def _edits_known(self, index: int, children: tuple[dict[str, str], ...]) -> None:
        """Proposal ``index`` has its final texts (none: a merge, a perfect minibatch, a failed call): the
        proposals after it that were waiting for them may go on."""
        if not self._share:
            return
        self._edits[index] = (self._slots[index].plan.parent_id, children)
        await self._release_waiting()

    def _in_flight_edits(self, slot: Slot) -> list[tuple[int, dict[str, str]]] | None:
        """The edits of the proposals in flight when ``slot`` was planned (a fixed set: those planned before it and
        not yet committed then), each carried onto the slot's parent; None while one of them has no texts yet."""
        out: list[tuple[int, dict[str, str]]] = []
        for index in range(slot.commits_at_plan, slot.plan.index):
            known = self._edits.get(index)
            if known is None:
                if index in self._slots:
                    return None
                continue  # committed by a run checkpointed before its edits were kept: nothing to compare
            parent_id, children = known
            for child in children:
                carried = self._carried(parent_id, child, slot.plan.parent_id)
                if carried is not None:
                    out.append((index, carried))
        return out

    def _carried(self, parent_id: str, child: dict[str, str], onto_id: str) -> dict[str, str] | None:
        """Another proposal's child (of ``parent_id``) as a version of ``onto_id``: its edit carried onto it, or
        the child itself when it descends from it; None when neither descends from the other."""
        by_id = self.state.by_id
        if parent_id == onto_id or descends_from(by_id[parent_id], onto_id, by_id):
            return child
        if descends_from(by_id[onto_id], parent_id, by_id):
            return rebase_payload(by_id[parent_id].payload, child, by_id[onto_id].payload)
        return None

    def _repeating(
        self, slot: Slot, payload: dict[str, str], in_flight: list[tuple[int, dict[str, str]]]
    ) -> tuple[int, ...]:
        """The proposals among ``in_flight`` (:meth:`_in_flight_edits`) whose edit ``payload`` (a child of the slot's
        parent) repeats."""
        parent = self.state.by_id[slot.plan.parent_id].payload
        return tuple(dict.fromkeys(index for index, other in in_flight if repeats_edit(parent, payload, other)))

    async def _release_waiting(self) -> None:
        """Decide every waiting slot whose earlier proposals in flight all have their texts, in proposal order: a
        reply whose every new text repeats one of their edits is asked again, with those edits in its request (no
        rollout spent on it); any other reply goes on."""
        for index in sorted(self._slots):
            slot = self._slots.get(index)
            if slot is None or slot.waiting is None:
                continue
            edits = self._in_flight_edits(slot)
            if edits is None:
                continue
            result, slot.waiting = slot.waiting, None
            texts = result.texts[: self.settings.proposals_per_call]
            parent = self.state.by_id[slot.plan.parent_id].payload
            payloads = [p for p in (self.state.child_payload(slot.plan, t) for t in texts) if p != parent]
            repeated = [self._repeating(slot, payload, edits) for payload in payloads]
            if not payloads or not all(repeated):
                await self._take_proposal(slot, result)
                continue
            slot.repeated = tuple(sorted({i for indices in repeated for i in indices}))
            slot.first_usage = result.usage
            assert slot.parent_batch is not None and self._propose_out is not None
            module = slot.plan.module
            concurrent = tuple(
                ConcurrentEdit(i, cut_text(other.get(module, ""), self.settings.max_feedback_chars))
                for i, other in edits
                if other.get(module, "") != parent.get(module, "")
            )
            request = reflection_request(
                self.state,
                self.settings,
                slot,
                slot.parent_batch,
                rejected=self._rejected_edits(slot),
                concurrent=concurrent,
            )
            await self._propose_out.send(ProposeJob(index, request, attempt=2))

    # -- memory (gepa.proposal_memory) ---------------------------------------------------------------------

    def _rejected_for(self, slot: Slot) -> list[dict[str, Any]]:
        """The registry's entries for texts proposed from this slot's parent and module and rejected by a proposal
        committed before this one was planned (a fixed set: no timing), oldest first."""
        plan = slot.plan
        found = [
            entry
            for entry in self.registry.values()
            if entry.get("status") == "rejected"
            and list(entry.get("parent_ids") or ()) == [plan.parent_id]  # a list here, a tuple rebuilt on resume
            and entry.get("module_changed") == plan.module
            and int(entry.get("proposal_index", slot.commits_at_plan)) < slot.commits_at_plan
        ]
        return sorted(found, key=lambda entry: int(entry["proposal_index"]))

    def _rejected_edits(self, slot: Slot) -> tuple[RejectedEdit, ...]:
        """What the proposer is told was tried and rejected from this parent (the most recent, at most
        ``proposal_memory_size``)."""
        if not self.settings.proposal_memory or slot.plan.merge is not None:
            return ()
        recent = self._rejected_for(slot)[-self.settings.proposal_memory_size :]
        module = slot.plan.module
        return tuple(
            RejectedEdit(
                proposal_index=int(entry["proposal_index"]),
                text=cut_text(str(entry["payload"][module]), self.settings.max_feedback_chars),
                minibatch_mean=None if not entry.get("minibatch_scores") else mean_score(entry["minibatch_scores"]),
                reason=str(entry.get("reason") or "rejected"),
            )
            for entry in recent
        )

    def _known_to(self, slot: Slot, cid: str) -> bool:
        """Whether ``cid`` was already in the pool, or already rejected for this parent, when ``slot`` was planned."""
        record = self.state.by_id.get(cid)
        if record is not None and record.pool_index <= slot.plan.pool_version:
            return True
        return any(entry["candidate_id"] == cid for entry in self._rejected_for(slot))

    # -- the reorder buffer ---------------------------------------------------------------------------------

    def _advance(self) -> None:
        while (slot := self._slots.get(self._next_decide)) is not None and slot.ready_to_decide:
            self._decide(slot)
            self._next_decide += 1
        self._release_head()
        while (slot := self._slots.get(self._next_commit)) is not None and slot.ready_to_commit:
            self._commit(slot)
            del self._slots[self._next_commit]
            self._next_commit += 1
            self._checkpoint()
            if slot.failure is not None:
                self._last_proposer_failure = slot.failure
            if slot.proposal is not None and self.counters.proposer_failures:
                # past the proposer's failure tolerance the run fails, checked after every committed call
                last = self._last_proposer_failure or "the last failed call's reply is in proposer_calls/"
                check_proposer_failures(self.settings, self.counters, last)
            self._fill()
            self._release_head()
        self._forget_edits()

    def _forget_edits(self) -> None:
        """Drop the kept edits no proposal in flight can still be compared with."""
        oldest = min((slot.commits_at_plan for slot in self._slots.values()), default=self._next_commit)
        for index in [index for index in self._edits if index < oldest]:
            del self._edits[index]

    def _decide(self, slot: Slot) -> None:
        """Decide (:func:`~synth_opt.actors.decisions.decide_proposal`); an accepted child that is new to the
        pool and to the proposals before this one goes on to the pareto rows. With ``staleness_policy =
        "rebase"`` every accepted child waits for :meth:`_release_head` instead, which checks what is new against
        the pool once every earlier proposal has committed."""
        decision, chosen, plan = decide_proposal(slot, self.state, self.settings, self._added), slot.chosen, slot.plan
        if chosen is None or not decision.accepted:
            return
        if self._rebasing:
            slot.needs_pareto = slot.held = True
            self._added[plan.index] = True
            return
        cid = chosen.candidate_id
        known = cid in self.state.by_id or cid in self._pending_children
        if not known:
            slot.needs_pareto = True
            self._added[plan.index] = True
            self._pending_children.add(cid)
            self._dispatch_pareto(slot, chosen.payload)

    def _dispatch_pareto(self, slot: Slot, payload: dict[str, str]) -> None:
        index = slot.plan.index
        lookup = self._lookup(slot, slot.parent_batch, *(child.batch for child in slot.children))
        self._dispatch("pareto", payload, list(self.state.pareto_ids), f"p{index}.pareto", index, reuse=lookup)

    # -- rebasing -------------------------------------------------------------------------------------------

    @property
    def _rebasing(self) -> bool:
        return self.settings.staleness_policy == "rebase"

    def _release_head(self) -> None:
        """The held proposal next to commit: carry its accepted reflection child onto the pool as it is now
        (every earlier proposal has committed) and score the result on the pareto rows, unless the pool already
        holds it. Called after every decision and commit, so a proposal is released as soon as it is next."""
        slot = self._slots.get(self._next_commit)
        if slot is None or not slot.held:
            return
        slot.held = False
        chosen = slot.chosen
        assert chosen is not None
        payload, cid = chosen.payload, chosen.candidate_id
        if slot.plan.merge is None:
            slot.rebase = self._rebase(slot.plan, chosen)
        if slot.rebase is not None and slot.rebase.applied:
            payload, cid = slot.rebase.payload, slot.rebase.candidate_id
            if cid in self.state.by_id:
                slot.rebase = replace(slot.rebase, outcome="contained")
        if cid in self.state.by_id:
            slot.needs_pareto = False
        else:
            self._dispatch_pareto(slot, payload)

    def _rebase(self, plan: ProposalPlan, child: Child) -> Rebase | None:
        """The child's edit (against the parent it was proposed from) merged onto
        :meth:`~synth_opt.gepa.GepaState.rebase_target`; None when that is still the parent."""
        target = self.state.rebase_target(plan)
        if target.candidate_id == plan.parent_id:
            return None
        payload = rebase_payload(self.state.by_id[plan.parent_id].payload, child.payload, target.payload)
        if payload is None:
            return Rebase(target.candidate_id, "conflict", child.payload, child.candidate_id)
        return Rebase(target.candidate_id, "rebased", payload, candidate_id(payload))

    def _warn_beyond_reservation(self, slot: Slot) -> None:
        """Once a run, under a token or cost limit: a proposer call that counted more than its proposal reserved
        for it. It is charged what it reports, so such excesses can take the run past the limit."""
        limits = self.ledger.limits
        if self._warned_beyond_reservation or slot.proposal is None:
            return
        if limits.total_tokens is None and limits.cost_usd is None:
            return  # nothing to pass: not worth the sums
        calls = 1 if slot.first_usage is None else 2
        reserved = self.ledger.estimate(proposer_calls=calls)
        used = actual_amount(self.ledger, proposer=slot.proposal, proposer_calls=calls)
        if limits.total_tokens is not None and used.tokens > reserved.tokens:
            key, over = "gepa.max_total_tokens", f"{used.tokens} tokens where {reserved.tokens} were reserved"
        elif limits.cost_usd is not None and used.cost_usd > reserved.cost_usd:
            key, over = "gepa.max_cost_usd", f"${used.cost_usd:.6f} where ${reserved.cost_usd:.6f} was reserved"
        else:
            return
        self._warned_beyond_reservation = True
        self.bus.emit(
            ConfigWarning(key),
            f"{key}: the proposer call of proposal {slot.plan.index} counted {over}; a call is charged what its "
            "server reports, so calls like it can take the run past the limit. Raise gepa.proposer_estimated_tokens "
            "(and _cost_usd), or for openai_compatible set max_tokens in [proposer] config and leave room in "
            "max_prompt_tokens for a tokenizer that counts more than 4 characters a token",
            lane="supervisor",
        )

    def _commit(self, slot: Slot) -> None:
        plan, decision, chosen = slot.plan, slot.decision, slot.chosen
        assert decision is not None
        child_batches = [child.batch for child in slot.children]
        self.ledger.settle(
            slot.reserved,
            actual_amount(
                self.ledger,
                slot.parent_batch,
                *child_batches,
                slot.pareto_batch,
                proposer=slot.proposal,
                proposer_calls=1 if slot.first_usage is None else 2,
            ),
        )
        self._warn_beyond_reservation(slot)
        for batch in (slot.parent_batch, *child_batches, slot.pareto_batch) if self._reuse else ():
            self.evaluations.add(batch, visible_from=plan.index + 1)  # reusable by proposals planned next
        chosen_id = plan.parent_id if chosen is None else chosen.candidate_id
        if self._rebasing:  # every earlier proposal has committed: the gap is exact
            slot.staleness = self.state.staleness(plan)
        emit_proposal_created(self.bus, slot, chosen_id)
        if slot.parent_batch is not None:
            emit_scores(self.bus, plan.parent_id, Stage(plan.index, "parent"), slot.parent_batch)
        for child in slot.children:
            assert child.batch is not None
            emit_candidate(self.bus, child.candidate_id, child.payload, plan.parent_ids, plan.module, plan.index)
            stage = "merge" if plan.merge is not None else "child"
            emit_scores(self.bus, child.candidate_id, Stage(plan.index, stage), child.batch)
        emit_decision(self.bus, slot, chosen_id)
        previous_best = self.state.best()
        record: CandidateRecord | None = None
        if slot.pareto_batch is not None and chosen is not None:
            self._pending_children.discard(chosen.candidate_id)
            payload, scored_id = chosen.payload, chosen.candidate_id
            if slot.rebase is not None and slot.rebase.applied:
                payload, scored_id = slot.rebase.payload, slot.rebase.candidate_id
                emit_candidate(self.bus, scored_id, payload, slot.pool_parent_ids, plan.module, plan.index)
            emit_scores(self.bus, scored_id, Stage(plan.index, "pareto"), slot.pareto_batch)
            batch = slot.pareto_batch
            record = self.state.commit(plan, payload, batch.scores, batch.objective_scores, slot.pool_parent_ids)
        else:
            self.state.commit(plan)
        register_proposal(self.registry, self.bus, slot, record)
        prune_added(self._added, plan.index, self.settings.max_in_flight)
        if slot.proposal is not None:  # the proposer was called (not a merge, not a perfect minibatch)
            count_proposer_call(self.counters, failed=slot.failure is not None)
        if decision.accepted:
            self.counters.accepted += 1
        else:
            self.counters.rejected += 1
        if record is not None:
            changed = [row for row, front in self.state.fronts().items() if record.candidate_id in front]
            emit_frontier(self.bus, self.state, changed)
        best = self.state.best()
        if best.mean > previous_best.mean:
            self.counters.commits_since_improvement = 0
        else:
            self.counters.commits_since_improvement += 1
        if any(batch is not None and batch.live for batch in (slot.parent_batch, *child_batches, slot.pareto_batch)):
            self.counters.commits_without_rollouts = 0
        else:
            self.counters.commits_without_rollouts += 1
        stop = first_stop(
            StopView(
                commits=plan.index + 1,
                best_mean=best.mean,
                commits_since_improvement=self.counters.commits_since_improvement,
                score_threshold=self.settings.score_threshold,
                no_improvement_iterations=self.settings.no_improvement_iterations,
                commits_without_rollouts=self.counters.commits_without_rollouts,
                max_commits_without_rollouts=self.settings.max_commits_without_rollouts if self._reuse else None,
            )
        )
        if stop is not None:
            self._stop(*stop)
        emit_budget(self.bus, self.ledger, self.counters, plan.index, reuse=self._reuse)
        self._forecast(plan.index)

    def _forecast(self, proposal_index: int) -> None:
        """The live forecast after a commit (:func:`~synth_opt.gepa.forecast.live_forecast`), from the ledger's
        committed totals only, so it is the same on every replay."""
        committed = self._next_commit + 1  # this commit's proposal included (the counter moves after it)
        seed = self._seed_used or Amount(train_rollouts=len(self.state.pareto_ids))
        used, limits = self.ledger.used, self.ledger.limits
        worst = worst_case_estimate(
            self.ledger, self.state, self.settings.proposals_per_call, proposer_calls=2 if self._share else 1
        )
        in_flight = sum(index > proposal_index for index in self._slots)
        spends = {
            limits.train_cap_key: Spend(
                limits.train_rollouts - used.train_rollouts,
                worst.train_rollouts,
                (used.train_rollouts - seed.train_rollouts) / committed,
            )
        }
        held = self._heldout.reserved
        if limits.total_tokens is not None:
            spends["max_total_tokens"] = Spend(
                limits.total_tokens - used.tokens - held.tokens, worst.tokens, (used.tokens - seed.tokens) / committed
            )
        if limits.cost_usd is not None:
            spends["max_cost_usd"] = Spend(
                limits.cost_usd - used.cost_usd - held.cost_usd,
                worst.cost_usd,
                (used.cost_usd - seed.cost_usd) / committed,
            )
        usage = {
            "train_rollouts": (used.train_rollouts, (used.train_rollouts - seed.train_rollouts) / committed),
            "tokens": (used.tokens, (used.tokens - seed.tokens) / committed),
            "cost_usd": (used.cost_usd, (used.cost_usd - seed.cost_usd) / committed),
        }
        forecast = live_forecast(committed, self.counters.accepted, in_flight, spends, usage)
        emit_forecast(self.bus, proposal_index, forecast)

    # -- the end --------------------------------------------------------------------------------------------

    def _maybe_finish_search(self) -> None:
        if self._stop_reason is None or self._slots or self._heldout.waiting or self._finished:
            return
        if self.state.pool and not self._heldout.started and self.settings.heldout_ids:
            self._start_heldout()
        elif not self._heldout.waiting:
            self._finish()

    def _start_heldout(self) -> None:
        if not self._heldout.start(
            self.state, self.ledger, self.settings.heldout_ids, self._set_state, self._dispatch_heldout
        ):
            self._finish()
        else:
            self._checkpoint()  # the search's last commits are resumable without the phase's evaluations

    def _dispatch_heldout(self, payload: dict[str, str], rows: list[str]) -> None:
        # every proposal has committed: the whole store is fixed
        self._dispatch("heldout", payload, rows, "heldout", None, reuse=self.evaluations.lookup(None))

    def _finish(self) -> None:
        emit_heldout_scores(self.bus, self.state.order, self._heldout.scores)
        self._finished = True

    def _set_state(self, name: str) -> None:
        emit_state(self.bus, name)

    # -- checkpoints and resume ------------------------------------------------------------------------------

    def _checkpoint(self, *, now: bool = False) -> None:
        """Offer a checkpoint after a commit; the sink takes the snapshot now or later (any moment between two
        messages is a consistent one)."""
        if self._checkpoint_sink is not None:
            self._checkpoint_sink(self.snapshot, now=now)

    def snapshot(self) -> dict[str, Any] | None:
        """Everything a resume needs; None once the heldout evaluations are all in (the run is ending: a resume
        from the checkpoint before redoes the last of them).

        Work in flight is recorded by its plan only: a resume runs it again from the start (served from the cache
        when there is one), so the counters exclude what in-flight work has received so far; so is a heldout
        evaluation in flight."""
        if self._heldout.done:
            return None
        return take_snapshot(
            sequence_number=self.bus.sequence_number,
            commits=self._next_commit,
            state=self.state,
            ledger=self.ledger,
            counters=self.counters,
            slots=self._slots,
            added=self._added,
            stop_reason=self._stop_reason,
            heldout_reserved=self._heldout.reserved,
            reuse_evaluations=self._reuse,
            seed_used=self._seed_used,
            concurrent_edits=self._edits if self._share else None,
            heldout=self._heldout.to_checkpoint(),
        )

    def resume(
        self,
        snapshot: dict[str, Any],
        records: dict[str, CandidateRecord],
        registry: dict[str, dict[str, Any]],
        evaluations: EvaluationStore | None = None,
    ) -> None:
        """Return to a checkpoint before ``run``: the run then re-dispatches the work that was in flight.
        ``evaluations``: the store rebuilt from the feed kept at the checkpoint (with ``reuse_evaluations``; a run
        checkpointed before reuse existed goes on without it)."""
        restored = restore_checkpoint(snapshot, self.state, records, self.ledger)
        self._reuse = self._reuse and restored.reuse_evaluations
        if self._reuse:
            if evaluations is None:
                raise ValueError("resuming a run that reuses evaluations needs the store rebuilt from its feed")
            evaluations.keep_at_most(self.settings.max_feedback_chars)
            self.evaluations = evaluations
        self.ledger = restored.ledger
        self.counters = restored.counters
        self.registry = dict(registry)
        self._added = restored.added
        self._next_commit = self._next_decide = restored.commits
        self._stop_reason = restored.stop_reason
        self._heldout.reserved = restored.heldout_reserved
        self._slots.update(restored.slots)
        self._seed_used = restored.seed_used
        self._share = self._share and restored.concurrent_edits is not None
        self._edits = dict(restored.concurrent_edits or {})
        self._heldout_progress = restored.heldout
        self._resumed = True

    def _continue_after_resume(self) -> None:
        if self._heldout_progress is not None:
            self._heldout.resume(
                self._heldout_progress, self.state, self.settings.heldout_ids, self._set_state, self._dispatch_heldout
            )
            if not self._heldout.waiting:
                self._finish()
            return
        self._set_state("searching")
        for _, slot in sorted(self._slots.items()):
            self._start_slot(slot)
        self._fill()

    def release_reservations(self) -> None:
        """On a cancel: give back everything reserved for work that will not finish."""
        for slot in self._slots.values():
            self.ledger.settle(slot.reserved, Amount())
        self._slots.clear()
        self._heldout.release(self.ledger)

    def outcome(self, *, stop_reason: str | None = None) -> SearchOutcome:
        """What the search has committed so far (the whole result once ``run`` returns)."""
        seed, best = self.state.pool[0], self.state.best()
        return SearchOutcome(
            seed=seed,
            best=best,
            stop_reason=stop_reason or self._stop_reason or "max_total_rollouts",
            heldout_scores=dict(self._heldout.scores),
            rollouts_train=self.counters.rollouts_train,
            rollouts_heldout=self.counters.rollouts_heldout,
            rollout_usage=self.counters.rollout_usage,
            proposer_usage=self.counters.proposer_usage,
            registry=self.registry,
            proposals=self._next_commit,
            accepted=self.counters.accepted,
            proposals_failed=self.counters.proposer_failures,
            reused_train=self.counters.reused_train,
            reused_heldout=self.counters.reused_heldout,
        )
