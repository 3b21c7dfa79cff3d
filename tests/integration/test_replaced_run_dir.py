"""A run whose directory is removed, or replaced by another run's, while it goes on claims nothing there: it fails
naming the directory, writes no checkpoint, result or registry into the folder now in its place, and leaves its new
owner's files as they were (so a re-run there is never told the run already finished)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from synth_opt import GepaRun, RunStateError, load_config

from .test_pipeline_fake import LearningProposer, new_fake, write_config


@pytest.mark.anyio
async def test_a_run_whose_directory_was_replaced_writes_nothing_into_the_new_one(tmp_path: Path) -> None:
    path = write_config(tmp_path, "taken", mode="sync_serial", budget=400)
    run_dir = tmp_path / "runs" / "taken"
    run = GepaRun(load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer())

    async def replace_the_directory(events: Any, view: Any) -> None:
        decided = 0
        async with events:
            async for event in events:
                decided += event.type == "acceptance.decided"
                if decided == 2:
                    shutil.rmtree(run_dir)
                    run_dir.mkdir()
                    (run_dir / "run.lock").write_text("4242\n")  # another run's
                    (run_dir / "notes.txt").write_text("the new owner's\n")

    run.observer = replace_the_directory
    with pytest.raises(RunStateError) as raised:
        await run.execute_async()
    assert f"run directory {run_dir} was removed or replaced while the run was going" in raised.value.message
    left = {p.name for p in run_dir.iterdir()}
    claims = {"checkpoint.json", "result_manifest.json", "candidate_registry.json", "frontier.json", "run_status.json"}
    assert not left & claims, left
    assert (run_dir / "run.lock").read_text() == "4242\n" and (run_dir / "notes.txt").read_text() == "the new owner's\n"
