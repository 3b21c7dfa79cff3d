"""Resuming an unfinished run from its last checkpoint.

A checkpoint (the supervisor's snapshot after a commit, kept durably in ``<run_dir>/checkpoint.json``, see
:mod:`synth_opt.run.checkpoints`; runs written before that file existed kept it in the workspace's
``checkpoints`` table, which is still read as a fallback) holds the algorithm state by reference: pool candidates
by id, everything else by value. Resuming replaces the lines after the checkpoint's sequence number (work the
checkpoint does not know about, done again) and the transport lines of the proposals in flight at it by
``event.discarded`` lines, rebuilds the candidate registry and the pool records from the lines it keeps, and
removes the derived artifacts, which the resumed run writes anew. What the replaced lines had spent is the run's
discarded usage. Decisions are a pure function of config, seed and replies, so the resumed run ends exactly
where an uninterrupted one ends.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth_opt.actors.evaluations import EvaluationStore
from synth_opt.errors import RunStateError
from synth_opt.events import Event, Stage
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import (
    CandidateRegistered,
    CandidateStatus,
    CheckpointWritten,
    ContainerOutage,
    DatasetResolved,
    EventDiscarded,
    ProposalPlanned,
    ProposerCalled,
    ProposerFailed,
    ReflectionRequested,
    RolloutCompleted,
    RolloutDegraded,
    RolloutReused,
    shared_field,
)
from synth_opt.gepa import CandidateRecord
from synth_opt.run.checkpoints import CHECKPOINT_FILE, is_current_checkpoint, read_checkpoint_file
from synth_opt.usage import Usage

__all__ = ["Discarded", "ResumePoint", "checkpoint_announced", "latest_checkpoint", "prepare_resume"]

DERIVED_FILES = (
    "result_manifest.json",
    "run_status.json",
    "events.normalized.jsonl",
    "candidate_registry.json",
    "frontier.json",
    "cache_profile.json",
)


DISCARDED_LINE = EventDiscarded.TYPE  # a feed line a resume replaced (what it spent, and whether that is paid again)
# Transport lines of work in flight: a resume drops those of proposals that had not committed at its checkpoint.
IN_FLIGHT = (RolloutCompleted, RolloutDegraded, RolloutReused, ReflectionRequested, ProposerCalled, ProposerFailed)
ROLLOUT_LINES = (RolloutCompleted, RolloutDegraded, RolloutReused)


@dataclass(frozen=True, slots=True)
class Discarded:
    """Work paid for and then thrown away by restarts: what ran after a run's last durable checkpoint, or was in
    flight at it, and was done again on resume (``usage.discarded`` in the result)."""

    rollouts: int = 0
    rollout: Usage = field(default_factory=Usage)
    proposer: Usage = field(default_factory=Usage)
    probes: int = 0  # outage probes (canaries) served: their replies go nowhere, their spend is real
    probe: Usage = field(default_factory=Usage)

    def __add__(self, other: Discarded) -> Discarded:
        return Discarded(
            self.rollouts + other.rollouts,
            self.rollout + other.rollout,
            self.proposer + other.proposer,
            self.probes + other.probes,
            self.probe + other.probe,
        )

    @classmethod
    def of_line(cls, event: Event) -> Discarded:
        """What an ``event.discarded`` line records as spent and paid again, or what a served outage probe
        (a ``container.outage`` line of state ``canary_served``) spent; nothing for any other line."""
        data = event.read_partially().data  # a line of an older feed may lack a field (then None)
        if isinstance(data, ContainerOutage) and data.state == "canary_served":
            usage = data.usage
            return cls(probes=1, probe=Usage.from_dict(usage) if usage is not None else Usage())
        if not isinstance(data, EventDiscarded) or data.paid_again is False:
            return cls()
        usage = data.discarded_usage
        spent = Usage.from_dict(usage) if isinstance(usage, dict) else Usage()
        if data.discarded_type in (RolloutCompleted.TYPE, RolloutDegraded.TYPE):
            return cls(rollouts=1, rollout=spent)
        if data.discarded_type in (ProposerCalled.TYPE, ProposerFailed.TYPE):
            return cls(proposer=spent)
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {
            "rollouts": self.rollouts,
            "rollout": self.rollout.to_dict(),
            "proposer": self.proposer.to_dict(),
            "probes": self.probes,
            "probe": self.probe.to_dict(),
            "total": (self.rollout + self.proposer + self.probe).to_dict(),
        }


def is_canary_line(event: Event) -> bool:
    """A served outage probe: spend already made, never done again, so a resume keeps its line as it is."""
    data = event.read_partially().data
    return isinstance(data, ContainerOutage) and data.state == "canary_served"


@dataclass(frozen=True, slots=True)
class ResumePoint:
    snapshot: dict[str, Any]
    records: dict[str, CandidateRecord]
    registry: dict[str, dict[str, Any]]
    discarded: Discarded = field(default_factory=Discarded)
    last_sequence_number: int | None = None  # the feed's last line: the resumed run numbers its events after it
    evaluations: EvaluationStore = field(default_factory=EvaluationStore)  # what the kept feed had evaluated
    dataset: DatasetResolved | None = None  # the ids the run started with (its feed's dataset.resolved)

    @property
    def sequence_number(self) -> int:
        if self.last_sequence_number is not None:
            return self.last_sequence_number
        return int(self.snapshot["sequence_number"])


def latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest durable checkpoint, or None (nothing was committed, or it is gone)."""
    found = read_checkpoint_file(run_dir / CHECKPOINT_FILE)
    return found if found is not None else _workspace_checkpoint(run_dir)


