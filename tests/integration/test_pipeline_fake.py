"""The whole actor graph through GepaRun, against the fake container transport and an in-process proposer."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree

import anyio
import httpx
import pytest

from synth_opt import GepaConfig, GepaResult, GepaRun, ProposerError, RunCancelledError, RunStateError, load_config
from synth_opt.events import UNSET, EventPayload
from synth_opt.events.compare import compare_feeds
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import (
    AcceptanceDecided,
    CandidateScored,
    FrontierUpdated,
    ProposalCreated,
    ProposalPlanned,
    RunState,
)
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.testing.fake_container import FakeContainer
from synth_opt.usage import Usage


def keyword_score(candidate: dict[str, str], row: dict[str, Any]) -> float:
    """Reward 1 when the row's answer word appears in the instruction."""
    return 1.0 if row["answer"] in candidate["instruction"].split() else 0.0


def rows(split: str, n: int) -> list[dict[str, Any]]:
    return [{"task_id": f"{split}-{i}", "question": f"q{i}", "answer": f"w{i % 7}"} for i in range(n)]


class LearningProposer:
    """Adds the answer words of failed records to the text: a pure function of the request."""

    backend = "test"

    def __init__(self) -> None:
        self.calls = 0

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        self.calls += 1
        text = request.candidate[request.target_module]
        words = text.split()
        for record in request.records:
            if record.reward < 1.0 and record.task["answer"] not in words:
                words.append(record.task["answer"])
        return ProposerResult(texts=(" ".join(words),), usage=Usage(calls=1, total_tokens=5, cost_usd=None))

    async def aclose(self) -> None:
        return None


class EchoProposer(LearningProposer):
    """Returns its input unchanged."""

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        self.calls += 1
        return ProposerResult(texts=(request.candidate[request.target_module],))


class BrokenProposer(LearningProposer):
    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        raise ProposerError("the proposer died")


def write_config(tmp_path: Path, name: str, *, mode: str, rollout_workers: int = 1, budget: int = 120) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"""
[run]
run_id = "{name}"
output_dir = "runs"
seed = 3

[container]
url = "http://fake-container.test"

[dataset]
train_ids = {{count = 12}}
heldout_ids = {{count = 10}}
pareto_ids = {{count = 8}}

[proposer]
backend = "codex_app_server"

[gepa]
max_train_rollouts = {budget}
minibatch_size = 3

[gepa.pipeline]
mode = "{mode}"
max_in_flight_candidates = 1

[gepa.pipeline.workers]
rollout = {rollout_workers}

[cache]
mode = "off"
"""
    )
    return path


def jittery(fake: FakeContainer, seed: int, *, base: float = 0.0, spread: float = 0.004) -> httpx.MockTransport:
    jitter = random.Random(seed)

    async def handle(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(base + jitter.uniform(0.0, spread))
        return await fake.handle(request)

    return httpx.MockTransport(handle)


def new_fake() -> FakeContainer:
    return FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 10)},
        score=keyword_score,
        seed_candidate={"instruction": "answer w0"},
    )


DECIDING = (ProposalPlanned, ProposalCreated, CandidateScored, AcceptanceDecided, FrontierUpdated)


def decisions(feed: str) -> list[EventPayload]:
    """The search's decisions in the feed, as typed payloads (the class says the type)."""
    return [event.data for event in read_feed(Path(feed)) if isinstance(event.data, DECIDING)]


@pytest.mark.anyio
async def test_three_rollout_workers_with_jitter_make_the_same_decisions_as_one(tmp_path: Path) -> None:
    serial_fake, piped_fake = new_fake(), new_fake()
    serial = await GepaRun(
        load_config(write_config(tmp_path, "serial", mode="sync_serial")),
        container_transport=jittery(serial_fake, 1),
        proposer=LearningProposer(),
    ).execute_async()
    piped = await GepaRun(
        load_config(write_config(tmp_path, "piped", mode="async_pipelined", rollout_workers=3)),
        container_transport=jittery(piped_fake, 2),
        proposer=LearningProposer(),
    ).execute_async()

    assert serial.accepted >= 1, "the learning proposer should get at least one child accepted"
    assert serial.best_train_score is not None and serial.seed_train_score is not None
    assert serial.best_train_score > serial.seed_train_score
    registry = json.loads(Path(serial.candidate_registry_path).read_text())["candidates"]
    assert registry == json.loads(Path(piped.candidate_registry_path).read_text())["candidates"]
    assert decisions(serial.event_feed_path) == decisions(piped.event_feed_path)
    assert (serial.best_candidate_id, serial.stop_reason) == (piped.best_candidate_id, piped.stop_reason)
    assert serial.rollouts_used == piped.rollouts_used


