"""Evaluation reuse (``gepa.reuse_evaluations``): what the run already knows of a candidate on a row.

Every reply the container served for the seed and for a committed proposal is kept, keyed by candidate and row; a
later batch of the same candidate on the same row takes the stored reply (reward, objectives, output, feedback)
instead of a rollout. Which evaluations a proposal may take is fixed when it is planned: those committed before
its plan (``visible_from`` at most the commits then), and its own earlier batches (an accepted child's minibatch
rows among the pareto rows). So what is reused never depends on which lane finished first. The store is a
function of the committed feed: a resume rebuilds it from the ``rollout.completed`` lines the feed keeps
(:meth:`EvaluationStore.from_events`), which carry the output when reuse is on.

A degraded attempt is never kept: the next batch that needs the row tries it live again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from synth_opt.actors.messages import BatchDone
from synth_opt.container.kept import shortened
from synth_opt.container.wire import RolloutReply
from synth_opt.events import Event, Stage
from synth_opt.events.types import SEED_STAGE, UNSET, RolloutCompleted
from synth_opt.usage import Usage

__all__ = ["Evaluation", "EvaluationStore", "Lookup"]

Lookup = Callable[[str, str], RolloutReply | None]
"""The reply a batch may reuse for (candidate id, row), or None: roll it out."""


@dataclass(frozen=True, slots=True)
class Evaluation:
    reply: RolloutReply
    visible_from: int  # the commits after which a planned proposal may reuse it (0: the seed's, from the start)


class EvaluationStore:
    """``shown_chars``: keep of each reply's feedback and output only what a proposer may be shown of a row
    (``proposer.max_feedback_chars``): a run keeps every evaluation, so a container writing long transcripts would
    otherwise hold them all in memory; what the proposer is shown of a reused row does not change
    (:func:`synth_opt.container.kept.shortened`). None keeps them as they came."""

    def __init__(self, shown_chars: int | None = None) -> None:
        self._entries: dict[tuple[str, str], Evaluation] = {}
        self.shown_chars = shown_chars

    def _kept(self, reply: RolloutReply) -> RolloutReply:
        """What the store keeps of a reply (never the raw reply: what is kept is what the feed rebuilds)."""
        return replace(reply, raw={}) if self.shown_chars is None else shortened(reply, self.shown_chars)

    def keep_at_most(self, shown_chars: int) -> None:
        """From now on keep ``shown_chars`` of each feedback and output, and cut what is kept already to it (a
        store rebuilt from the feed, which keeps more)."""
        self.shown_chars = shown_chars
        self._entries = {key: replace(entry, reply=self._kept(entry.reply)) for key, entry in self._entries.items()}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, batch: BatchDone | None, *, visible_from: int) -> None:
        """Keep the served replies of a committed batch; the first evaluation of a (candidate, row) stays."""
        if batch is None:
            return
        for done in batch.results:
            if done.reply is not None and not done.reused:
                key = (done.job.candidate_id, done.job.task_id)
                if key not in self._entries:
                    self._entries[key] = Evaluation(self._kept(done.reply), visible_from)

    def get(self, candidate_id: str, task_id: str, *, commits: int | None = None) -> RolloutReply | None:
        """The stored reply of ``candidate_id`` on ``task_id``, if one committed by ``commits`` (None: any)."""
        entry = self._entries.get((candidate_id, task_id))
        if entry is None or (commits is not None and entry.visible_from > commits):
            return None
        return entry.reply

    def lookup(self, commits: int | None, *own: BatchDone | None) -> Lookup:
        """What a batch planned after ``commits`` commits may reuse: the store as it was then, and the served
        replies of ``own`` (the proposal's earlier batches)."""
        mine = {
            (done.job.candidate_id, done.job.task_id): done.reply
            for batch in own
            if batch is not None
            for done in batch.results
            if done.reply is not None
        }

        def find(candidate_id: str, task_id: str) -> RolloutReply | None:
            found = self.get(candidate_id, task_id, commits=commits)
            return found if found is not None else mine.get((candidate_id, task_id))

        return find

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> EvaluationStore:
        """The store of a run whose feed holds ``events``: the feed a resume keeps, in which every rollout line
        belongs to the seed, to a committed proposal or to the heldout phase (not kept: no proposal reuses it)."""
        found: dict[tuple[str, str], Evaluation] = {}
        for event in events:
            data = event.data
            if not isinstance(data, RolloutCompleted) or data.reward is None:
                continue
            visible_from = _visible_from(data.stage)
            key = (data.candidate_id, data.task_id)
            if visible_from is None or (key in found and found[key].visible_from <= visible_from):
                continue
            reply = RolloutReply(
                rollout_id=data.rollout_id,
                status=data.status,
                reward=float(data.reward),
                objectives=dict(data.objectives or {}),
                usage=Usage.from_dict(data.usage) if data.usage else Usage(),
                trace=None if data.output is UNSET else data.output,
                feedback=data.feedback,
                cut=dict(data.cut) if isinstance(data.cut, dict) else {},
            )
            found[key] = Evaluation(reply, visible_from)
        store = cls()
        store._entries = found
        return store


def _visible_from(stage: Stage) -> int | None:
    if stage.proposal is not None:
        return stage.proposal + 1
    return 0 if stage == SEED_STAGE else None
