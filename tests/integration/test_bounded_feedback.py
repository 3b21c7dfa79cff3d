"""A container whose feedback is 5 MB, in a whole run with the openai_compatible proposer over real HTTP and a
hard max_total_tokens: every prompt sent is bounded (rows cut with a visible marker, the prompt to
max_prompt_tokens), the run never uses more tokens than its limit, and its feed and workspace keep only the start
of each long feedback and trace (a pipelined run with reuse resumes from them to the uninterrupted result)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.container.kept import STORED_CHARS
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import RolloutCompleted, RolloutReused
from synth_opt.proposers.reflection import BASE_INSTRUCTIONS, CHARS_PER_TOKEN, REFLECTION_BLOCK_TAG
from synth_opt.testing import FakeOpenAI, serve_fake_openai
from synth_opt.testing.fake_container import FakeContainer

from .test_evaluation_reuse import reuse_config
from .test_pipeline_fake import (
    LearningProposer,
    assert_resumes_to,
    jittery,
    keyword_score,
    rows,
)

BLOCK = re.compile(r"```json " + REFLECTION_BLOCK_TAG + r"\n(.*?)\n```", re.DOTALL)
FEEDBACK_CHARS = 5_000_000
MAX_TOTAL_TOKENS = 60_000
MAX_PROMPT_TOKENS = 16_000  # the default
MAX_OUTPUT_TOKENS = 1_000


def huge_feedback(candidate: dict[str, str], row: dict[str, Any], reward: float) -> str:
    # words of 8 characters: the fake server counts a word as a token, fewer than 4 characters a token
    head = f"expected {row['answer']}. "
    return head + "verbose " * ((FEEDBACK_CHARS - len(head)) // 8)


def learn(prompt: str) -> str:
    request = json.loads(BLOCK.search(prompt).group(1))  # type: ignore[union-attr]
    text = request["current_text"]
    for record in request["records"]:
        if record["reward"] < 1 and record["task"]["answer"] not in text.split():
            return json.dumps({"proposals": [f"{text} {record['task']['answer']}"]})
    return json.dumps({"proposals": [f"{text} w0"]})


def config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "bounded.toml"
    path.write_text(
        f"""
[run]
run_id = "bounded-feedback"

[container]
url = "http://fake-container.test"

[dataset]
train_ids = {{count = 12}}
heldout_ids = {{count = 2}}
pareto_ids = {{count = 4}}

[proposer]
backend = "openai_compatible"
base_url = "{url}"
model = "fake-model"
config = {{ max_tokens = {MAX_OUTPUT_TOKENS} }}

[gepa]
minibatch_size = 3
max_train_rollouts = 400
max_total_tokens = {MAX_TOTAL_TOKENS}
proposer_estimated_tokens = 2000
rollout_estimated_tokens = 12

