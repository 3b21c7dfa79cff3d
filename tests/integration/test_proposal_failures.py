"""Proposer failures: an unusable reply is a committed ``proposal.failed`` decision (its usage charged, replayed
from the cache), too many of them fail the run quoting the reply, and an unavailable proposer is waited out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import pytest
from rich.console import Console

from synth_opt import GepaRun, ProposerError, load_config, workspace_status
from synth_opt.cli import render_summary
from synth_opt.errors import ProposerReplyError, ProposerUnavailableError
from synth_opt.events import EventPayload
from synth_opt.events.compare import compare_feeds
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import (
    AcceptanceDecided,
    BudgetUpdated,
    ProposalFailed,
    ProposerFailed,
    ProposerOutage,
    ReflectionRequested,
    RunWarning,
)
from synth_opt.progress import replay_summary
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.testing import FakeOpenAI, FakeOpenAIError, capture_events, serve_fake_openai
from synth_opt.testing.fake_container import FakeContainer
from synth_opt.testing.fake_openai import FakeReply
from synth_opt.usage import Usage

from .test_pipeline_fake import keyword_score, rows

CALL_USAGE = Usage(calls=1, prompt_tokens=100, completion_tokens=20, total_tokens=120, cost_usd=0.002)


def write_config(folder: Path, *, mode: str = "async_pipelined", cache: str = "readwrite", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gepa.toml"
    path.write_text(
        f"""
[run]
run_id = "failures"
seed = 2

[container]
url = "http://fake-container.test"

[dataset]
train_ids = {{count = 12}}
heldout_ids = {{count = 6}}
pareto_ids = {{count = 8}}

[proposer]
backend = "codex_app_server"
{extra}

[gepa]
max_train_rollouts = 150
minibatch_size = 3

[gepa.pipeline]
mode = "{mode}"
max_in_flight_candidates = 4

[cache]
mode = "{cache}"
"""
    )
    return path


def fake() -> FakeContainer:
    return FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 6)},
        score=keyword_score,
        seed_candidate={"instruction": "answer w0"},
    )


class FlakyProposer:
    """Adds the first missing answer word, except every third request (by content, so in any order): a reply cut
    short. Each call, failed or not, costs CALL_USAGE. ``unavailable`` first calls are outages, and every call after
    the first ``down_after``."""

    backend = "test"

    def __init__(
        self, *, fail_every: int = 3, always_fail: bool = False, unavailable: int = 0, down_after: int | None = None
    ) -> None:
        self.fail_every, self.always_fail, self.unavailable = fail_every, always_fail, unavailable
        self.down_after = down_after
        self.calls = 0
        self.billed = Usage(cost_usd=0.0)

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        self.calls += 1
        if self.down_after is not None and self.calls > self.down_after:
            raise ProposerUnavailableError("connection refused (injected, for good)")
        if self.unavailable > 0:
            self.unavailable -= 1
            raise ProposerUnavailableError("connection refused (injected)")
        self.billed += CALL_USAGE
        text = request.candidate[request.target_module]
        key = sum(map(ord, json.dumps(request.to_json(), sort_keys=True)))
        if self.always_fail or key % self.fail_every == 0:
            raise ProposerReplyError(
                "the reply was cut short by the token limit (finish_reason = length)",
                raw_reply='{"proposals": ["answer w0 w1 and th',
                usage=CALL_USAGE,
            )
        words = text.split()
        for record in request.records:
            if record.reward < 1.0 and record.task["answer"] not in words:
                words.append(record.task["answer"])
                break
        return ProposerResult(texts=(" ".join(words),), usage=CALL_USAGE)

    async def aclose(self) -> None:
        return None


P = TypeVar("P", bound=EventPayload)


def events(result: Any, cls: type[P]) -> list[P]:
    """The typed payloads of the events of class ``cls`` in the run's feed, in order."""
    return [event.data for event in read_feed(Path(result.event_feed_path)) if isinstance(event.data, cls)]