@pytest.mark.anyio
async def test_an_unchanged_proposal_keeps_exactly_the_seed(tmp_path: Path) -> None:
    fake = new_fake()
    proposer = EchoProposer()
    result = await GepaRun(
        load_config(write_config(tmp_path, "echo", mode="sync_serial")),
        container_transport=fake.transport(),
        proposer=proposer,
    ).execute_async()
    assert proposer.calls > 0
    assert result.best_candidate_id == result.seed_candidate_id
    assert result.best_heldout_score == result.seed_heldout_score
    assert result.best_train_score == result.seed_train_score
    assert result.accepted == 0


@pytest.mark.anyio
async def test_the_container_never_serves_more_rollouts_than_the_budget(tmp_path: Path) -> None:
    fake = new_fake()
    result = await GepaRun(
        load_config(write_config(tmp_path, "budget", mode="sync_serial", budget=50)),
        container_transport=fake.transport(),
        proposer=LearningProposer(),
    ).execute_async()
    assert result.stop_reason == "max_train_rollouts"
    assert result.rollouts_used["train"] <= 50
    assert result.rollouts_used["heldout"] <= 20
    assert fake.rollouts_served == result.rollouts_used["total"]
    manifest = json.loads(Path(result.manifest_path).read_text())
    assert manifest["rollouts_used"] == result.rollouts_used
    chart = next(ref for ref in result.artifact_refs if ref["kind"] == "score_chart")
    root = ElementTree.parse(chart["path"]).getroot()
    assert root.tag.endswith("svg") and chart["bytes"] == Path(chart["path"]).stat().st_size
    assert manifest["seed_heldout_score"] == result.seed_heldout_score


@pytest.mark.anyio
async def test_a_proposer_error_fails_the_run_and_records_it(tmp_path: Path) -> None:
    fake = new_fake()
    run = GepaRun(
        load_config(write_config(tmp_path, "broken", mode="sync_serial")),
        container_transport=fake.transport(),
        proposer=BrokenProposer(),
    )
    with pytest.raises(ProposerError, match="the proposer died"):
        await run.execute_async()
    status = json.loads((run.run_dir / "run_status.json").read_text())
    assert status["status"] == "failed"
    assert "proposer_error" in status["error"]
    stored = GepaResult.from_manifest(run.run_dir / "result_manifest.json")  # what was committed, and why it ended
    assert stored.status == "failed" and stored.error == status["error"]


@pytest.mark.anyio
async def test_rerunning_a_finished_config_returns_the_stored_result(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "again", mode="sync_serial"))
    first = await GepaRun(
        config, container_transport=new_fake().transport(), proposer=LearningProposer()
    ).execute_async()
    silent = new_fake()
    second = await GepaRun(config, container_transport=silent.transport(), proposer=BrokenProposer()).execute_async()
    assert second.from_stored_result
    assert second.best_candidate_id == first.best_candidate_id
    assert silent.rollouts_served == 0
    latest = Path(config.output_dir) / "latest"
    assert latest.resolve() == Path(first.manifest_path).parent.resolve()
    assert GepaResult.from_manifest(first.manifest_path).best_candidate_id == first.best_candidate_id  # a str too


@pytest.mark.anyio
async def test_a_changed_config_under_the_same_run_id_is_refused_not_handed_the_stored_result(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, "same-id", mode="sync_serial")
    first = await GepaRun(
        load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer()
    ).execute_async()
    path.write_text(path.read_text().replace("max_train_rollouts = 120", "max_train_rollouts = 60"))
    silent = new_fake()
    with pytest.raises(RunStateError) as refused:
        await GepaRun(
            load_config(path), container_transport=silent.transport(), proposer=LearningProposer()
        ).execute_async()
    message = refused.value.message
    assert "gepa.max_train_rollouts differs" in message and "--fresh" in message, message
    assert refused.value.detail["differing_keys"] == ["gepa.max_train_rollouts"]
    assert silent.rollouts_served == 0  # nothing ran, and the stored run is as it was
    assert json.loads(Path(first.manifest_path).read_text())["rollouts_used"] == first.rollouts_used
    fresh = await GepaRun(
        load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer(), fresh=True
    ).execute_async()
    assert not fresh.from_stored_result and fresh.rollouts_used["train"] <= 60


