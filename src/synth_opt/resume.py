"""Resuming an unfinished run from its last checkpoint.

A checkpoint (the supervisor's snapshot after a commit, kept in the workspace's ``checkpoints`` table) holds the
algorithm state by reference: pool candidates by id, everything else by value. Resuming cuts ``events.jsonl``
back to the checkpoint's sequence number (later lines describe work the checkpoint does not know about and that
will be done again), rebuilds the candidate registry and the pool records from the feed, and removes the derived
artifacts, which the resumed run writes anew. Decisions are a pure function of config, seed and replies, so the
resumed run ends exactly where an uninterrupted one ends.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synth_opt.events.normalize import read_feed
from synth_opt.gepa import CandidateRecord

__all__ = ["ResumePoint", "latest_checkpoint", "prepare_resume"]

DERIVED_FILES = (
    "result_manifest.json",
    "run_status.json",
    "events.normalized.jsonl",
    "candidate_registry.json",
    "frontier.json",
    "cache_profile.json",
)


@dataclass(frozen=True, slots=True)
class ResumePoint:
    snapshot: dict[str, Any]
    records: dict[str, CandidateRecord]
    registry: dict[str, dict[str, Any]]

    @property
    def sequence_number(self) -> int:
        return int(self.snapshot["sequence_number"])


def latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest checkpoint with its whole snapshot, or None (no workspace, no checkpoint, or unreadable)."""
    db_path = run_dir / "workspace.sqlite"
    if not db_path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT payload_json FROM checkpoints ORDER BY sequence_number DESC").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None
    for (text,) in rows:
        try:
            payload = json.loads(text)
        except (TypeError, json.JSONDecodeError):
            continue
        if isinstance(payload, dict) and "state" in payload:
            return payload
    return None


def prepare_resume(run_dir: Path, snapshot: dict[str, Any]) -> ResumePoint:
    """Cut the feed back to the checkpoint, rebuild registry and records from it, and clear derived files."""
    feed = run_dir / "events.jsonl"
    cut = int(snapshot["sequence_number"])
    kept = [event for event in read_feed(feed) if event.sequence_number <= cut]
    tmp = feed.with_suffix(".jsonl.tmp")
    with feed.open(encoding="utf-8") as source, tmp.open("w", encoding="utf-8") as out:
        for line in source:
            try:
                number = int(json.loads(line)["sequence_number"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                break
            if number > cut:
                break
            out.write(line)
    tmp.replace(feed)
    registry: dict[str, dict[str, Any]] = {}
    payloads: dict[str, dict[str, str]] = {}
    for event in kept:
        if event.type == "candidate.registered":
            payloads[str(event.fields["candidate_id"])] = dict(event.fields["payload"])
        elif event.type == "candidate.status":
            cid = str(event.fields["candidate_id"])
            registry[cid] = {**event.fields, "payload": payloads.get(cid, {})}
    records = {
        cid: CandidateRecord.from_json(entry)
        for cid, entry in registry.items()
        if entry.get("status") in ("seed", "accepted")
    }
    for name in DERIVED_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        (run_dir / f"workspace.sqlite{suffix}").unlink(missing_ok=True)
    return ResumePoint(snapshot, records, registry)
