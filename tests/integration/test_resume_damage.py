"""A run directory damaged between a stop and its resume: a feed cut back before the checkpoint, a checkpoint
from another config, a damaged stored result. Each is refused with an error naming the file and what to do, and
nothing in the directory is changed by the refusal (the run's own files put back, it resumes exactly). A run
killed after its manifest and before its workspace stored it gets a whole workspace when it is shown again."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from synth_opt import GepaResult, GepaRun, RunStateError, load_config
from synth_opt.events.compare import compare_feeds
from synth_opt.workspace import workspace_status

from .test_pipeline_fake import (
    FirstWordProposer,
    LearningProposer,
    cancelled_after_decisions,
    jittery,
    new_fake,
    pipelined_config,
    write_config,
)


def files_of(run_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(run_dir.iterdir()) if path.is_file()}


async def stopped_run(tmp_path: Path, name: str, *, seed: int = 3) -> tuple[Path, Path]:
    """A pipelined run cancelled after six decisions (it has a checkpoint to resume from): its config and
    directory."""
    path = pipelined_config(tmp_path, name, staleness="rebase")
    path.write_text(path.read_text().replace("seed = 3", f"seed = {seed}"))
    await cancelled_after_decisions(
        GepaRun(load_config(path), container_transport=jittery(new_fake(), 8), proposer=FirstWordProposer())
    )
    return path, path.parent / "runs" / name


async def whole_run(tmp_path: Path, name: str) -> GepaResult:
    return await GepaRun(
        load_config(pipelined_config(tmp_path, name, staleness="rebase")),
        container_transport=jittery(new_fake(), 7),
        proposer=FirstWordProposer(),
    ).execute_async()


async def resume(path: Path) -> GepaResult:
    return await GepaRun(
        load_config(path), container_transport=jittery(new_fake(), 9), proposer=FirstWordProposer()
    ).execute_async()


@pytest.mark.anyio
async def test_a_feed_cut_back_before_its_checkpoint_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path, run_dir = await stopped_run(tmp_path, "cut")
    feed = run_dir / "events.jsonl"
    whole_feed = feed.read_bytes()
    feed.write_bytes(b"".join(whole_feed.splitlines(keepends=True)[:12]))
    before = files_of(run_dir)
    with pytest.raises(RunStateError, match=r"events\.jsonl ends at event 12, before the checkpoint's event"):
        await resume(path)
    assert files_of(run_dir) == before  # the workspace (with every event) and the checkpoint are kept

    feed.write_bytes(whole_feed)  # the run's own feed put back: it resumes to the uninterrupted result
    resumed = await resume(path)
    whole = await whole_run(tmp_path, "whole")
    assert compare_feeds(Path(whole.normalized_event_feed_path), Path(resumed.normalized_event_feed_path)).equal


@pytest.mark.anyio
async def test_a_checkpoint_of_another_config_is_refused(tmp_path: Path) -> None:
    path, run_dir = await stopped_run(tmp_path, "mine")
    _, other_dir = await stopped_run(tmp_path, "other", seed=4)
    shutil.copy(other_dir / "checkpoint.json", run_dir / "checkpoint.json")
    before = files_of(run_dir)
    with pytest.raises(RunStateError, match=r"checkpoint was written by another config .*--fresh"):
        await resume(path)
    assert files_of(run_dir) == before


@pytest.mark.anyio
async def test_a_damaged_checkpoint_falls_back_to_the_workspace_copy(tmp_path: Path) -> None:
    path, run_dir = await stopped_run(tmp_path, "torn")
    (run_dir / "checkpoint.json").write_text('{"version": 1, "state": {}}')  # no numbers: not a checkpoint
    resumed = await resume(path)
    whole = await whole_run(tmp_path, "whole")
    assert compare_feeds(Path(whole.normalized_event_feed_path), Path(resumed.normalized_event_feed_path)).equal


@pytest.mark.anyio
@pytest.mark.parametrize("damage", ['{"status": "completed"}', '{"status": "comp', "directory"])
async def test_a_damaged_stored_result_is_named(tmp_path: Path, damage: str) -> None:
    path = write_config(tmp_path, "done", mode="sync_serial")
    first = await GepaRun(
        load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer()
    ).execute_async()
    manifest = Path(first.manifest_path)
    manifest.unlink()
    if damage == "directory":
        manifest.mkdir()
    else:
        manifest.write_text(damage)
    with pytest.raises(RunStateError, match=r"result_manifest\.json is damaged .* Delete it and re-run"):
        await GepaRun(
            load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer()
        ).execute_async()


@pytest.mark.anyio
async def test_a_run_killed_after_its_manifest_gets_a_whole_workspace_when_shown_again(tmp_path: Path) -> None:
    path = write_config(tmp_path, "late", mode="sync_serial")
    first = await GepaRun(
        load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer()
    ).execute_async()
    db = Path(first.manifest_path).with_name("workspace.sqlite")
    with sqlite3.connect(db) as conn:  # what a kill right after result_manifest.json leaves
        conn.execute("DELETE FROM manifests")
    assert workspace_status(db)["runs"][0]["invariant_report"]["status"] != "ok"
    again = await GepaRun(
        load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer()
    ).execute_async()
    assert again.from_stored_result
    assert workspace_status(db)["runs"][0]["invariant_report"]["status"] == "ok"