@pytest.mark.anyio
async def test_an_unfinished_run_is_not_resumed_by_a_changed_config(tmp_path: Path) -> None:
    path = pipelined_config(tmp_path, "changed", staleness="rebase")
    await cancelled_after_decisions(
        GepaRun(load_config(path), container_transport=jittery(new_fake(), 8), proposer=FirstWordProposer())
    )
    feed = (tmp_path / "changed" / "runs" / "changed" / "events.jsonl").read_bytes()
    path.write_text(path.read_text().replace("train_ids = {count = 12}", "train_ids = {count = 6}"))
    with pytest.raises(RunStateError, match=r"dataset\.train_ids\.count differs"):
        await GepaRun(
            load_config(path), container_transport=new_fake().transport(), proposer=FirstWordProposer()
        ).execute_async()
    assert (
        tmp_path / "changed" / "runs" / "changed" / "events.jsonl"
    ).read_bytes() == feed  # left as it was, resumable


@pytest.mark.anyio
@pytest.mark.parametrize("staleness", ["full", "guarded", "rebase"])
async def test_pipelined_decisions_do_not_depend_on_timing(tmp_path: Path, staleness: str) -> None:
    results = []
    for name, jitter_seed, base, spread in (("a", 11, 0.0, 0.004), ("b", 12, 0.003, 0.0005)):
        (tmp_path / name).mkdir()
        path = write_config(tmp_path / name, name, mode="async_pipelined", rollout_workers=4, budget=400)
        text = path.read_text().replace("max_in_flight_candidates = 1", "max_in_flight_candidates = 8")
        text = text.replace("[gepa.pipeline]\n", f'[gepa.pipeline]\nstaleness_policy = "{staleness}"\ndelta_max = 1\n')
        text = text.replace("[gepa.pipeline.workers]\n", "[gepa.pipeline.workers]\npropose = 3\n")
        path.write_text(text)
        fake = new_fake()
        results.append(
            await GepaRun(
                load_config(path),
                container_transport=jittery(fake, jitter_seed, base=base, spread=spread),
                proposer=LearningProposer(),
            ).execute_async()
        )
    first, second = results
    assert first.accepted >= 2
    assert decisions(first.event_feed_path) == decisions(second.event_feed_path)
    assert first.rollouts_used == second.rollouts_used
    created = [e for e in decisions(first.event_feed_path) if isinstance(e, ProposalCreated)]
    assert max(e.staleness for e in created) >= 1
    reasons = [e.reason for e in decisions(first.event_feed_path) if isinstance(e, AcceptanceDecided)]
    for reason, proposal in zip(reasons, created, strict=True):
        too_stale = proposal.staleness > 1 and reason not in ("unchanged", "duplicate")  # nothing rolled out
        assert (reason == "stale") == (staleness == "guarded" and too_stale)
    assert ("stale" in reasons) == (staleness == "guarded")
    registry = json.loads(Path(first.candidate_registry_path).read_text())["candidates"]
    assert registry == json.loads(Path(second.candidate_registry_path).read_text())["candidates"]
    assert any(e.rebase is not UNSET for e in created) == (staleness == "rebase")


def endless_run(tmp_path: Path, name: str) -> GepaRun:
    """A run with a budget it never reaches and 10 ms per rollout: it goes on until it is cancelled."""
    fake = FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 10)},
        score=keyword_score,
        seed_candidate={"instruction": "answer w0"},
        latency_seconds=0.01,
    )
    return GepaRun(
        load_config(write_config(tmp_path, name, mode="sync_serial", budget=100000)),
        container_transport=fake.transport(),
        proposer=LearningProposer(),
    )