@pytest.mark.anyio
async def test_a_proposer_that_fails_one_call_in_three_completes_with_the_failures_on_record(tmp_path: Path) -> None:
    proposer = FlakyProposer()
    # reuse off: once the words are learned, reused parents ask the same reflection request again, which the cache
    # serves (counted in the usage, not billed), and this test counts bills
    path = write_config(tmp_path / "a", extra="max_consecutive_failures = 10")
    path.write_text(path.read_text().replace("[gepa]\n", "[gepa]\nreuse_evaluations = false\n"))
    config = load_config(path)
    result = await GepaRun(config, container_transport=fake().transport(), proposer=proposer).execute_async()

    failed = events(result, ProposalFailed)
    assert failed and result.accepted > 0 and result.status == "completed"
    assert all(e.reason == "proposal_failed" and not e.accepted for e in failed)
    assert "cut short" in failed[0].error and '{"proposals": ["answer w0' in failed[0].error
    normalized = [json.loads(line) for line in Path(result.normalized_event_feed_path).read_text().splitlines()]
    assert sum(line["type"] == "proposal.failed" for line in normalized) == len(failed)
    # every call was billed, failed ones included, and the run's usage is exactly that
    assert result.usage["proposer"]["calls"] == proposer.calls == proposer.billed.calls
    assert result.usage["proposer"]["total_tokens"] == proposer.billed.total_tokens
    assert result.usage["proposer"]["cost_usd"] == pytest.approx(proposer.billed.cost_usd)
    run = workspace_status(result.workspace_db_path)["runs"][0]
    assert run["invariant_report"]["status"] == "ok", run["invariant_report"]
    assert run["proposals_failed"] == len(failed)
    assert f"failed proposals: {len(failed)}" in render_summary(result)
    console = Console(record=True, width=160)
    console.print(replay_summary(read_feed(Path(result.event_feed_path)), run_id="failures"))
    assert f"failed {len(failed)}" in console.export_text()  # the display the live run shows

    # what the proposer saw and said is kept with the run, failed calls included
    run_dir = Path(result.manifest_path).parent
    requested = events(result, ReflectionRequested)
    for event in requested:
        assert isinstance(event.prompt_file, str)
        prompt = (run_dir / event.prompt_file).read_text()
        assert len(prompt) == event.prompt_chars and event.candidate_id in prompt
    for call in events(result, ProposerFailed):
        assert isinstance(call.reply_file, str)
        reply = (run_dir / call.reply_file).read_text()
        assert reply == '{"proposals": ["answer w0 w1 and th' == call.reply
    assert len(list((run_dir / "proposer_calls").glob("*.reply.txt"))) == proposer.calls

    # a readonly replay decides the failed proposals the same way, from the cache
    replay_path = write_config(tmp_path / "a", cache="readonly", extra="max_consecutive_failures = 10")
    replay_text = replay_path.read_text().replace('run_id = "failures"', 'run_id = "replay"')
    replay_text = replay_text.replace("[gepa]\n", "[gepa]\nreuse_evaluations = false\n")
    replay_path.write_text(replay_text)
    replay = await GepaRun(load_config(replay_path), proposer=FlakyProposer(always_fail=True)).execute_async()
    comparison = compare_feeds(Path(result.normalized_event_feed_path), Path(replay.normalized_event_feed_path))
    assert comparison.equal, comparison


