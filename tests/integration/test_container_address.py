"""What the proposer is shown of a failed rollout does not name the container's address: a launched container
listens on another port each start, and two runs of one config against it must make the same proposals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.testing.fake_container import FakeContainer

from .test_pipeline_fake import LearningProposer, keyword_score, rows, write_config


class RecordingProposer(LearningProposer):
    def __init__(self) -> None:
        super().__init__()
        self.feedback: list[str | None] = []

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        self.feedback.extend(record.feedback for record in request.records)
        return await super().propose(request)


def broken_on_one_row(reply: dict[str, Any]) -> dict[str, Any]:
    if reply["task_id"] == "train-4":  # an invalid reward: a degraded rollout whose error the proposer is shown
        reply["reward_info"]["outcome_reward"] = "high"
    return reply


async def feedback_shown(folder: Path, url: str) -> list[str | None]:
    folder.mkdir()
    path = write_config(folder, "run", mode="sync_serial")  # one run id: the same rollout ids
    path.write_text(path.read_text().replace('url = "http://fake-container.test"', f'url = "{url}"'))
    fake = FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 10)},
        score=keyword_score,
        seed_candidate={"instruction": "answer w0"},
        rewrite_reply=broken_on_one_row,
    )
    proposer = RecordingProposer()
    await GepaRun(load_config(path), container_transport=fake.transport(), proposer=proposer).execute_async()
    return proposer.feedback


@pytest.mark.anyio
async def test_a_failed_rollout_s_error_reaches_the_proposer_without_the_container_s_address(tmp_path: Path) -> None:
    first = await feedback_shown(tmp_path / "first", "http://127.0.0.1:41234")
    second = await feedback_shown(tmp_path / "second", "http://127.0.0.1:39017")
    errors = [text for text in first if text and "sent an invalid reply" in text]
    assert errors, first  # the broken row was in a minibatch the proposer saw
    assert all("container (/rollout) sent an invalid reply" in text for text in errors), errors
    assert not any("127.0.0.1" in (text or "") for text in first)
    assert first == second