@pytest.mark.anyio
async def test_a_programmatic_cancel_stops_quickly_and_keeps_committed_results(tmp_path: Path) -> None:
    run = endless_run(tmp_path, "cancel")
    cancelled_at: list[float] = []

    async def cancel_after_two_commits(events: Any, view: Any) -> None:
        commits = 0
        async with events:
            async for event in events:
                if event.type == "acceptance.decided":
                    commits += 1
                    if commits == 2:
                        cancelled_at.append(anyio.current_time())
                        run.cancel("test cancel")

    run.observer = cancel_after_two_commits
    with pytest.raises(RunCancelledError, match="test cancel"):
        await run.execute_async()
    assert anyio.current_time() - cancelled_at[0] < 2.0
    manifest = json.loads((run.run_dir / "result_manifest.json").read_text())
    assert manifest["status"] == "cancelled" and manifest["stop_reason"] == "cancelled"
    assert manifest["proposals"] >= 2
    feed = [event.data for event in read_feed(run.run_dir / "events.jsonl")]
    assert isinstance(feed[-1], RunState) and feed[-1].state == "cancelled"
    assert sum(isinstance(e, AcceptanceDecided) for e in feed) >= 2


def test_a_cancel_from_another_thread_stops_a_blocking_execute(tmp_path: Path) -> None:
    run = endless_run(tmp_path, "threaded")
    outcome: list[BaseException] = []

    def execute() -> None:
        try:
            run.execute()
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=execute, daemon=True)
    worker.start()
    feed = run.run_dir / "events.jsonl"
    while worker.is_alive() and (not feed.exists() or feed.read_text().count('"acceptance.decided"') < 2):
        time.sleep(0.01)
    run.cancel("cancelled from the caller's thread")  # not the run's event loop: handed to it
    worker.join(timeout=60)
    assert not worker.is_alive(), "the run did not stop"
    assert len(outcome) == 1 and isinstance(outcome[0], RunCancelledError), outcome
    assert "cancelled from the caller's thread" in outcome[0].message
    manifest = json.loads((run.run_dir / "result_manifest.json").read_text())
    assert manifest["status"] == "cancelled" and manifest["proposals"] >= 2


@pytest.mark.anyio
async def test_an_observer_that_fails_ends_only_itself(tmp_path: Path) -> None:
    async def broken_display(events: Any, view: Any) -> None:
        async with events:
            async for event in events:
                if event.type == "acceptance.decided":
                    raise ValueError("display bug")

    run = GepaRun(
        load_config(write_config(tmp_path, "watched", mode="sync_serial")),
        container_transport=new_fake().transport(),
        proposer=LearningProposer(),
        observer=broken_display,
    )
    result = await run.execute_async()
    assert result.status == "completed" and result.proposals > 1
    with pytest.raises(RuntimeError, match=r"inside a running event loop; await run.execute_async\(\)"):
        run.execute()


def two_module_score(candidate: dict[str, str], row: dict[str, Any]) -> float:
    """Even rows need their word in module ``a``, odd rows in module ``b``."""
    module = "a" if int(row["task_id"].split("-")[1]) % 2 == 0 else "b"
    return 1.0 if row["answer"] in candidate[module].split() else 0.0


class ModuleProposer(LearningProposer):
    """Adds failed answers to the target module, but only those of rows that module serves."""

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        self.calls += 1
        module = request.target_module
        words = request.candidate[module].split()
        for record in request.records:
            serves = "a" if int(record.task_id.split("-")[1]) % 2 == 0 else "b"
            if record.reward < 1.0 and serves == module and record.task["answer"] not in words:
                words.append(record.task["answer"])
                break
        return ProposerResult(texts=(" ".join(words),))


@pytest.mark.anyio
async def test_merge_combines_two_lineages_and_is_timing_independent(tmp_path: Path) -> None:
    outcomes = []
    for name in ("m1", "m2"):
        (tmp_path / name).mkdir()
        path = write_config(tmp_path / name, name, mode="async_pipelined", rollout_workers=3, budget=600)
        text = path.read_text().replace("minibatch_size = 3", "minibatch_size = 4\nuse_merge = true")
        # without rebasing, concurrent proposals grow two lineages for the merge to combine
        text = text.replace("[gepa.pipeline]\n", '[gepa.pipeline]\nstaleness_policy = "full"\n')
        path.write_text(text.replace("max_in_flight_candidates = 1", "max_in_flight_candidates = 2"))
        fake = FakeContainer(
            rows={"train": rows("train", 12), "test": rows("test", 10)},
            score=two_module_score,
            seed_candidate={"a": "w0", "b": "w1"},
        )
        outcomes.append(
            await GepaRun(
                load_config(path), container_transport=jittery(fake, len(outcomes)), proposer=ModuleProposer()
            ).execute_async()
        )
    first, second = outcomes
    events = decisions(first.event_feed_path)
    merges = [e for e in events if isinstance(e, ProposalPlanned) and e.kind == "merge"]
    assert merges, "a merge should have been planned"
    decided = {e.proposal_index: e for e in events if isinstance(e, AcceptanceDecided)}
    assert any(decided[m.proposal_index].accepted for m in merges)
    registry = json.loads(Path(first.candidate_registry_path).read_text())["candidates"]
    merged = [c for c in registry.values() if len(c["parent_ids"]) == 2 and c["status"] == "accepted"]
    assert merged and all(c["module_changed"] == "*merge*" for c in merged)
    assert events == decisions(second.event_feed_path)