@pytest.mark.anyio
async def test_failures_past_max_consecutive_failures_fail_the_run_quoting_the_reply(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "a", mode="sync_serial", cache="off"))
    run = GepaRun(config, container_transport=fake().transport(), proposer=FlakyProposer(always_fail=True))
    with pytest.raises(ProposerError) as caught:
        await run.execute_async()
    message = caught.value.message
    assert "4 failed proposals in a row (proposer.max_consecutive_failures = 3)" in message
    assert '{"proposals": ["answer w0 w1 and th' in message
    manifest = json.loads((run.run_dir / "result_manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["proposals"] == 4


@pytest.mark.anyio
async def test_an_unavailable_proposer_is_waited_out_and_the_run_decides_as_if_it_never_was(tmp_path: Path) -> None:
    whole = await GepaRun(
        load_config(write_config(tmp_path / "whole", cache="off", extra="max_consecutive_failures = 10")),
        container_transport=fake().transport(),
        proposer=FlakyProposer(),
    ).execute_async()
    with capture_events() as captured:
        waited = await GepaRun(
            load_config(write_config(tmp_path / "waited", cache="off", extra="max_consecutive_failures = 10")),
            container_transport=fake().transport(),
            proposer=FlakyProposer(unavailable=2),
        ).execute_async()
    comparison = compare_feeds(Path(whole.normalized_event_feed_path), Path(waited.normalized_event_feed_path))
    assert comparison.equal, comparison
    states = [outage.state for outage in captured.of(ProposerOutage)]
    assert states == [outage.state for outage in events(waited, ProposerOutage)]  # the feed holds what was emitted
    assert states.count("waiting") == 2 and "closed" in states
    assert waited.usage["proposer"] == whole.usage["proposer"]  # an outage bills nothing


@pytest.mark.anyio
async def test_a_proposer_that_stays_unavailable_fails_the_run_after_the_outage_timeout(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "a", cache="off", extra="outage_timeout_seconds = 1.5"))
    run = GepaRun(config, container_transport=fake().transport(), proposer=FlakyProposer(unavailable=10_000))
    with pytest.raises(ProposerError) as caught:
        await run.execute_async()
    assert "served nothing for" in caught.value.message and "outage_timeout_seconds = 1.5" in caught.value.message
    feed = read_feed(run.run_dir / "events.jsonl")
    decided = [e for e in feed if isinstance(e.data, AcceptanceDecided | ProposalFailed)]
    assert decided == []  # nothing was decided from the outage


@pytest.mark.anyio
async def test_the_time_limit_passing_in_an_outage_stops_the_search_and_keeps_the_run(tmp_path: Path) -> None:
    path = write_config(tmp_path / "a", cache="off", extra="outage_timeout_seconds = 600")
    limit = "max_time_seconds = 3\nproposer_estimated_seconds = 0.01\nrollout_estimated_seconds = 0.001\n"
    path.write_text(path.read_text().replace("[gepa]\n", "[gepa]\n" + limit))
    proposer = FlakyProposer(fail_every=10**9, down_after=3)  # three proposals, then nothing served, for good
    result = await GepaRun(load_config(path), container_transport=fake().transport(), proposer=proposer).execute_async()
    assert result.status == "completed" and result.stop_reason == "max_time_seconds"
    decided = events(result, AcceptanceDecided)
    reasons = [decision.reason for decision in decided]
    assert len(reasons) >= 4 and "time_limit" in reasons  # the three served proposals, then those given up
    assert all(reason == "time_limit" for reason in reasons[reasons.index("time_limit") :])
    assert not any(decision.accepted for decision in decided if decision.reason == "time_limit")
    assert sum(decision.accepted for decision in decided) >= 1  # what was served before the outage is kept
    assert result.best_train_score is not None and result.seed_train_score is not None
    assert result.best_train_score > result.seed_train_score
    states = [outage.state for outage in events(result, ProposerOutage)]
    assert "time_limit" in states and "failed" not in states
    assert result.best_heldout_score is not None  # the run went on to its heldout evaluation
    assert events(result, ProposalFailed) == [] and result.proposals_failed == 0  # an outage is no failed proposal


@pytest.mark.anyio
async def test_a_proposal_asked_again_and_cut_by_the_time_limit_is_charged_its_first_call(tmp_path: Path) -> None:
    path = write_config(tmp_path / "a", cache="off", extra="outage_timeout_seconds = 600")
    limit = "max_time_seconds = 3\nproposer_estimated_seconds = 0.01\nrollout_estimated_seconds = 0.001\n"
    path.write_text(path.read_text().replace("[gepa]\n", "[gepa]\n" + limit))
    # proposal 4 repeats an edit in flight and is asked again: its second call, the sixth, is never served
    proposer = FlakyProposer(fail_every=10**9, down_after=5)
    result = await GepaRun(load_config(path), container_transport=fake().transport(), proposer=proposer).execute_async()
    asked_again = [event.proposal_index for event in events(result, ReflectionRequested) if event.attempt == 2]
    assert asked_again, "no proposal was asked again: the test no longer covers the case"
    decided = {decision.proposal_index: decision.reason for decision in events(result, AcceptanceDecided)}
    assert all(decided[index] == "time_limit" for index in asked_again)
    used = events(result, BudgetUpdated)[-1].used
    assert used["cost_usd"] == pytest.approx(proposer.billed.cost_usd)  # every served call charged, the first too
    assert result.usage["proposer"]["cost_usd"] == pytest.approx(proposer.billed.cost_usd)


def one_in_three(learn: Any) -> Any:
    """Every third call fails, in turn: garbage, a reply cut short by the token limit, an HTTP 500 (retried by the
    client, so its retry is the next call). The others answer as a good model would."""
    calls = {"n": 0, "failures": 0}

    def respond(prompt: str) -> str | FakeReply:
        calls["n"] += 1
        if calls["n"] % 3:
            return str(learn(prompt))
        calls["failures"] += 1
        kind = calls["failures"] % 3
        if kind == 1:
            return "I would make the instruction clearer and more specific."
        if kind == 2:
            return FakeReply('{"proposals": ["answer w0 w1 and th', finish_reason="length")
        raise FakeOpenAIError(500, "the model server had a problem")

    return respond


@pytest.mark.anyio
async def test_a_real_proposer_server_failing_one_call_in_three_is_billed_exactly_what_it_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .test_openai_proposer_run import config as openai_config
    from .test_openai_proposer_run import learn
    from .test_pipeline_fake import new_fake

    monkeypatch.setenv("FAKE_OPENAI_KEY", "test-key-not-a-secret")
    server = FakeOpenAI(one_in_three(learn))
    with serve_fake_openai(server) as url:
        path = openai_config(tmp_path, url, wire_api="chat", limits="max_train_rollouts = 150")
        path.write_text(
            path.read_text().replace('model = "fake-model"', 'model = "fake-model"\nmax_consecutive_failures = 5')
        )
        result = await GepaRun(load_config(path), container_transport=new_fake().transport()).execute_async()

    assert result.status == "completed" and result.accepted > 0
    failed = events(result, ProposalFailed)
    reasons = " ".join(e.error for e in failed)
    assert "cut short" in reasons and "I would make the instruction" in reasons
    assert result.proposals_failed == len(failed) >= 2
    # what the run charged is what the server itself logged for every reply it served, failed ones included
    served = server.served
    assert result.usage["proposer"]["calls"] == len(served)
    assert result.usage["proposer"]["prompt_tokens"] == sum(u["prompt_tokens"] for u in served)
    assert result.usage["proposer"]["completion_tokens"] == sum(u["completion_tokens"] for u in served)
    run = workspace_status(result.workspace_db_path)["runs"][0]
    assert run["proposals_failed"] == len(failed) and run["invariant_report"]["status"] == "ok"


@pytest.mark.anyio
async def test_a_seed_that_scores_zero_everywhere_with_one_error_is_reported_loudly(tmp_path: Path) -> None:
    broken = FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 6)},
        score=lambda candidate, row: 0.0,
        seed_candidate={"instruction": "answer w0"},
        feedback=lambda candidate, row, reward: "error: No module named pytest",
    )
    config = load_config(write_config(tmp_path / "a", mode="sync_serial", cache="off"))
    steady = FlakyProposer(fail_every=1_000_003)  # (practically) never fails
    with capture_events() as captured:
        result = await GepaRun(config, container_transport=broken.transport(), proposer=steady).execute_async()
    (warning,) = [event for event in captured if isinstance(event.data, RunWarning)]
    assert "scored 0 on all 8 pareto rows" in warning.message and "No module named pytest" in warning.message
    assert events(result, RunWarning) == [warning.data] and warning.data.rows == 8

    healthy = await GepaRun(
        load_config(write_config(tmp_path / "b", mode="sync_serial", cache="off")),
        container_transport=fake().transport(),
        proposer=FlakyProposer(),
    ).execute_async()
    assert events(healthy, RunWarning) == []
