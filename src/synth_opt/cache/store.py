"""The request cache: one SQLite file, three modes.

``off`` never reads or writes; ``readwrite`` serves hits and records misses after the live call; ``readonly`` only
reads and raises :class:`~synth_opt.errors.CacheMissError` on a miss, naming the boundary and the key. Every hit,
miss and write is announced as a ``cache.access`` event (the workspace records them) and counted for
``cache_profile.json``. A file that is not a readable cache raises :class:`~synth_opt.errors.CacheCorruptError`.

Each write is committed before it is announced (WAL, ``synchronous = NORMAL``: a commit survives the process being
killed, and costs no fsync). So every reply the event feed says was written is in the file: a run killed at any
moment and resumed with the same cache is served again what it had received, and pays nothing twice (which is
what its ``usage.discarded`` says). Short transactions also let runs that share the file write in turn.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from synth_opt.cache.keys import cache_key
from synth_opt.errors import CacheCorruptError, CacheMissError, RunFailedError
from synth_opt.events import EventBus, utc_now
from synth_opt.events.types import CacheAccess

__all__ = ["BOUNDARIES", "CacheStore"]

BOUNDARIES = (
    "container.metadata",
    "container.program",
    "container.dataset_rows",
    "container.rollout",
    "proposer.codex",
    "proposer.openai_compatible",
    "proposer.offline",
)
"""The built-in boundaries (SPEC §8, and the ``offline`` proposer's); a proposer's is its backend's
(``synth_opt.proposers.backends.ProposerBackend``: ``proposer.codex`` is ``codex_app_server``'s)."""
SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entries (
    namespace TEXT NOT NULL,
    boundary TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (namespace, boundary, key)
)
"""


class CacheStore:
    def __init__(self, path: Path, *, mode: str, namespace: str, bus: EventBus | None = None) -> None:
        if mode not in ("off", "readwrite", "readonly"):
            raise ValueError(f"cache mode must be off, readwrite or readonly, not {mode!r}")
        self.path = path
        self.mode = mode
        self.namespace = namespace
        self.bus = bus
        self.counts: Counter[tuple[str, str]] = Counter()
        self._db: sqlite3.Connection | None = None
        if mode != "off":
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = None
        try:
            if self.mode == "readonly":
                if not self.path.exists():
                    raise CacheMissError(
                        f"readonly cache {self.path} does not exist; run the config once with cache.mode = "
                        "'readwrite' first",
                        path=str(self.path),
                    )
                db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
                self._refuse_foreign(db)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                self._refuse_foreign(db)  # before anything is written
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA busy_timeout=5000")
                db.execute(SCHEMA)
            db.execute("SELECT key FROM cache_entries LIMIT 1").fetchone()  # a cache? (count(*) would read it all)
        except sqlite3.DatabaseError as error:
            if db is not None:
                db.close()  # the refused file is not held open
            raise CacheCorruptError(
                f"cache file {self.path} is not a readable synth_opt cache ({error}); move it aside or delete it, "
                "then re-run (a readonly run needs a good cache from a readwrite run)",
                path=str(self.path),
            ) from None
        return db

    def _refuse_foreign(self, db: sqlite3.Connection) -> None:
        """Another program's database (tables, none of them the cache's) is never written into or read as one."""
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if tables and "cache_entries" not in tables:
            db.close()  # the refused file is not held open
            raise CacheCorruptError(
                f"cache file {self.path} is a database of something else (tables {', '.join(sorted(tables)[:5])}), "
                "not a synth_opt cache; point cache.path at a file of its own",
                path=str(self.path),
            )

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def get(self, boundary: str, request: Any) -> Any | None:
        """The cached value, or None on a miss (in ``readonly``, a miss raises CacheMissError)."""
        if self._db is None:
            return None
        key = cache_key(self.namespace, boundary, request)
        try:
            row = self._db.execute(
                "SELECT value FROM cache_entries WHERE namespace = ? AND boundary = ? AND key = ?",
                (self.namespace, boundary, key),
            ).fetchone()
            value = None if row is None else json.loads(row[0])
        except (sqlite3.DatabaseError, json.JSONDecodeError) as error:
            raise CacheCorruptError(
                f"cache file {self.path}: entry {boundary}/{key[:16]} is unreadable ({error}); delete the file "
                "and re-run with cache.mode = 'readwrite'",
                path=str(self.path),
            ) from None
        self._record(boundary, "hit" if row is not None else "miss", key)
        if row is None and self.mode == "readonly":
            raise CacheMissError(
                f"readonly run: no cache entry for boundary {boundary}, key {key[:16]} (namespace "
                f"{self.namespace}); the config or the cache differs from the run that filled it; re-run with "
                "cache.mode = 'readwrite'",
                boundary=boundary,
                key=key,
            )
        return value

    def put(self, boundary: str, request: Any, value: Any) -> None:
        if self._db is None or self.mode != "readwrite":
            return
        key = cache_key(self.namespace, boundary, request)
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
        try:
            self._db.execute(  # committed at once (autocommit): see the module's docstring
                "INSERT OR REPLACE INTO cache_entries (namespace, boundary, key, value, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (self.namespace, boundary, key, text, utc_now()),
            )
        except sqlite3.Error as error:  # a full disk, a file made read-only under the run
            raise RunFailedError(
                f"could not write the cache {self.path}: {error}; free space (or fix permissions) and re-run the "
                "same config: it resumes from its last checkpoint (or set cache.mode = 'off')",
                path=str(self.path),
            ) from None
        self._record(boundary, "write", key)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _record(self, boundary: str, action: str, key: str) -> None:
        self.counts[(boundary, action)] += 1
        if self.bus is not None:
            access = CacheAccess(boundary, action, key, self.namespace)
            self.bus.emit(access, f"cache {action} {boundary}", lane="cache")

    def profile(self) -> dict[str, Any]:
        """The compact ``cache_profile.json``: mode, entries, and hits, misses and writes by boundary."""
        entries = 0
        if self._db is not None:
            entries = int(
                self._db.execute(
                    "SELECT count(*) FROM cache_entries WHERE namespace = ?", (self.namespace,)
                ).fetchone()[0]
            )
        by_boundary: dict[str, dict[str, int]] = {}
        for (boundary, action), n in sorted(self.counts.items()):
            by_boundary.setdefault(boundary, {"hits": 0, "misses": 0, "writes": 0})[_plural(action)] = n
        totals = {name: sum(row[name] for row in by_boundary.values()) for name in ("hits", "misses", "writes")}
        return {
            "mode": self.mode,
            "path": str(self.path),
            "namespace": self.namespace,
            "entries": entries,
            **totals,
            "lookups": totals["hits"] + totals["misses"],
            "by_boundary": by_boundary,
        }


def _plural(action: str) -> str:
    return {"hit": "hits", "miss": "misses", "write": "writes"}[action]