class FillerProposer(LearningProposer):
    """Adds the missing answer words and a filler word derived from the request, so no child is ever one seen
    before and every proposal rolls its child out (the budget, not the search, ends the run)."""

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        learned = await super().propose(request)
        digest = hashlib.sha256(json.dumps(request.to_json(), sort_keys=True).encode()).hexdigest()[:8]
        return ProposerResult(texts=(f"{learned.texts[0]} z{digest}",), usage=learned.usage)


@pytest.mark.anyio
@pytest.mark.parametrize("reuse", ["true", "false"])
async def test_sixteen_rollout_workers_never_overshoot_the_budget(tmp_path: Path, reuse: str) -> None:
    path = write_config(tmp_path, "wide", mode="async_pipelined", rollout_workers=16, budget=157)
    text = path.read_text().replace("max_in_flight_candidates = 1", "max_in_flight_candidates = 8")
    path.write_text(text.replace("[gepa]\n", f"[gepa]\nreuse_evaluations = {reuse}\n"))
    fake = new_fake()
    result = await GepaRun(
        load_config(path), container_transport=jittery(fake, 5), proposer=FillerProposer()
    ).execute_async()
    assert result.stop_reason == "max_train_rollouts"
    assert (result.rollouts_reused["total"] > 0) == (reuse == "true")
    assert result.rollouts_used["train"] <= 157
    assert fake.rollouts_served == result.rollouts_used["total"] <= 157 + 20


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("limit", "extra", "key"),
    [
        (
            "max_cost_usd = 0.05",
            "rollout_estimated_cost_usd = 0.001\nproposer_estimated_cost_usd = 0.002",
            "max_cost_usd",
        ),
        ("max_total_tokens = 900", "rollout_estimated_tokens = 12\nproposer_estimated_tokens = 5", "max_total_tokens"),
    ],
)
async def test_cost_and_token_limits_stop_the_search_without_overshoot(
    tmp_path: Path, limit: str, extra: str, key: str
) -> None:
    path = write_config(tmp_path, "limits", mode="async_pipelined", rollout_workers=4, budget=100000)
    text = path.read_text().replace("max_in_flight_candidates = 1", "max_in_flight_candidates = 4")
    path.write_text(text.replace("minibatch_size = 3", f"minibatch_size = 3\n{limit}\n{extra}"))
    fake = FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 10)},
        score=keyword_score,
        seed_candidate={"instruction": "answer w0"},
        usage={"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cost_usd": 0.001},
    )
    result = await GepaRun(
        load_config(path), container_transport=fake.transport(), proposer=LearningProposer()
    ).execute_async()
    assert result.stop_reason == key
    proposer_cost = 0.002 * result.usage["proposer"]["calls"]
    if key == "max_cost_usd":
        assert result.usage["rollout"]["cost_usd"] + proposer_cost <= 0.05 + 1e-9
    else:
        assert result.usage["total"]["total_tokens"] <= 900
    assert result.rollouts_used["train"] > 0 and result.best_heldout_score is not None


class TwoWayProposer(LearningProposer):
    """Returns two texts: one that changes nothing useful, and the learning one."""

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        learned = await super().propose(request)
        useless = request.candidate[request.target_module] + " filler"
        return ProposerResult(texts=(useless, learned.texts[0]), usage=learned.usage)