[cache]
mode = "off"
"""
    )
    return path


@pytest.mark.anyio
async def test_a_5_mb_feedback_is_cut_and_the_token_limit_holds(tmp_path: Path) -> None:
    container = FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 2)},
        score=keyword_score,
        seed_candidate={"instruction": "answer"},
        feedback=huge_feedback,
    )
    fake = FakeOpenAI(learn)
    with serve_fake_openai(fake) as url:
        result = await GepaRun(
            load_config(config(tmp_path, url)), container_transport=container.transport()
        ).execute_async()

    assert fake.requests, "the proposer was never called"
    for request in fake.requests:
        sent = len(BASE_INSTRUCTIONS) + len(request.prompt)
        assert sent <= MAX_PROMPT_TOKENS * CHARS_PER_TOKEN
        assert "[... cut: " in request.prompt  # the cut is visible to the model
        block = json.loads(BLOCK.search(request.prompt).group(1))  # type: ignore[union-attr]
        assert block["records"], "the rows themselves are kept, only shortened"
        assert all(record["cut"]["feedback"]["chars"] > FEEDBACK_CHARS - 8 for record in block["records"])
        # the marker names the whole feedback's length, though the run kept only its start
        assert all(
            r["feedback"].endswith(f" of {r['cut']['feedback']['chars']} characters shown]") for r in block["records"]
        )
    # what the run keeps: the start of each feedback, with the whole one's length and digest, not 5 MB a rollout
    completed = [e.data for e in read_feed(Path(result.event_feed_path)) if isinstance(e.data, RolloutCompleted)]
    assert completed and all(line.cut["feedback"]["chars"] > FEEDBACK_CHARS - 8 for line in completed)  # type: ignore[index]
    assert all(len(line.feedback or "") < STORED_CHARS + 100 for line in completed)
    whole = huge_feedback({}, {"answer": "w1"}, 0.0)
    digests = {line.cut["feedback"]["sha256"] for line in completed if "expected w1." in (line.feedback or "")}  # type: ignore[index]
    assert digests == {hashlib.sha256(whole.encode()).hexdigest()}
    kept = Path(result.event_feed_path).stat().st_size + Path(result.workspace_db_path or "").stat().st_size
    assert kept < 4 * len(completed) * STORED_CHARS  # (the whole feedback would be 5 MB a rollout, twice)
    served_tokens = sum(usage["total_tokens"] for usage in fake.served)
    rollout_tokens = result.usage["rollout"]["total_tokens"]
    assert result.usage["proposer"]["total_tokens"] == served_tokens
    assert served_tokens + rollout_tokens <= MAX_TOTAL_TOKENS
    # (or the search ran out of anything to roll out: every evaluation it needed was known)
    assert result.stop_reason in ("max_total_tokens", "max_train_rollouts", "max_total_rollouts", "reuse_evaluations")


def test_a_proposal_reserves_the_prompt_bound_plus_the_output_limit(tmp_path: Path) -> None:
    from synth_opt.proposers.factory import proposer_call_reservation

    section = load_config(config(tmp_path, "http://127.0.0.1:1/v1")).proposer
    assert proposer_call_reservation(section, estimated_tokens=2000, estimated_cost_usd=None) == (
        MAX_PROMPT_TOKENS + MAX_OUTPUT_TOKENS,
        0.0,
    )
    priced = section.model_copy(update={"cost_per_million_input_tokens": 1.0, "cost_per_million_output_tokens": 4.0})
    _, cost = proposer_call_reservation(priced, estimated_tokens=2000, estimated_cost_usd=0.01)
    assert cost == pytest.approx((MAX_PROMPT_TOKENS * 1.0 + MAX_OUTPUT_TOKENS * 4.0) / 1e6)
    no_limit = section.model_copy(update={"config": {}})  # the estimate stands for the output
    assert proposer_call_reservation(no_limit, estimated_tokens=2000, estimated_cost_usd=None)[0] == 18_000
    codex = section.model_copy(update={"backend": "codex_app_server"})  # codex's own turn: the estimate
    assert proposer_call_reservation(codex, estimated_tokens=2000, estimated_cost_usd=0.5) == (2000, 0.5)


def long_replies() -> FakeContainer:
    """The pipeline tests' container, with feedback and a trace of about 200 kB a rollout that differ by row."""
    container = FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 10)},
        score=keyword_score,
        seed_candidate={"instruction": "answer w0"},
        feedback=lambda candidate, row, reward: (
            f"expected {row['answer']}. " + f"{row['answer']} was missing. " * 9_000
        ),
        rewrite_reply=lambda reply: {
            **reply,
            "trace": {"steps": [f"{reply['task_id']} step {i}" for i in range(12_000)]},
        },
    )
    return container


@pytest.mark.anyio
async def test_a_run_resumed_from_kept_replies_ends_where_an_uninterrupted_one_ends(tmp_path: Path) -> None:
    """With reuse on, a resume rebuilds its store of evaluations (the reused rows' feedback and trace, shown to the
    proposer again) from the feed, which kept only the start of each: the resumed run makes the uninterrupted run's
    decisions, its proposers' prompts included (their digests are in the normalized feed)."""
    whole = await GepaRun(
        load_config(reuse_config(tmp_path, "whole", reuse=True, mode="async_pipelined", budget=300)),
        container_transport=jittery(long_replies(), 7),
        proposer=LearningProposer(),
    ).execute_async()
    feed = [e.data for e in read_feed(Path(whole.event_feed_path))]
    assert any(isinstance(line, RolloutReused) for line in feed)
    completed = [line for line in feed if isinstance(line, RolloutCompleted)]
    assert all(set(line.cut) == {"feedback", "output"} for line in completed)  # type: ignore[arg-type]
    assert all(isinstance(line.output, str) and len(line.output) < STORED_CHARS + 100 for line in completed)

    config = load_config(reuse_config(tmp_path, "parts", reuse=True, mode="async_pipelined", budget=300))
    await assert_resumes_to(whole, config, long_replies, LearningProposer)
