"""What ``cache.path`` may point at: a synth_opt cache (or nothing yet). A file that is no SQLite database, or
another program's database (a run's ``workspace.sqlite``, an MLflow store), is a ``CacheCorruptError`` naming it,
and nothing is written into it; a run refuses it before it makes a run directory."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from synth_opt.cache.store import CacheStore
from synth_opt.errors import CacheCorruptError, RunFailedError


def other_database(path: Path) -> bytes:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE experiments (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO experiments (name) VALUES ('kept')")
    db.close()
    return path.read_bytes()


def held_open(path: Path) -> int:
    """How many of this process's file descriptors are on ``path``."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))


@pytest.mark.parametrize("mode", ["readwrite", "readonly"])
def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "mlflow.db"
    before = other_database(path)
    with pytest.raises(CacheCorruptError) as raised:
        CacheStore(path, mode=mode, namespace="n")
    assert str(path) in raised.value.message and "not a synth_opt cache" in raised.value.message
    assert held_open(path) == 0  # refused, and let go of
    assert path.read_bytes() == before  # no cache table written into it
    with sqlite3.connect(path) as db:
        assert [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["experiments"]
    db.close()


@pytest.mark.parametrize("mode", ["readwrite", "readonly"])
def test_a_file_that_is_no_database_is_refused(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "cache.sqlite"
    path.write_text("notes, not a database\n" * 100)
    with pytest.raises(CacheCorruptError, match=r"is not a readable synth_opt cache") as raised:
        CacheStore(path, mode=mode, namespace="n")
    assert held_open(path) == 0, raised.value  # the traceback keeps the frame, not the connection
    assert path.read_text() == "notes, not a database\n" * 100


def test_an_empty_file_and_a_cache_open(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()  # an empty file is an empty database: it becomes the cache
    store = CacheStore(empty, mode="readwrite", namespace="n")
    store.put("rollout", {"q": 1}, {"reward": 1.0})
    store.close()
    again = CacheStore(empty, mode="readonly", namespace="n")
    assert again.get("rollout", {"q": 1}) == {"reward": 1.0}
    again.close()


def test_a_cache_that_cannot_grow_fails_the_write_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    store = CacheStore(path, mode="readwrite", namespace="n")
    store.put("rollout", {"q": 0}, {"reward": 1.0})
    assert store._db is not None
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # the file cannot grow: a full disk, as SQLite sees it
    with pytest.raises(RunFailedError) as raised:
        store.put("rollout", {"q": 1}, {"reward": 1.0, "feedback": "x" * 100_000})
    message = raised.value.message
    assert message.startswith(f"could not write the cache {path}: database or disk is full"), message
    assert "re-run the same config" in message
    assert store.get("rollout", {"q": 0}) == {"reward": 1.0}  # what it held stays readable
    store.close()
