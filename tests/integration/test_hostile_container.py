"""Hostile container replies through a real container process in a whole run: a body over
``container.max_reply_bytes``, JSON nested 100,000 deep, a reward too large for a float. Each is a degraded rollout
(a task failure: something was served) whose message names the problem; the run completes. Half an emoji (a lone
surrogate) in a reply's texts is no failure: it is kept as U+FFFD."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import RolloutCompleted, RolloutDegraded
from synth_opt.testing.fault_container import command

from .fault_runs import fault_run_config

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, argv: list[str], *, container_extra: str = "") -> Path:
    return fault_run_config(tmp_path, argv, run_id="hostile", budget=30, container_extra=container_extra)


def degraded_rollouts(tmp_path: Path) -> list[RolloutDegraded]:
    """The degraded rollouts the run's feed records, typed."""
    feed = read_feed(tmp_path / "runs" / "hostile" / "events.jsonl")
    return [event.data for event in feed if isinstance(event.data, RolloutDegraded)]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "options", "container_extra", "named"),
    [
        ("huge_body", {}, "", "a body of 9437184 bytes, over container.max_reply_bytes = 8388608"),
        (
            "huge_body",
            {"huge_chunked": True},
            "",
            "a body of more than 8388608 bytes, over container.max_reply_bytes = 8388608",
        ),
        (
            "huge_body",
            {"huge_bytes": 40_000},
            "max_reply_bytes = 20000",
            "a body of 40000 bytes, over container.max_reply_bytes = 20000",
        ),
        ("deep_nesting", {}, "", "JSON nested deeper than 256 levels"),
        ("big_reward", {}, "", "reward_info.outcome_reward is an integer of 400 digits, too large for a float"),
    ],
    ids=["huge", "huge-chunked", "configured-limit", "deep", "big-integer"],
)
async def test_a_hostile_reply_is_a_degraded_rollout_naming_the_problem_and_the_run_completes(
    tmp_path: Path, fault: str, options: dict[str, Any], container_extra: str, named: str
) -> None:
    argv = command(fault, after=2, count=2, **options)
    result = await GepaRun(load_config(write_config(tmp_path, argv, container_extra=container_extra))).execute_async()
    assert result.status == "completed", result
    degraded = degraded_rollouts(tmp_path)
    assert len(degraded) == 2, [rollout.error for rollout in degraded]
    for rollout in degraded:
        error = rollout.error
        assert error is not None and named in error, error
        assert "POST /rollout" in error or "(/rollout)" in error, error
    log = (tmp_path / "runs" / "hostile" / "container.log").read_text()
    assert log.count(f"fault {fault} on rollout request") == 2


@pytest.mark.anyio
async def test_half_an_emoji_in_a_reply_is_kept_as_a_replacement_character_and_the_run_completes(
    tmp_path: Path,
) -> None:
    """A reply whose feedback, trace and a metric's name hold a lone UTF-16 surrogate, escaped in the JSON as a
    JavaScript container sends half an emoji, is a good rollout: the surrogate becomes U+FFFD at the boundary, so
    the feed, the workspace and the request cache (on here, and it keeps the raw reply, the metric's name too) are
    written, and the run completes."""
    argv = command("lone_surrogates", after=2, count=3)
    path = fault_run_config(tmp_path, argv, run_id="hostile", budget=30, cache="readwrite")
    result = await GepaRun(load_config(path)).execute_async()
    assert result.status == "completed", result
    assert not degraded_rollouts(tmp_path)
    feed = read_feed(tmp_path / "runs" / "hostile" / "events.jsonl")
    completed = [event.data for event in feed if isinstance(event.data, RolloutCompleted)]
    halves = [rollout for rollout in completed if "\ufffd cut" in (rollout.feedback or "")]
    assert len(halves) == 3
    assert all("half an emoji: \ufffd" in str(rollout.output) for rollout in halves)  # (the trace, kept for reuse)
    with sqlite3.connect(str(result.workspace_db_path)) as db:
        stored = [row[0] for row in db.execute("SELECT feedback FROM evidence_frames WHERE feedback LIKE '%cut'")]
    assert len(stored) == 3 and all("\ufffd" in text for text in stored)
    log = (tmp_path / "runs" / "hostile" / "container.log").read_text()
    assert log.count("fault lone_surrogates on rollout request") == 3
