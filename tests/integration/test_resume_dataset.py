"""A resumed run keeps the ids it started with: a container whose ``/taskset`` now lists its rows in another order
(a listing built from a set, say) changes nothing, and one that no longer lists a row the run uses is refused
naming the key, before anything is rolled out."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth_opt import GepaRun, RunStateError, load_config
from synth_opt.events.compare import compare_feeds
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import ContainerWarning
from synth_opt.testing.fake_container import FakeContainer

from .test_pipeline_fake import LearningProposer, cancelled_after_decisions, keyword_score, rows, write_config


def container(train: list[dict[str, object]]) -> FakeContainer:
    return FakeContainer(
        rows={"train": train, "test": rows("test", 10)},
        score=keyword_score,
        seed_candidate={"instruction": "answer w0"},
    )


def config(folder: Path) -> Path:
    folder.mkdir()
    return write_config(folder, "run", mode="sync_serial")  # train_ids = {count = 12}: the first 12 listed


@pytest.mark.anyio
async def test_a_resume_keeps_the_ids_it_started_with_when_the_listing_changed(tmp_path: Path) -> None:
    listed = rows("train", 16)
    whole = await GepaRun(
        load_config(config(tmp_path / "whole")),
        container_transport=container(listed).transport(),
        proposer=LearningProposer(),
    ).execute_async()

    path = config(tmp_path / "parts")
    await cancelled_after_decisions(
        GepaRun(load_config(path), container_transport=container(listed).transport(), proposer=LearningProposer()), 3
    )
    reordered = container(listed[::-1])  # its first 12 are other rows
    resumed = await GepaRun(
        load_config(path), container_transport=reordered.transport(), proposer=LearningProposer()
    ).execute_async()

    comparison = compare_feeds(Path(whole.normalized_event_feed_path), Path(resumed.normalized_event_feed_path))
    assert comparison.equal, comparison
    assert resumed.rollouts_used == whole.rollouts_used and resumed.best_candidate_id == whole.best_candidate_id
    assert reordered.rollouts_served > 0  # the resume ran its rollouts against the reordered container
    warnings = [e.message for e in read_feed(Path(resumed.event_feed_path)) if isinstance(e.data, ContainerWarning)]
    assert any("keeps the ids it started with" in message for message in warnings), warnings


@pytest.mark.anyio
async def test_a_resume_whose_rows_are_gone_from_the_container_is_refused_naming_the_key(tmp_path: Path) -> None:
    listed = rows("train", 16)
    path = config(tmp_path / "parts")
    await cancelled_after_decisions(
        GepaRun(load_config(path), container_transport=container(listed).transport(), proposer=LearningProposer()), 3
    )
    shrunk = container(listed[2:])  # train-0 and train-1 are gone
    with pytest.raises(RunStateError) as raised:
        await GepaRun(
            load_config(path), container_transport=shrunk.transport(), proposer=LearningProposer()
        ).execute_async()
    message = raised.value.message
    assert "dataset.train_ids 'train-0', 'train-1'" in message and "--fresh" in message, message
    assert shrunk.rollouts_served == 0
