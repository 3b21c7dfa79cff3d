"""A run's JSON files (result manifest, candidate registry, frontier, cache profile) are written atomically; one
that cannot be written (a full disk, a folder in its place) is a RunFailedError naming the file and what to do,
with no temporary file left behind and the previous version intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth_opt.errors import RunFailedError
from synth_opt.run.artifacts import write_json


def test_a_json_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "result_manifest.json"
    write_json(path, {"status": "running"})
    write_json(path, {"status": "completed"})
    assert json.loads(path.read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["result_manifest.json"]


def test_a_json_file_that_cannot_be_written_is_named_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "candidate_registry.json"
    path.mkdir()  # a folder where the file belongs: the rename fails as a full disk's write would
    with pytest.raises(RunFailedError) as raised:
        write_json(path, {"candidates": {}})
    message = raised.value.message
    assert message.startswith(f"could not write {path}: Is a directory;") and "re-run the same config" in message
    assert raised.value.detail["path"] == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["candidate_registry.json"]  # no .tmp left


def test_a_json_file_in_a_missing_folder_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "frontier.json"  # its folder is missing: the temporary file cannot be made
    with pytest.raises(RunFailedError, match=r"could not write .*frontier\.json: No such file or directory"):
        write_json(path, {})
