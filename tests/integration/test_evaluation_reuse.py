"""Evaluation reuse (``gepa.reuse_evaluations``) through GepaRun, against the fake container: what is reused, what it
saves, that it changes no decision, that the budgets count live rollouts only, that a resume rebuilds the store
from the feed, and that a search which could only reuse stops instead of going round for ever."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from synth_opt import GepaRun, load_config, workspace_status
from synth_opt.actors.evaluations import EvaluationStore
from synth_opt.actors.messages import BatchDone, RolloutDone, RolloutJob
from synth_opt.container.wire import RolloutReply
from synth_opt.events import EventBus, Stage
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import BudgetUpdated, ConfigWarning, RolloutCompleted, RolloutReused
from synth_opt.testing import capture_events

from .test_pipeline_fake import (
    EchoProposer,
    LearningProposer,
    assert_resumes_to,
    decisions,
    jittery,
    new_fake,
    write_config,
)


def reuse_config(tmp_path: Path, name: str, *, reuse: bool, mode: str = "sync_serial", budget: int = 160) -> Path:
    """The pipeline tests' config (8 pareto rows among 12 train rows, minibatches drawn from all 12: a parent's
    minibatch rows are mostly rows it was scored on already)."""
    (tmp_path / name).mkdir()
    path = write_config(tmp_path / name, name, mode=mode, rollout_workers=4, budget=budget)
    text = path.read_text().replace("[gepa]\n", f"[gepa]\nreuse_evaluations = {str(reuse).lower()}\n")
    if mode == "async_pipelined":
        text = text.replace("max_in_flight_candidates = 1", "max_in_flight_candidates = 4")
    path.write_text(text)
    return path


def budget_after_each_commit(feed: str) -> list[int]:
    """The train rollouts used after each commit, in commit order."""
    return [int(e.data.used["train_rollouts"]) for e in read_feed(Path(feed)) if isinstance(e.data, BudgetUpdated)]


@pytest.mark.anyio
async def test_reuse_makes_the_same_decisions_with_fewer_rollouts(tmp_path: Path) -> None:
    runs = {}
    for reuse in (False, True):
        fake = new_fake()
        result = await GepaRun(
            load_config(reuse_config(tmp_path, f"reuse-{reuse}", reuse=reuse)),
            container_transport=fake.transport(),
            proposer=LearningProposer(),
        ).execute_async()
        assert fake.rollouts_served == result.rollouts_used["total"]  # the budgets count what was served
        assert result.rollouts_used["train"] <= 160
        runs[reuse] = result
    off, on = runs[False], runs[True]
    assert off.rollouts_reused == {"train": 0, "heldout": 0, "total": 0}
    assert on.rollouts_reused["train"] > 0 and on.rollouts_reused["heldout"] == 0
    stopper = workspace_status(Path(on.workspace_db_path or ""))["runs"][0]["stopper"]
    assert stopper["rollouts_reused"] == on.rollouts_reused["train"]
    assert workspace_status(Path(off.workspace_db_path or ""))["runs"][0]["stopper"]["rollouts_reused"] is None
    # every decision is made the same way (up to the shorter run's end), each commit having used fewer rollouts
    shorter, longer = sorted((decisions(off.event_feed_path), decisions(on.event_feed_path)), key=len)
    assert longer[: len(shorter)] == shorter
    used = {reuse: budget_after_each_commit(runs[reuse].event_feed_path) for reuse in (False, True)}
    common = min(len(used[False]), len(used[True]))
    assert common >= 10
    assert (
        all(used[True][i] <= used[False][i] for i in range(common)) and used[True][common - 1] < used[False][common - 1]
    )
    # what was reused is an evaluation of the same candidate on the same row, committed before
    feed = list(read_feed(Path(on.event_feed_path)))
    served = {event.data.rollout_id: event.data for event in feed if isinstance(event.data, RolloutCompleted)}
    reused = [event.data for event in feed if isinstance(event.data, RolloutReused)]
    assert len(reused) == on.rollouts_reused["total"]
    for line in reused:
        source = served[line.source_rollout_id]
        assert (source.candidate_id, source.task_id, source.reward) == (line.candidate_id, line.task_id, line.reward)
        # the seed's, an earlier proposal's, or (an accepted child on its own minibatch rows) this one's
        mine = (source.stage.proposal, source.stage.step) == (
            line.stage.proposal,
            "child",
        ) and line.stage.step == "pareto"
        assert source.stage.proposal is None or source.stage.proposal < (line.stage.proposal or 0) or mine
    assert {line.stage.step for line in reused} >= {"parent", "pareto"}


@pytest.mark.anyio
async def test_pipelined_reuse_does_not_depend_on_timing(tmp_path: Path) -> None:
    results = []
    for name, jitter_seed, base in (("a", 1, 0.0), ("b", 2, 0.003)):
        path = reuse_config(tmp_path, name, reuse=True, mode="async_pipelined", budget=300)
        fake = new_fake()
        results.append(
            await GepaRun(
                load_config(path),
                container_transport=jittery(fake, jitter_seed, base=base),
                proposer=LearningProposer(),
            ).execute_async()
        )
    first, second = results
    assert first.rollouts_reused["total"] > 0
    assert first.rollouts_reused == second.rollouts_reused and first.rollouts_used == second.rollouts_used
    assert decisions(first.event_feed_path) == decisions(second.event_feed_path)


@pytest.mark.anyio
async def test_a_cancelled_run_resumes_with_the_store_rebuilt_to_the_uninterrupted_result(tmp_path: Path) -> None:
    whole = await GepaRun(
        load_config(reuse_config(tmp_path, "whole", reuse=True, mode="async_pipelined", budget=300)),
        container_transport=jittery(new_fake(), 7),
        proposer=LearningProposer(),
    ).execute_async()
    assert whole.rollouts_reused["train"] > 0

    config = load_config(reuse_config(tmp_path, "parts", reuse=True, mode="async_pipelined", budget=300))
    resumed = await assert_resumes_to(whole, config, new_fake, LearningProposer)

    # what the resumed run reused is what the uninterrupted one reused (the rebuilt store is the same)
    def reused(feed: str) -> list[tuple[str, str, str]]:
        lines = [e.data for e in read_feed(Path(feed)) if isinstance(e.data, RolloutReused)]
        return sorted((str(line.stage), line.candidate_id, line.task_id) for line in lines)

    assert set(reused(whole.event_feed_path)) == set(reused(resumed.event_feed_path))


def test_the_store_keeps_the_first_evaluation_and_rebuilds_from_the_feed(tmp_path: Path) -> None:
    """What a batch may reuse is what had committed when its proposal was planned (and its own earlier batches),
    never what committed since; a feed written with reuse on gives the same store back."""
    bus = EventBus(tmp_path / "events.jsonl")
    store = EvaluationStore()
    for stage, reward, visible_from in (("seed.pareto", 0.25, 0), ("p2.pareto", 1.0, 3), ("p3.parent", 0.0, 4)):
        cid = "c0" if stage == "seed.pareto" else "c1"
        job = RolloutJob(0, 1, 0, f"ro-{stage}", stage, cid, {}, "r1", {})
        reply = RolloutReply(f"ro-{stage}", "completed", reward, trace={"said": stage}, feedback=f"f {stage}")
        store.add(BatchDone(0, (RolloutDone(job, reply, None, 0.0),)), visible_from=visible_from)
        bus.emit(
            RolloutCompleted(
                job.rollout_id,
                cid,
                "r1",
                Stage.parse(stage),
                reward,
                "completed",
                {},
                None,
                reply.feedback,
                None,
                0.0,
                None,
                (),
                output=reply.trace,
            ),
            "rollout",
        )
    bus.close()
    assert store.lookup(2)("c1", "r1") is None  # planned before it committed
    found = store.lookup(3)("c1", "r1")
    assert found is not None and found.reward == 1.0  # the first evaluation of the pair stays
    own = RolloutJob(0, 1, 0, "ro-x", "p5.child", "c9", {}, "r9", {})
    mine = store.lookup(0, BatchDone(0, (RolloutDone(own, RolloutReply("ro-x", "completed", 0.5), None, 0.0),)))
    assert mine("c9", "r9") is not None and mine("c1", "r1") is None and mine("c0", "r1") is not None
    rebuilt = EvaluationStore.from_events(read_feed(tmp_path / "events.jsonl"))
    assert len(rebuilt) == len(store) == 2
    for key in (("c0", "r1"), ("c1", "r1")):
        a, b = store._entries[key], rebuilt._entries[key]
        assert a.visible_from == b.visible_from
        assert (a.reply.reward, a.reply.trace, a.reply.feedback) == (b.reply.reward, b.reply.trace, b.reply.feedback)


@pytest.mark.anyio
async def test_a_search_that_could_only_reuse_stops(tmp_path: Path) -> None:
    """An echoing proposer proposes the parent again and again: once every minibatch row of it is known, a
    proposal rolls nothing out and costs nothing, and the search ends on ``reuse_evaluations``."""
    with anyio.fail_after(60):
        result = await GepaRun(
            load_config(reuse_config(tmp_path, "echo", reuse=True, budget=10_000)),
            container_transport=new_fake().transport(),
            proposer=EchoProposer(),
        ).execute_async()
    assert result.stop_reason == "reuse_evaluations"
    assert result.rollouts_used["train"] < 10_000 and result.rollouts_reused["train"] > 0


@pytest.mark.anyio
async def test_a_sampling_policy_is_warned_that_reuse_hides_its_noise(tmp_path: Path) -> None:
    path = reuse_config(tmp_path, "warm", reuse=True, budget=40)
    path.write_text(path.read_text() + '\n[policy]\ntype = "llm"\ntemperature = 0.7\n')
    with capture_events() as events:
        await GepaRun(
            load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer()
        ).execute_async()
    warnings = [e for e in events if isinstance(e.data, ConfigWarning) and e.data.key == "gepa.reuse_evaluations"]
    assert [event.data.key for event in warnings] == ["gepa.reuse_evaluations"]
    assert "temperature = 0.7" in warnings[0].message and "reuse_evaluations = false" in warnings[0].message
