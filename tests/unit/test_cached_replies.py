"""The request cache at the container boundary keeps a long reply as the run keeps it (``container.kept``): what
it stores, what a hit gives back, and an entry kept shorter than a later run keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from synth_opt.cache.boundaries import CachedContainer
from synth_opt.cache.store import CacheStore
from synth_opt.container.client import ContainerClient
from synth_opt.container.kept import trace_digest
from synth_opt.container.wire import RolloutRequest
from synth_opt.testing.fake_container import FakeContainer

pytestmark = pytest.mark.anyio

URL = "http://container.test"
FEEDBACK = "expected w1. " + "detail " * 5_000  # 35,013 characters
TRACE = {"steps": [f"step {i}" for i in range(3_000)]}


def container() -> FakeContainer:
    return FakeContainer(
        rows={"train": [{"task_id": "t1", "question": "q", "answer": "w1"}]},
        score=lambda candidate, row: 0.5,
        feedback=lambda candidate, row, reward: FEEDBACK,
        rewrite_reply=lambda reply: {**reply, "trace": TRACE},
    )


def request() -> RolloutRequest:
    return RolloutRequest("ro-1", "sync", "t1", "c", {"instruction": "x"}, {}, {"task_id": "t1"}, {})


async def rollout(path: Path, mode: str, kept_chars: int, fake: FakeContainer | None) -> Any:
    store = CacheStore(path, mode=mode, namespace="n")
    try:
        if fake is None:
            return await CachedContainer(store, None, url=URL, kept_chars=kept_chars).rollout(request())
        async with ContainerClient(URL, transport=fake.transport()) as live:
            return await CachedContainer(store, live, url=URL, kept_chars=kept_chars).rollout(request())
    finally:
        store.close()


async def test_a_long_reply_is_cached_as_kept_and_a_hit_gives_the_same_reply(tmp_path: Path) -> None:
    path, fake = tmp_path / "cache.sqlite", container()
    fresh = await rollout(path, "readwrite", 10_000, fake)
    assert fake.rollouts_served == 1 and set(fresh.cut) == {"feedback", "output"}
    assert fresh.cut["feedback"]["chars"] == len(FEEDBACK) and fresh.whole_trace_digest == trace_digest(TRACE)
    assert path.stat().st_size < len(FEEDBACK)  # the entry holds 10,000 characters of each, not the whole
    again = await rollout(path, "readonly", 10_000, None)
    assert (again.feedback, again.trace, again.cut, again.whole_trace_digest, again.reward) == (
        fresh.feedback,
        fresh.trace,
        fresh.cut,
        fresh.whole_trace_digest,
        fresh.reward,
    )


async def test_an_entry_kept_shorter_than_the_run_keeps_is_asked_again_unless_the_run_is_readonly(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cache.sqlite"
    short = await rollout(path, "readwrite", 1_000, container())
    readonly = await rollout(path, "readonly", 20_000, None)  # nothing live to ask: the entry as it is
    assert readonly.feedback == short.feedback
    fake = container()
    longer = await rollout(path, "readwrite", 20_000, fake)
    assert fake.rollouts_served == 1 and len(longer.feedback or "") > 20_000
    assert longer.cut["feedback"] == short.cut["feedback"]  # the same whole text
    unused = container()
    cached = await rollout(path, "readwrite", 20_000, unused)  # the entry was replaced: a hit now
    assert unused.rollouts_served == 0 and cached.feedback == longer.feedback