@pytest.mark.anyio
async def test_several_proposals_per_call_evaluate_each_and_keep_the_best(tmp_path: Path) -> None:
    path = write_config(tmp_path, "multi", mode="sync_serial", budget=200)
    path.write_text(
        path.read_text().replace('backend = "codex_app_server"', 'backend = "codex_app_server"\nproposals_per_call = 2')
    )
    result = await GepaRun(
        load_config(path), container_transport=new_fake().transport(), proposer=TwoWayProposer()
    ).execute_async()
    registry = json.loads(Path(result.candidate_registry_path).read_text())["candidates"]
    siblings = [c for c in registry.values() if c.get("reason") == "outscored_by_sibling"]
    accepted = [c for c in registry.values() if c["status"] == "accepted"]
    assert siblings and accepted
    assert all("filler" in c["payload"]["instruction"] for c in siblings)
    assert all("filler" not in c["payload"]["instruction"] for c in accepted)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("rule", "proposer", "key"),
    [
        ("score_threshold = 0.5", LearningProposer(), "score_threshold"),
        ("no_improvement_iterations = 3", EchoProposer(), "no_improvement_iterations"),
        (
            "max_time_seconds = 1.5\nrollout_estimated_seconds = 0.05\nproposer_estimated_seconds = 0.05",
            LearningProposer(),
            "max_time_seconds",
        ),
    ],
)
async def test_stopping_rules_name_themselves(tmp_path: Path, rule: str, proposer: LearningProposer, key: str) -> None:
    path = write_config(tmp_path, "rules", mode="sync_serial", budget=100000)
    # reuse off: once the search has learned every word, reuse would end it first (reuse_evaluations)
    extra = f"minibatch_size = 3\n{rule}\nreuse_evaluations = false"
    path.write_text(path.read_text().replace("minibatch_size = 3", extra))
    result = await GepaRun(
        load_config(path), container_transport=new_fake().transport(), proposer=proposer
    ).execute_async()
    assert result.stop_reason == key
    if key == "score_threshold":
        assert result.best_train_score is not None and result.best_train_score >= 0.5
    if key == "no_improvement_iterations":
        assert result.proposals == 3


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync_serial", "async_pipelined"])
async def test_skip_perfect_score_calls_no_proposer_for_a_perfect_minibatch(tmp_path: Path, mode: str) -> None:
    """Once the prompt holds every answer word, minibatches are perfect: those proposals call no proposer, are
    decided ``perfect_minibatch`` and are charged no proposer call; without the option every proposal calls it."""
    outcomes = {}
    for skip in (False, True):
        name = f"{mode}-{skip}"
        (tmp_path / name).mkdir()
        path = write_config(tmp_path / name, name, mode=mode, rollout_workers=4, budget=400)
        text = path.read_text().replace(
            "minibatch_size = 3\n", f"minibatch_size = 3\nskip_perfect_score = {str(skip).lower()}\n"
        )
        if mode == "async_pipelined":
            text = text.replace("max_in_flight_candidates = 1", "max_in_flight_candidates = 4")
            text = text.replace("[gepa.pipeline.workers]\n", "[gepa.pipeline.workers]\npropose = 2\n")
        path.write_text(text)
        proposer = LearningProposer()
        result = await GepaRun(
            load_config(path), container_transport=jittery(new_fake(), 5), proposer=proposer
        ).execute_async()
        reasons = [e.reason for e in decisions(result.event_feed_path) if isinstance(e, AcceptanceDecided)]
        outcomes[skip] = (result, proposer.calls, reasons)
    plain, plain_calls, plain_reasons = outcomes[False]
    skipping, skipping_calls, skipping_reasons = outcomes[True]
    # (a proposal whose first reply repeated an edit in flight was asked again: a second call)
    assert "perfect_minibatch" not in plain_reasons and plain_calls == plain.proposals + asked_again(plain)
    perfect = skipping_reasons.count("perfect_minibatch")
    assert perfect > 0 and skipping_calls == skipping.proposals - perfect + asked_again(skipping)
    assert skipping.usage["proposer"]["calls"] == skipping_calls
    assert skipping.best_train_score == plain.best_train_score == 1.0


def asked_again(result: GepaResult) -> int:
    """How many proposals of the run called the proposer a second time (``gepa.pipeline.concurrent_edits``)."""
    created = [e for e in decisions(result.event_feed_path) if isinstance(e, ProposalCreated)]
    return sum(isinstance(e.repeated, tuple) for e in created)


