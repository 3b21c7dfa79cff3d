"""What a config asks for that cannot work fails before anything is spent. The dataset, checked against the
container's taskset before any rollout: a split the container does not list, an id it does not list, and heldout
ids that are also training rows (heldout rows never reach the proposer) are config errors naming the key. An
environment variable the config names but that is unset, a readonly cache that does not exist, a launched
container's cwd that is no folder, or a cache inside the run's own folder, fails before a run directory is made."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from synth_opt import ConfigError, GepaRun, SynthOptimizerError, load_config
from synth_opt.errors import CacheCorruptError

from .test_pipeline_fake import LearningProposer, new_fake, write_config


async def refused(tmp_path: Path, old: str, new: str) -> str:
    path = write_config(tmp_path, "checked", mode="sync_serial")
    path.write_text(path.read_text().replace(old, new))
    fake = new_fake()
    with pytest.raises(ConfigError) as error:
        await GepaRun(
            load_config(path), container_transport=fake.transport(), proposer=LearningProposer()
        ).execute_async()
    assert fake.rollouts_served == 0
    return error.value.message


@pytest.mark.anyio
async def test_a_split_the_container_does_not_list_is_named_with_those_it_does(tmp_path: Path) -> None:
    message = await refused(tmp_path, "[dataset]\n", '[dataset]\ntrain_split = "trian"\n')
    assert "dataset.train_split: the container lists no split 'trian' (it lists 'test', 'train')" in message


@pytest.mark.anyio
async def test_an_id_the_container_does_not_list_is_named(tmp_path: Path) -> None:
    message = await refused(
        tmp_path, "train_ids = {count = 12}", 'train_ids = ["train-1", "train-2", "train-99", "train-3"]'
    )
    assert "dataset.train_ids: id 'train-99' is not one the container lists for split 'train'" in message


@pytest.mark.anyio
async def test_heldout_rows_that_are_training_rows_are_refused(tmp_path: Path) -> None:
    message = await refused(tmp_path, "[dataset]\n", '[dataset]\nheldout_split = "train"\n')
    assert "dataset.heldout_ids: id 'train-0' is also in dataset.train_ids (10 of 10 heldout ids are)" in message
    assert "heldout rows never reach the proposer" in message


@pytest.mark.anyio
async def test_heldout_rows_apart_from_the_training_rows_of_one_split_are_fine(tmp_path: Path) -> None:
    path = write_config(tmp_path, "apart", mode="sync_serial")
    text = path.read_text().replace("[dataset]\n", '[dataset]\nheldout_split = "train"\n')
    text = text.replace("train_ids = {count = 12}", "train_ids = " + str([f"train-{i}" for i in range(8)]))
    text = text.replace("heldout_ids = {count = 10}", 'heldout_ids = ["train-9", "train-10", "train-11"]')
    path.write_text(text.replace("pareto_ids = {count = 8}", "pareto_ids = {count = 4}"))
    result = await GepaRun(
        load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer()
    ).execute_async()
    assert result.status == "completed"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (
            'url = "http://fake-container.test"\n',
            'url = "http://fake-container.test"\nauth_bearer_env = "SYNTH_OPT_TEST_UNSET_TOKEN"\n',
            "container.auth_bearer_env: environment variable SYNTH_OPT_TEST_UNSET_TOKEN is not set",
        ),
        ('mode = "off"', 'mode = "readonly"', "cache.mode: readonly, but the cache"),
        (
            'url = "http://fake-container.test"\n',
            'command = ["{python}", "container.py", "{port}"]\ncwd = "nowhere"\n',
            r"container\.cwd: \S+/nowhere is not a folder, so the container cannot start there",
        ),
        (
            'mode = "off"',
            'mode = "readwrite"\npath = "runs/early/workspace.sqlite"',
            r"cache\.path: \S+/runs/early/workspace\.sqlite is inside the run's own folder",
        ),
    ],
    ids=["unset-variable", "missing-readonly-cache", "missing-container-cwd", "cache-in-the-run-folder"],
)
async def test_what_can_be_checked_before_the_run_fails_before_any_run_directory(
    tmp_path: Path, old: str, new: str, says: str
) -> None:
    path = write_config(tmp_path, "early", mode="sync_serial")
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(SynthOptimizerError, match=says):
        await GepaRun(
            load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer()
        ).execute_async()
    assert not (tmp_path / "runs").exists()  # no run directory, no registry line, no latest link


def test_a_cache_path_naming_another_programs_database_fails_before_any_run_directory(tmp_path: Path) -> None:
    path = write_config(tmp_path, "foreign", mode="sync_serial")
    path.write_text(path.read_text().replace('mode = "off"', 'mode = "readwrite"\npath = "mlflow.db"'))
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("CREATE TABLE experiments (id INTEGER PRIMARY KEY)")
    db.close()
    config = load_config(path)
    assert config.cache_path() == tmp_path / "mlflow.db"
    with pytest.raises(CacheCorruptError, match="is a database of something else"):
        GepaRun(config, container_transport=new_fake().transport(), proposer=LearningProposer()).execute()
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("taken_by", ["a file", "a link that leads nowhere", "a FIFO (a named pipe)"])
def test_a_run_folder_taken_by_something_else_is_a_config_error_naming_it(tmp_path: Path, taken_by: str) -> None:
    path = write_config(tmp_path, "taken", mode="sync_serial")
    run_dir = tmp_path / "runs" / "taken"
    run_dir.parent.mkdir()
    if taken_by == "a file":
        run_dir.write_text("notes\n")
    elif taken_by == "a link that leads nowhere":
        run_dir.symlink_to(tmp_path / "gone")
    else:
        os.mkfifo(run_dir)
    with pytest.raises(ConfigError) as raised:
        GepaRun(load_config(path), container_transport=new_fake().transport(), proposer=LearningProposer()).execute()
    message = raised.value.message
    shown = f"a link to {tmp_path / 'gone'} that leads nowhere" if "link" in taken_by else taken_by
    assert f"the run's folder {run_dir} is taken by {shown}; move it away" in message, message
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["taken"]  # nothing made beside it
