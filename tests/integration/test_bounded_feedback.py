"""A container whose feedback is 5 MB, in a whole run with the openai_compatible proposer over real HTTP and a
hard max_total_tokens: every prompt sent is bounded (rows cut with a visible marker, the prompt to
max_prompt_tokens), and the run never uses more tokens than its limit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.proposers.reflection import BASE_INSTRUCTIONS, CHARS_PER_TOKEN, REFLECTION_BLOCK_TAG
from synth_opt.testing import FakeOpenAI, serve_fake_openai
from synth_opt.testing.fake_container import FakeContainer

from .test_pipeline_fake import keyword_score, rows

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