class FirstWordProposer(LearningProposer):
    """Adds the answer word of the first failed record only: one edit per proposal."""

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        self.calls += 1
        words = request.candidate[request.target_module].split()
        for record in request.records:
            if record.reward < 1.0 and record.task["answer"] not in words:
                words.append(record.task["answer"])
                break
        return ProposerResult(texts=(" ".join(words),))


def pipelined_config(tmp_path: Path, name: str, *, staleness: str, in_flight: int = 8, budget: int = 300) -> Path:
    (tmp_path / name).mkdir()
    path = write_config(tmp_path / name, name, mode="async_pipelined", rollout_workers=8, budget=budget)
    text = path.read_text().replace("max_in_flight_candidates = 1", f"max_in_flight_candidates = {in_flight}")
    text = text.replace("[gepa.pipeline]\n", f'[gepa.pipeline]\nstaleness_policy = "{staleness}"\n')
    path.write_text(text.replace("[gepa.pipeline.workers]\n", "[gepa.pipeline.workers]\npropose = 4\n"))
    return path


@pytest.mark.anyio
async def test_rebase_with_one_in_flight_makes_exactly_the_decisions_of_sync_serial(tmp_path: Path) -> None:
    serial = await GepaRun(
        load_config(write_config(tmp_path, "serial", mode="sync_serial", budget=200)),
        container_transport=jittery(new_fake(), 1),
        proposer=FirstWordProposer(),
    ).execute_async()
    rebased = await GepaRun(
        load_config(pipelined_config(tmp_path, "rebase-one", staleness="rebase", in_flight=1, budget=200)),
        container_transport=jittery(new_fake(), 2),
        proposer=FirstWordProposer(),
    ).execute_async()
    assert serial.accepted >= 2
    assert decisions(serial.event_feed_path) == decisions(rebased.event_feed_path)
    registry = json.loads(Path(serial.candidate_registry_path).read_text())["candidates"]
    assert registry == json.loads(Path(rebased.candidate_registry_path).read_text())["candidates"]
    assert (serial.best_candidate_id, serial.rollouts_used) == (rebased.best_candidate_id, rebased.rollouts_used)


@pytest.mark.anyio
async def test_rebased_proposals_build_on_each_other(tmp_path: Path) -> None:
    """With 8 in flight every proposal starts from an old pool; rebased, each accepted edit is carried onto the
    best newer descendant of its parent, so the pool's lineage gathers the edits of concurrent proposals. The
    same run without rebasing accepts siblings that each hold one edit."""
    results = {}
    for staleness in ("full", "rebase"):
        results[staleness] = await GepaRun(
            load_config(pipelined_config(tmp_path, staleness, staleness=staleness, budget=160)),
            container_transport=jittery(new_fake(), 3),
            proposer=FirstWordProposer(),
        ).execute_async()
    full, rebase = results["full"], results["rebase"]
    assert full.rollouts_used["train"] <= 160 and rebase.rollouts_used["train"] <= 160
    assert rebase.best_train_score is not None and full.best_train_score is not None
    assert rebase.best_train_score > full.best_train_score

    registry = json.loads(Path(rebase.candidate_registry_path).read_text())["candidates"]
    created = {e.proposal_index: e for e in payloads_of(rebase.event_feed_path, ProposalCreated)}
    carried = [c for c in registry.values() if c["status"] == "rebased"]
    assert len(carried) >= 3
    assert any(created[c["proposal_index"]].rebase == "rebased" for c in carried)
    for child in carried:
        proposal = created[child["proposal_index"]]
        assert proposal.rebase in ("rebased", "contained")
        target = registry[proposal.rebased_onto]
        pooled = registry[child["rebased_to"]]
        parent = registry[child["parent_ids"][0]]
        edit = set(child["payload"]["instruction"].split()) - set(parent["payload"]["instruction"].split())
        assert edit, "a rebased child carries an edit"
        words = set(pooled["payload"]["instruction"].split())
        assert edit <= words and set(target["payload"]["instruction"].split()) <= words
        if proposal.rebase == "rebased":
            assert pooled["status"] == "accepted" and pooled["parent_ids"] == [target["candidate_id"]]
    planned = {e.proposal_index: e.pool_version for e in payloads_of(rebase.event_feed_path, ProposalPlanned)}
    pooled_by = sorted(c["proposal_index"] for c in registry.values() if c["status"] == "accepted")
    for index, proposal in created.items():  # the gap: candidates that joined the pool between plan and commit
        assert proposal.staleness == sum(j < index for j in pooled_by) - planned[index]
    assert max(proposal.staleness for proposal in created.values()) >= 3
    best = registry[rebase.best_candidate_id]["payload"]["instruction"].split()
    full_registry = json.loads(Path(full.candidate_registry_path).read_text())["candidates"]
    assert len(best) > len(full_registry[full.best_candidate_id]["payload"]["instruction"].split())


