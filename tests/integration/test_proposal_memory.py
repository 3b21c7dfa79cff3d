"""``gepa.proposal_memory`` through GepaRun, against the fake container: a proposer that repeats an edit that failed
unless it is told it failed. With memory it is told (only of rejections committed before each plan) and moves on;
its repeats of known texts cost no rollouts; a pipelined run with memory resumed after a cancel makes the decisions
of an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import AcceptanceDecided
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.usage import Usage
from synth_opt.view.data import run_detail
from synth_opt.view.pages import run_page

from .test_evaluation_reuse import reuse_config
from .test_pipeline_fake import LearningProposer, assert_resumes_to, jittery, new_fake

DECOY = "politely"


class StubbornProposer(LearningProposer):
    """First adds a word that fixes nothing (rejected: no better on any row); proposes the learning edit only once
    the request says that attempt was rejected. A pure function of the request."""

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        text = request.candidate[request.target_module]
        decoy = f"{text} {DECOY}"
        if all(edit.text != decoy for edit in request.rejected_edits):
            self.calls += 1
            return ProposerResult(texts=(decoy,), usage=Usage(calls=1, total_tokens=5, cost_usd=None))
        return await super().propose(request)


def memory_config(tmp_path: Path, name: str, *, memory: bool, mode: str = "sync_serial") -> Path:
    path = reuse_config(tmp_path, name, reuse=True, mode=mode, budget=200)
    path.write_text(path.read_text().replace("[gepa]\n", f"[gepa]\nproposal_memory = {str(memory).lower()}\n"))
    return path


def reasons(feed: str) -> list[str]:
    return [e.data.reason for e in read_feed(Path(feed)) if isinstance(e.data, AcceptanceDecided)]


@pytest.mark.anyio
async def test_memory_turns_a_stubborn_proposer_into_a_search(tmp_path: Path) -> None:
    runs = {}
    for memory in (False, True):
        config = load_config(memory_config(tmp_path, f"memory-{memory}", memory=memory))
        runs[memory] = await GepaRun(
            config, container_transport=new_fake().transport(), proposer=StubbornProposer()
        ).execute_async()
    without, with_memory = runs[False], runs[True]
    assert without.accepted == 0 and set(reasons(without.event_feed_path)) == {"not_improved"}  # stuck on the decoy
    assert with_memory.accepted > 0 and with_memory.best_train_score > with_memory.seed_train_score
    assert DECOY not in with_memory.best_candidate["instruction"]


@pytest.mark.anyio
async def test_a_pipelined_run_with_memory_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    whole = await GepaRun(
        load_config(memory_config(tmp_path, "whole", memory=True, mode="async_pipelined")),
        container_transport=jittery(new_fake(), 3),
        proposer=StubbornProposer(),
    ).execute_async()
    # the four planned before any commit all try the decoy: the first is rolled out and rejected; the other three
    # repeat an edit in flight, are asked again (concurrent_edits), try it once more and roll nothing out; those
    # planned after its rejection are told, move on
    assert reasons(whole.event_feed_path)[:5] == ["not_improved"] + ["duplicate"] * 3 + ["improved"]
    config = load_config(memory_config(tmp_path, "parts", memory=True, mode="async_pipelined"))
    await assert_resumes_to(whole, config, new_fake, StubbornProposer)


@pytest.mark.anyio
async def test_the_run_browser_says_which_proposals_were_asked_again_and_rebased(tmp_path: Path) -> None:
    """``synth-opt view`` reads the workspace: the three proposals whose first reply repeated proposal 0's edit say
    so in their decision rows, and a rebased proposal names (and links) the candidate its edit was carried onto."""
    result = await GepaRun(
        load_config(memory_config(tmp_path, "view", memory=True, mode="async_pipelined")),
        container_transport=jittery(new_fake(), 3),
        proposer=StubbornProposer(),
    ).execute_async()
    run_dir = Path(result.manifest_path).parent
    detail = run_detail(run_dir)
    by_index = {d.proposal_index: d for d in detail.decisions}
    assert [by_index[i].repeated for i in range(5)] == [(), (0,), (0,), (0,), ()]
    assert [by_index[i].reason for i in (1, 2, 3)] == ["duplicate"] * 3
    rebased = [d for d in detail.decisions if d.rebased_onto is not None]
    assert rebased and all(d.rebased_onto in detail.nodes for d in rebased)
    page = run_page(detail)
    assert page.count("asked again: its first reply repeated p0") == 3
    assert all("rebased onto <a href=" in page and d.rebased_onto in page for d in rebased)
