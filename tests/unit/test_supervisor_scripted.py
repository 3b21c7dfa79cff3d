"""The supervisor alone, driven through in-memory lanes by a script that plays the rollout and proposer workers.

The script reads the supervisor's requests from its lanes (``RolloutJob``s, ``ProposeJob``s) and answers them:
every rollout's reward is a function of the candidate's text and the row, every proposal's text (or failure) a
function of the proposal's index. The tests check the decisions (which child is accepted or rejected, the
frontier, why the search stops) and that they do not depend on the order in which the lanes answer.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from synth_opt.actors.messages import BatchDone, ProposeDone, ProposeJob, RolloutDone, RolloutJob, SupervisorMessage
from synth_opt.actors.supervisor import SearchOutcome, Supervisor, SupervisorSettings
from synth_opt.container.wire import RolloutReply
from synth_opt.errors import ProposerReplyError
from synth_opt.events import DECISION_TYPES, Event, EventBus
from synth_opt.gepa import (
    STOPPING_RULES,
    BudgetLedger,
    Estimates,
    GepaState,
    Limits,
    SearchSettings,
    Stop,
    StopView,
    register_stopping_rule,
)
from synth_opt.gepa.candidates import candidate_id
from synth_opt.lanes import Channel, open_channel
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import render_prompt
from synth_opt.usage import Usage

TRAIN = [f"t{i}" for i in range(6)]
PARETO = [f"p{i}" for i in range(4)]

# reward by candidate text: on every train row, and on each pareto row
TRAIN_REWARD = {"v0": 0.25, "v1": 0.5, "v2": 0.125, "v3": 0.75}
PARETO_REWARD = {
    "v0": {"p0": 0.25, "p1": 0.25, "p2": 0.25, "p3": 0.25},
    "v1": {"p0": 0.75, "p1": 0.75, "p2": 0.25, "p3": 0.25},  # mean 0.5
    "v3": {"p0": 0.5, "p1": 0.5, "p2": 1.0, "p3": 1.0},  # mean 0.75, but v1 still leads on p0 and p1
}
FAIL = "<unusable reply>"
# proposal index -> what the proposer answers: a text, or an unusable reply (a failed proposal)
PROPOSALS = {0: "v1", 1: "v2", 2: FAIL, 3: "v3"}


def reward(text: str, row: str) -> float:
    if row in PARETO:
        return PARETO_REWARD.get(text, {}).get(row, 0.0)
    return TRAIN_REWARD.get(text, 0.0)


def cid(text: str) -> str:
    return candidate_id({"instruction": text})


Order = Callable[[list[Any]], list[Any]]


def in_order(items: list[Any]) -> list[Any]:
    return items


def reversed_order(items: list[Any]) -> list[Any]:
    return items[::-1]


def shuffled(seed: int) -> Order:
    rng = random.Random(seed)

    def order(items: list[Any]) -> list[Any]:
        return rng.sample(items, len(items))

    return order


async def all_blocked() -> None:
    """Return once every other task waits on something (what ``anyio.wait_all_tasks_blocked`` checks, without its
    0.1 s sleep between checks on asyncio, which made each test take seconds)."""
    this = asyncio.current_task()
    while True:
        await asyncio.sleep(0)
        waiting = (getattr(task, "_fut_waiter", None) for task in asyncio.all_tasks() if task is not this)
        if all(future is not None and not future.done() for future in waiting):
            return


@dataclass
class ScriptedLanes:
    """Both workers in one task: whenever every other task is blocked, it takes every request waiting in the
    lanes, answers all of them, and sends the answers (whole batches and proposer replies) in ``order``."""

    order: Order = in_order
    proposals: dict[int, str] = field(default_factory=lambda: dict(PROPOSALS))
    batches: dict[int, list[RolloutJob]] = field(default_factory=dict)
    asked: list[int] = field(default_factory=list)
    requests: dict[int, Any] = field(default_factory=dict)  # proposal index -> the reflection request it got
    again: dict[int, str] = field(default_factory=dict)  # proposal index -> the text it answers when asked again
    usage: Usage = field(default_factory=lambda: Usage(calls=1))  # what each proposer call reports
    asked_again: dict[int, Any] = field(default_factory=dict)  # proposal index -> the request it got the second time
    stages: list[str] = field(default_factory=list)  # each rollout's stage, in the order asked
    reordered: int = 0
    """Rounds whose answers went out in another order than the requests came in."""

    async def serve(
        self,
        rollouts: MemoryObjectReceiveStream[RolloutJob],
        proposals: MemoryObjectReceiveStream[ProposeJob],
        inbox: MemoryObjectSendStream[SupervisorMessage],
    ) -> None:
        async with rollouts, proposals, inbox:
            open_lanes = 2
            while open_lanes:
                await all_blocked()
                answers: list[SupervisorMessage] = []
                open_lanes = 0
                for lane, answer in ((rollouts, self._rollout), (proposals, self._propose)):
                    closed = self._drain(lane, answer, answers)
                    open_lanes += not closed
                ordered = self.order(answers)
                self.reordered += ordered != answers
                for message in ordered:
                    await inbox.send(message)

    @staticmethod
    def _drain(
        lane: MemoryObjectReceiveStream[Any], answer: Callable[[Any], SupervisorMessage | None], out: list[Any]
    ) -> bool:
        """Answer every request waiting in ``lane``; True once the supervisor closed it."""
        while True:
            try:
                request = lane.receive_nowait()
            except anyio.WouldBlock:
                return False
            except anyio.EndOfStream:
                return True
            message = answer(request)
            if message is not None:
                out.append(message)

    def _rollout(self, job: RolloutJob) -> BatchDone | None:
        self.stages.append(job.stage)
        batch = self.batches.setdefault(job.batch_id, [])
        batch.append(job)
        if len(batch) < job.batch_size:
            return None
        del self.batches[job.batch_id]
        results = tuple(
            RolloutDone(
                job, RolloutReply(job.rollout_id, "ok", reward(job.candidate["instruction"], job.task_id)), None, 0.0
            )
            for job in sorted(batch, key=lambda job: job.position)
        )
        return BatchDone(job.batch_id, results)

    def _propose(self, job: ProposeJob) -> ProposeDone:
        if job.attempt > 1:
            self.asked_again[job.proposal_index] = job.request
            text = self.again[job.proposal_index]
        else:
            self.asked.append(job.proposal_index)
            self.requests[job.proposal_index] = job.request
            text = self.proposals.get(job.proposal_index, f"v{job.proposal_index + 1}")
        if text == FAIL:
            error = ProposerReplyError("no proposal in the reply", raw_reply=FAIL, usage=Usage(calls=1))
            return ProposeDone(job.proposal_index, None, error)
        return ProposeDone(job.proposal_index, ProposerResult(texts=(text,), usage=self.usage), None)


@dataclass
class Run:
    outcome: SearchOutcome
    supervisor: Supervisor
    events: list[Event]
    asked: list[int]
    reordered: int
    lanes: ScriptedLanes | None = None

    def status(self, text: str) -> str:
        return str(self.supervisor.registry[cid(text)]["status"])

    def decisions(self) -> list[tuple[str, str]]:
        return [(event.type, event.message) for event in self.events if event.type in DECISION_TYPES]

    def decided(self) -> list[str]:
        """The messages of the decisions proper: acceptance, failure, stop."""
        kinds = ("acceptance.decided", "proposal.failed", "search.stopped")
        return [event.message for event in self.events if event.type in kinds]

    def stopped(self) -> list[str]:
        return [event.message for event in self.events if event.type == "search.stopped"]


async def drive(
    *,
    max_in_flight: int = 1,
    train_rollouts: int = 33,
    score_threshold: float | None = None,
    no_improvement_iterations: int | None = None,
    order: Order = in_order,
    texts: dict[int, str] | None = None,
    again: dict[int, str] | None = None,
    memory: bool = False,
    concurrent_edits: bool = False,
    staleness_policy: str = "full",
    ledger: BudgetLedger | None = None,
    usage: Usage | None = None,
) -> Run:
    bus = EventBus()
    events: list[Event] = []
    bus.on_event(events.append)
    state = GepaState(SearchSettings(seed=7, modules=("instruction",), selector="current_best"), PARETO, TRAIN)
    settings = SupervisorSettings(
        run_id="scripted",
        max_in_flight=max_in_flight,
        heldout_ids=(),
        rows={row: {"id": row} for row in TRAIN + PARETO},
        score_threshold=score_threshold,
        no_improvement_iterations=no_improvement_iterations,
        proposal_memory=memory,
        concurrent_edits=concurrent_edits,
        staleness_policy=staleness_policy,
    )
    ledger = ledger or BudgetLedger(Limits(train_rollouts=train_rollouts, heldout_rollouts=0))
    supervisor = Supervisor(
        state=state, ledger=ledger, bus=bus, settings=settings, seed={"instruction": "v0"}, clock=lambda: 0.0
    )
    inbox: Channel[SupervisorMessage] = open_channel(1000)
    rollouts: Channel[RolloutJob] = open_channel(1000)
    proposals: Channel[ProposeJob] = open_channel(1000)
    lanes = ScriptedLanes(
        order=order,
        proposals=dict(PROPOSALS if texts is None else texts),
        again=dict(again or {}),
        usage=usage or Usage(calls=1),
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lanes.serve, rollouts.receive, proposals.receive, inbox.send)
            outcome = await supervisor.run(inbox.receive, rollouts.send, proposals.send)
    return Run(outcome, supervisor, events, lanes.asked, lanes.reordered, lanes)


@pytest.mark.anyio
async def test_each_proposal_is_decided_and_the_search_stops_when_the_budget_is_spent() -> None:
    run = await drive()
    assert run.asked == [0, 1, 2, 3]
    assert [run.status(text) for text in ("v0", "v1", "v2", "v3")] == ["seed", "accepted", "rejected", "accepted"]
    assert run.decided() == [
        "proposal 0: accepted (improved, 1.5 vs 0.75)",
        "proposal 1: rejected (not_improved, 0.375 vs 1.5)",
        "proposal 2: failed (no proposal in the reply; the reply starts: '<unusable reply>')",
        "proposal 3: accepted (improved, 2.25 vs 1.5)",
        "the next proposal does not fit in the budget (max_total_rollouts)",
    ]
    outcome = run.outcome
    assert (outcome.proposals, outcome.accepted, outcome.proposals_failed) == (4, 2, 1)
    assert outcome.stop_reason == "max_total_rollouts"
    assert run.stopped() == ["the next proposal does not fit in the budget (max_total_rollouts)"]
    assert outcome.rollouts_train == 33  # seed 4, then 10, 6, 3 and 10: exactly the cap
    assert outcome.best.candidate_id == cid("v3") and outcome.best.mean == 0.75
    assert run.supervisor.state.order == [cid("v0"), cid("v1"), cid("v3")]
    fronts = {row: set(front) for row, front in run.supervisor.state.fronts().items()}
    assert fronts == {"p0": {cid("v1")}, "p1": {cid("v1")}, "p2": {cid("v3")}, "p3": {cid("v3")}}


@pytest.mark.anyio
async def test_without_reuse_the_run_keeps_no_evaluations() -> None:
    """Without ``reuse_evaluations`` nothing reads the store, so nothing is kept in it (a long run would hold every
    reply in memory; the store is filled with reuse on: tests/integration/test_evaluation_reuse.py)."""
    run = await drive()
    assert run.outcome.rollouts_train == 33 and len(run.supervisor.evaluations) == 0


@pytest.mark.anyio
async def test_the_score_threshold_stops_the_search_after_the_commit_that_reaches_it() -> None:
    run = await drive(score_threshold=0.5)
    assert run.asked == [0]
    assert run.outcome.stop_reason == "score_threshold" and run.outcome.proposals == 1
    assert run.stopped() == ["best mean 0.5000 reached score_threshold 0.5"]
    assert run.outcome.best.candidate_id == cid("v1")


@pytest.mark.anyio
async def test_no_improvement_stops_after_that_many_commits_without_a_better_best() -> None:
    run = await drive(no_improvement_iterations=2)
    assert run.asked == [0, 1, 2]  # v2 rejected, then a failed proposal: two commits without a better best
    assert run.outcome.stop_reason == "no_improvement_iterations"
    assert run.stopped() == ["no improvement in 2 proposals"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "order", [reversed_order, shuffled(1), shuffled(2)], ids=["reversed", "shuffled1", "shuffled2"]
)
async def test_decisions_do_not_depend_on_the_order_the_lanes_answer_in(order: Order) -> None:
    """Several proposals in flight: the lanes answer each round of requests in a different order, and the
    supervisor still commits in proposal order, so the decisions, the pool and the stop are the same."""
    first = await drive(max_in_flight=3, train_rollouts=60)
    other = await drive(max_in_flight=3, train_rollouts=60, order=order)
    assert first.reordered == 0 and other.reordered > 0
    assert other.decisions() == first.decisions()
    assert {k: v["status"] for k, v in other.supervisor.registry.items()} == {
        k: v["status"] for k, v in first.supervisor.registry.items()
    }
    assert other.supervisor.state.order == first.supervisor.state.order
    assert other.outcome.stop_reason == first.outcome.stop_reason == "max_total_rollouts"
    assert (other.outcome.proposals, other.outcome.accepted) == (first.outcome.proposals, first.outcome.accepted)
    assert other.outcome.rollouts_train == first.outcome.rollouts_train
    assert first.outcome.accepted >= 2 and first.status("v2") == "rejected"


@dataclass(frozen=True)
class AfterCommits:
    """A stopping rule defined here: stop after ``limit`` commits."""

    limit: int
    name: str = "after_commits"

    def check(self, view: StopView) -> Stop | None:
        return Stop(self.name, f"{view.commits} proposals committed") if view.commits >= self.limit else None


@pytest.fixture
def after_two_commits() -> Iterator[None]:
    rule = register_stopping_rule(AfterCommits(limit=2))
    try:
        yield
    finally:
        del STOPPING_RULES[rule.name]


@pytest.mark.anyio
@pytest.mark.usefixtures("after_two_commits")
async def test_a_stopping_rule_registered_here_stops_the_search() -> None:
    run = await drive()
    assert run.asked == [0, 1]
    assert run.outcome.stop_reason == "after_commits" and run.stopped() == ["2 proposals committed"]


# v2 is worse than the seed on the minibatch: rejected, and proposed again from the same parent
REPEATS = {0: "v2", 1: "v2", 2: "v2", 3: "v1"}


@pytest.mark.anyio
async def test_without_memory_a_rejected_edit_is_rolled_out_again() -> None:
    run = await drive(texts=REPEATS, train_rollouts=40)
    assert run.decided()[:3] == [f"proposal {i}: rejected (not_improved, 0.375 vs 0.75)" for i in range(3)]
    assert run.lanes is not None
    assert [run.lanes.stages.count(f"p{i}.child") for i in range(3)] == [3, 3, 3]  # v2 on each minibatch
    assert all("rejected_edits" not in request.to_json() for request in run.lanes.requests.values())


@pytest.mark.anyio
@pytest.mark.parametrize("order", [in_order, reversed_order, shuffled(3)])
async def test_with_memory_a_rejected_edit_is_shown_and_not_rolled_out_again(order: Order) -> None:
    run = await drive(texts=REPEATS, train_rollouts=40, memory=True, order=order)
    assert run.decided()[:4] == [
        "proposal 0: rejected (not_improved, 0.375 vs 0.75)",
        "proposal 1: rejected (duplicate, 0.75 vs 0.75)",
        "proposal 2: rejected (duplicate, 0.75 vs 0.75)",
        "proposal 3: accepted (improved, 1.5 vs 0.75)",
    ]
    assert run.lanes is not None
    assert [run.lanes.stages.count(f"p{i}.child") for i in range(4)] == [3, 0, 0, 3]  # the repeats cost nothing
    first, second = run.lanes.requests[0], run.lanes.requests[1]
    assert first.rejected_edits == ()
    assert [(edit.proposal_index, edit.text, edit.reason) for edit in second.rejected_edits] == [
        (0, "v2", "not_improved")
    ]
    assert "## Already tried" in render_prompt(second) and "## Already tried" not in render_prompt(first)


@pytest.mark.anyio
async def test_with_memory_a_text_already_in_the_pool_is_not_rolled_out() -> None:
    run = await drive(texts={0: "v1", 1: "v0", 2: "v3"}, train_rollouts=40, memory=True)  # v0: the seed
    assert run.decided()[:3] == [
        "proposal 0: accepted (improved, 1.5 vs 0.75)",
        "proposal 1: rejected (duplicate, 1.5 vs 1.5)",
        "proposal 2: accepted (improved, 2.25 vs 1.5)",
    ]
    assert run.lanes is not None and run.lanes.stages.count("p1.child") == 0


# proposals 0 and 1 are planned together from the seed and both answer v1: with concurrent_edits, proposal 1 is asked
# again (told of proposal 0's v1) and answers v3; with the second answer also v1, nothing of proposal 1 is rolled out
SAME_EDIT = {0: "v1", 1: "v1", 2: "v2"}
# proposal 1 repeats proposal 0's edit and, asked again, makes another
ASKED_AGAIN: dict[str, Any] = {"texts": SAME_EDIT, "again": {1: "v3"}, "train_rollouts": 60, "concurrent_edits": True}


def created(run: Run, index: int) -> dict[str, Any]:
    return next(
        e.data.to_fields() for e in run.events if e.type == "proposal.created" and e.data.proposal_index == index
    )


@pytest.mark.anyio
async def test_without_concurrent_edits_a_proposal_repeating_one_in_flight_is_rolled_out() -> None:
    run = await drive(max_in_flight=2, texts=SAME_EDIT, train_rollouts=40)
    assert run.lanes is not None and run.lanes.asked_again == {}
    assert run.lanes.stages.count("p1.child") == 3  # v1 rolled out a second time, for nothing
    assert run.decided()[:2] == [
        "proposal 0: accepted (improved, 1.5 vs 0.75)",
        "proposal 1: accepted (improved, 1.5 vs 0.75)",  # the same text: already in the pool, not scored again
    ]
    assert run.status("v1") == "accepted"


@pytest.mark.anyio
@pytest.mark.parametrize("order", [in_order, reversed_order, shuffled(4), shuffled(5)])
async def test_a_proposal_repeating_one_in_flight_is_asked_again_before_any_rollout(order: Order) -> None:
    run = await drive(max_in_flight=2, **ASKED_AGAIN, order=order)
    assert run.lanes is not None and set(run.lanes.asked_again) == {1}
    assert run.lanes.stages.count("p1.child") == 3  # only the second answer, v3, was rolled out
    second = run.lanes.asked_again[1]
    assert [(edit.proposal_index, edit.text) for edit in second.concurrent_edits] == [(0, "v1")]
    assert second.to_json()["concurrent_edits"] == [{"proposal_index": 0, "text": "v1"}]
    assert "## Already being changed" in render_prompt(second)
    assert "## Already being changed" not in render_prompt(run.lanes.requests[1])
    assert "concurrent_edits" not in run.lanes.requests[1].to_json()  # a first request is the one it always was
    assert run.decided()[:2] == [
        "proposal 0: accepted (improved, 1.5 vs 0.75)",
        "proposal 1: accepted (improved, 2.25 vs 0.75)",
    ]
    assert created(run, 1)["repeated"] == (0,) and "repeated" not in created(run, 0)
    assert run.status("v3") == "accepted"
    # both calls of proposal 1 are counted: three proposals' calls and one more
    assert run.outcome.proposer_usage.calls == run.outcome.proposals + 1


@pytest.mark.anyio
async def test_a_proposal_still_repeating_when_asked_again_rolls_nothing_out() -> None:
    run = await drive(max_in_flight=2, texts=SAME_EDIT, again={1: "v1"}, train_rollouts=40, concurrent_edits=True)
    assert run.lanes is not None and set(run.lanes.asked_again) == {1}
    assert run.lanes.stages.count("p1.child") == 0
    assert run.decided()[1] == "proposal 1: rejected (duplicate, 0.75 vs 0.75)"


@pytest.mark.anyio
async def test_an_unusable_second_reply_leaves_a_duplicate_not_a_failed_proposal() -> None:
    run = await drive(max_in_flight=2, texts=SAME_EDIT, again={1: FAIL}, train_rollouts=40, concurrent_edits=True)
    assert run.lanes is not None and set(run.lanes.asked_again) == {1}
    assert run.lanes.stages.count("p1.child") == 0
    assert run.decided()[1] == "proposal 1: rejected (duplicate, 0.75 vs 0.75)"
    assert run.outcome.proposals_failed == 0  # the first reply was usable: no failure counted against the tolerance
    assert run.outcome.proposer_usage.calls == run.outcome.proposals + 1  # the failed call is still charged


@pytest.mark.anyio
async def test_a_proposal_waits_for_the_texts_of_the_proposals_in_flight_before_it() -> None:
    """Proposal 1's reply comes first (reversed lanes): it is held until proposal 0's texts are known, so the
    comparison does not depend on which reply arrived first."""
    first = await drive(max_in_flight=3, **ASKED_AGAIN)
    other = await drive(max_in_flight=3, **ASKED_AGAIN, order=reversed_order)
    assert other.reordered > 0
    assert other.decisions() == first.decisions()
    assert other.lanes is not None and first.lanes is not None
    assert set(other.lanes.asked_again) == set(first.lanes.asked_again) == {1}


@pytest.mark.anyio
async def test_with_rebase_an_edit_repeating_one_in_flight_is_not_scored_as_contained() -> None:
    run = await drive(max_in_flight=2, **ASKED_AGAIN, staleness_policy="rebase")
    assert all(created(run, i).get("rebase") != "contained" for i in range(run.outcome.proposals))
    assert run.lanes is not None and set(run.lanes.asked_again) == {1}


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [400, 1_000, 1_600])
async def test_a_token_limit_holds_with_proposals_asked_again(limit: int) -> None:
    """A proposal planned while another is in flight may be asked again, so it reserves two proposer calls when it
    is planned: the second call never takes the run past its token limit (at 400, two calls' worth, the second
    proposal waits for the first instead of starting beside it); the search stops on that limit."""
    ledger = BudgetLedger(
        Limits(train_rollouts=1_000, heldout_rollouts=0, total_tokens=limit), Estimates(proposer_tokens=200)
    )
    run = await drive(
        max_in_flight=2,
        texts=SAME_EDIT,
        again={1: "v3"},
        concurrent_edits=True,
        ledger=ledger,
        usage=Usage(calls=1, prompt_tokens=150, completion_tokens=50, total_tokens=200),
    )
    assert run.supervisor.ledger.used.tokens <= limit and run.supervisor.ledger.reserved.tokens == 0
    assert run.outcome.stop_reason == "max_total_tokens"
    assert run.lanes is not None and bool(run.lanes.asked_again) == (limit > 400)
    calls = run.outcome.proposals + len(run.lanes.asked_again)
    assert run.outcome.proposer_usage.total_tokens == run.supervisor.ledger.used.tokens == 200 * calls