@pytest.mark.anyio
async def test_rebase_never_overshoots_the_budget_with_sixteen_rollout_workers(tmp_path: Path) -> None:
    path = pipelined_config(tmp_path, "wide", staleness="rebase", budget=157)
    text = path.read_text().replace("rollout = 8", "rollout = 16")
    path.write_text(text.replace("[gepa]\n", "[gepa]\nreuse_evaluations = false\n"))  # (the budget binds)
    fake = new_fake()
    result = await GepaRun(
        load_config(path), container_transport=jittery(fake, 5), proposer=FirstWordProposer()
    ).execute_async()
    assert result.stop_reason == "max_train_rollouts"
    assert result.rollouts_used["train"] <= 157
    assert fake.rollouts_served == result.rollouts_used["total"] <= 157 + 20


@pytest.mark.anyio
async def test_a_cancelled_rebasing_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    whole = await GepaRun(
        load_config(pipelined_config(tmp_path, "whole", staleness="rebase")),
        container_transport=jittery(new_fake(), 7),
        proposer=FirstWordProposer(),
    ).execute_async()

    path = pipelined_config(tmp_path, "parts", staleness="rebase")
    run = GepaRun(load_config(path), container_transport=jittery(new_fake(), 8), proposer=FirstWordProposer())
    await cancelled_after_decisions(run)
    run.observer = None
    resumed = await run.execute_async()  # the same object: the cancel it met is spent, so this one resumes
    states = [e.state for e in payloads_of(resumed.event_feed_path, RunState)]
    assert "resumed" in states
    comparison = compare_feeds(Path(whole.normalized_event_feed_path), Path(resumed.normalized_event_feed_path))
    assert comparison.equal, comparison
    assert (resumed.best_candidate_id, resumed.rollouts_used) == (whole.best_candidate_id, whole.rollouts_used)


async def cancelled_after_decisions(run: GepaRun, decisions: int = 6) -> None:
    """Run ``run`` and cancel it once ``decisions`` proposals are decided (it raises RunCancelledError)."""

    async def cancel(events: Any, view: Any) -> None:
        decided = 0
        async with events:
            async for event in events:
                decided += event.type == "acceptance.decided"
                if decided == decisions:
                    run.cancel("test cancel")

    run.observer = cancel
    with pytest.raises(RunCancelledError):
        await run.execute_async()


async def assert_resumes_to(
    whole: GepaResult,
    config: GepaConfig,
    container: Callable[[], FakeContainer],
    proposer: Callable[[], Any],
) -> GepaResult:
    """Runs ``config`` (a run id of its own), cancels it after six decisions and resumes it, each part against a
    fresh ``container()`` with its own jitter and a fresh ``proposer()``; asserts that the resumed run ends where
    ``whole`` (the uninterrupted run) ended: the same normalized feed, live and reused rollouts. The resumed run."""
    await cancelled_after_decisions(GepaRun(config, container_transport=jittery(container(), 101), proposer=proposer()))
    resumed = await GepaRun(config, container_transport=jittery(container(), 102), proposer=proposer()).execute_async()
    assert "resumed" in [e.state for e in payloads_of(resumed.event_feed_path, RunState)]
    comparison = compare_feeds(Path(whole.normalized_event_feed_path), Path(resumed.normalized_event_feed_path))
    assert comparison.equal, comparison
    assert (resumed.rollouts_used, resumed.rollouts_reused) == (whole.rollouts_used, whole.rollouts_reused)
    return resumed


P = TypeVar("P", bound=EventPayload)


def payloads_of(feed: str, cls: type[P]) -> list[P]:
    """The typed payloads of the feed's events of class ``cls``, in order."""
    return [event.data for event in read_feed(Path(feed)) if isinstance(event.data, cls)]