def checkpoint_announced(run_dir: Path) -> bool:
    """Whether the feed says a checkpoint was written (``checkpoint.written`` follows a durable write, so a run
    whose feed has none committed nothing)."""
    feed = run_dir / "events.jsonl"
    if not feed.exists():
        return False
    with feed.open(encoding="utf-8", errors="replace") as lines:
        return any(f'"{CheckpointWritten.TYPE}"' in line for line in lines)


def _workspace_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest checkpoint in the workspace's ``checkpoints`` table (runs from before ``checkpoint.json``)."""
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
        if is_current_checkpoint(payload):
            return dict(payload)
    return None


def prepare_resume(
    run_dir: Path, snapshot: dict[str, Any], *, paid_again: bool = True, digest: str | None = None
) -> ResumePoint:
    """Cut the feed back to the checkpoint, rebuild registry and records from it, and clear derived files.

    The lines after the checkpoint's sequence number, and the transport lines of the work in flight at the
    checkpoint (its rollouts and proposer calls), describe work the resumed run does again: each is replaced, in
    place and under its own sequence number, by an ``event.discarded`` line that no projection counts and that
    records what the line had spent (and whether that is paid again: not with a ``readwrite`` cache, which serves
    the replies again, ``paid_again`` False). The resumed run numbers its events after the last line. So the
    run's discarded usage is a function of the feed alone (the sum over its ``event.discarded`` lines), and the one
    atomic replace of the feed is the whole change: a kill at any moment of a resume loses nothing.

    Before anything changes, the checkpoint must belong to the feed (``digest``, the config's decision digest, is
    the one it was written under; the feed reaches it and registers every candidate of its pool): else a
    :class:`RunStateError` names both files and the directory is left as it was."""
    feed = run_dir / "events.jsonl"
    cut = int(snapshot["sequence_number"])
    commits = int(snapshot["commits"])
    try:
        events = list(read_feed(feed))
    except (OSError, ValueError) as error:
        raise _unusable(run_dir, f"{feed} cannot be read ({error})") from None
    stored_digest = snapshot.get("digest")
    if digest is not None and stored_digest is not None and stored_digest != digest:
        raise _unusable(run_dir, f"the checkpoint was written by another config (decision digest {stored_digest})")
    last = max((event.sequence_number for event in events), default=0)
    if last < cut:
        raise _unusable(run_dir, f"{feed.name} ends at event {last}, before the checkpoint's event {cut}")
    rewritten: list[Event] = []
    kept: list[Event] = []
    total = Discarded()
    for event in events:
        replaced = event.sequence_number > cut or _in_flight(event, commits)
        if event.type != DISCARDED_LINE and not is_canary_line(event) and replaced:
            event = _discarded_line(event, paid_again=paid_again)
        total += Discarded.of_line(event)
        if event.type != DISCARDED_LINE:
            kept.append(event)
        rewritten.append(event)
    registry: dict[str, dict[str, Any]] = {}
    payloads: dict[str, dict[str, str]] = {}
    dataset: DatasetResolved | None = None
    for event in kept:
        match event.data:
            case DatasetResolved() as resolved:
                dataset = resolved
            case CandidateRegistered() as registered:
                payloads[str(registered.candidate_id)] = dict(registered.payload)
            case CandidateStatus() as status:  # the registry entry without its payload, as the feed has it
                cid = str(status.candidate_id)
                registry[cid] = {**status.to_fields(), "payload": payloads.get(cid, {})}
    records = {
        cid: CandidateRecord.from_json(entry)
        for cid, entry in registry.items()
        if entry.get("status") in ("seed", "accepted")
    }
    missing = [cid for cid in snapshot["state"]["pool_ids"] if cid not in records]
    if missing:
        raise _unusable(run_dir, f"{feed.name} does not hold the checkpoint's candidates ({', '.join(missing[:3])})")
    tmp = feed.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for event in rewritten:
            out.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(feed)
    evaluations = EvaluationStore.from_events(kept)
    for name in DERIVED_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        (run_dir / f"workspace.sqlite{suffix}").unlink(missing_ok=True)
    return ResumePoint(snapshot, records, registry, total, max(last, cut), evaluations, dataset)


def _unusable(run_dir: Path, why: str) -> RunStateError:
    return RunStateError(
        f"run directory {run_dir} cannot resume from its checkpoint: {why}. "
        f"Restore the run's own events.jsonl and {CHECKPOINT_FILE}, or re-run with --fresh (fresh=True) to start "
        "it over; nothing was changed.",
        run_dir=str(run_dir),
    )


def _discarded_line(event: Event, *, paid_again: bool) -> Event:
    data = event.read_partially().data
    stage = shared_field(data, "stage")
    discarded = EventDiscarded(
        discarded_type=event.type,
        # a plan's index is ``index`` on the wire, which this line never read as its proposal_index
        proposal_index=None if isinstance(data, ProposalPlanned) else shared_field(data, "proposal_index"),
        stage=Stage.parse(stage) if isinstance(stage, str) else stage,
        discarded_usage=shared_field(data, "usage"),
        paid_again=paid_again,
    )
    return Event(
        event.sequence_number,
        event.ts,
        discarded.event_type,
        f"{event.type}: work after the checkpoint a resume started from (or in flight at it); it was done again",
        discarded.to_fields(),
        event.lane,
    )


def _in_flight(event: Event, commits: int) -> bool:
    """A transport line of a proposal that had not committed at the checkpoint (index ``commits`` or later)."""
    data = event.read_partially().data
    if not isinstance(data, IN_FLIGHT):
        return False
    if isinstance(data, ROLLOUT_LINES):  # a rollout says its proposal in its stage
        index = data.stage.proposal if isinstance(data.stage, Stage) else None
    else:
        index = data.proposal_index
    return isinstance(index, int) and index >= commits
