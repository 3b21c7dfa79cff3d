"""The typed payload of every run event: one frozen dataclass per event type, and the registry of them.

A payload class names its event type (``TYPE``, e.g. ``"candidate.scored"``) and says whether it is a decision
(``DECISION``: the events the normalized feed keeps, SPEC §9). Its attributes are the event's ``fields`` in the
order ``events.jsonl`` writes them. Where the Python name differs from the name on disk, the field's metadata gives
the wire name (``metadata={WIRE: "index"}``: ``proposal.planned`` writes ``index`` and reads back as
``proposal_index``, the name every other event uses). A field some emissions of a type leave out defaults to
:data:`UNSET` and is then left out of the feed (``None`` is written as ``null``), so a payload's
:meth:`~EventPayload.to_fields` is exactly the dict the untyped ``emit`` wrote before.

A payload is emitted with ``bus.emit(payload, message, lane=...)``: the message and the lane stay arguments of the
emit, since they say where and how it happened (a rollout's message names its stage as the job wrote it, an
outage's depends on the moment), not what the event records.

:func:`payload_of` reads a type name and its fields back (replay, :meth:`synth_opt.events.model.Event.from_json`).
A type no class claims, or fields a class cannot be built from (an old or foreign feed), give an
:class:`UnknownEvent` that keeps the fields as they are, so such a feed still reads; a reader that wants what there
is of an older feed's event with fewer fields reads it *partially* (``partial=True``, ``Event.read_partially``).
A stage is a :class:`Stage` (``Stage(3, "child")``), written ``"p3.child"`` and parsed back by ``Stage.parse``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, Final, Literal, TypeVar

__all__ = [
    "EVENT_TYPES",
    "HELDOUT_STAGE",
    "SEED_STAGE",
    "UNSET",
    "WIRE",
    "AcceptanceDecided",
    "BudgetUpdated",
    "BudgetWarning",
    "CacheAccess",
    "CacheNamespace",
    "CandidateRegistered",
    "CandidateScored",
    "CandidateStatus",
    "CheckpointWritten",
    "ConfigWarning",
    "ContainerChecked",
    "ContainerLaunched",
    "ContainerOutage",
    "ContainerWarning",
    "DatasetResolved",
    "EventDiscarded",
    "EventPayload",
    "FrontierUpdated",
    "HeldoutScored",
    "PlanForecast",
    "ProposalCreated",
    "ProposalFailed",
    "ProposalPlanned",
    "ProposerCalled",
    "ProposerFailed",
    "ProposerOutage",
    "ReflectionRequested",
    "RolloutCompleted",
    "RolloutDegraded",
    "RolloutReused",
    "RunConfig",
    "RunDiscarded",
    "RunFinished",
    "RunState",
    "RunWarning",
    "SearchStopped",
    "SeedScored",
    "Stage",
    "UnknownEvent",
    "Unset",
    "decision_types",
    "payload_of",
    "shared_field",
]

WIRE: Final = "wire"
"""Field metadata key: the field's name in ``events.jsonl`` when it differs from the attribute's."""
_STAGE: Final = "stage"  # field metadata key: the value is a Stage, written as its string
_FLATTEN: Final = "flatten"  # field metadata key: a dict whose items are written as fields of their own


class Unset(enum.Enum):
    """The type of :data:`UNSET`: a field this emission leaves out of the feed (unlike ``None``, written null)."""

    UNSET = "unset"

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> Literal[False]:
        return False


UNSET: Final = Unset.UNSET

_STAGE_TEXT = re.compile(r"p(\d+)\.(.+)\Z")


@dataclass(frozen=True, slots=True)
class Stage:
    """Which step of the search a rollout or a score belongs to: ``Stage(3, "child")`` is written ``"p3.child"``;
    a stage outside any proposal (the seed's pareto scoring, the heldout evaluation) has ``proposal`` None and is
    written as its ``step`` alone (``"seed.pareto"``, ``"heldout"``)."""

    proposal: int | None
    step: str

    def __str__(self) -> str:
        return self.step if self.proposal is None else f"p{self.proposal}.{self.step}"

    @classmethod
    def parse(cls, text: str) -> Stage:
        """The stage ``text`` names (the inverse of ``str``); text not of the form ``p<n>.<step>`` is a step."""
        match = _STAGE_TEXT.match(text)
        if match is None:
            return cls(None, text)
        return cls(int(match.group(1)), match.group(2))


SEED_STAGE: Final = Stage(None, "seed.pareto")
HELDOUT_STAGE: Final = Stage(None, "heldout")


class EventPayload:
    """The base of every payload class: its type name, whether it is a decision, and its wire fields."""

    __slots__ = ()
    TYPE: ClassVar[str] = ""
    DECISION: ClassVar[bool] = False
    FEED_OMITTED: ClassVar[tuple[str, ...]] = ()
    """Wire fields kept out of ``events.jsonl`` (observers still get them)."""
    KEY: ClassVar[tuple[str, ...]] = ()
    """Wire fields that identify what the event is about: a reader of partial events (see ``from_fields``) may
    refuse one without them (the workspace projections do)."""

    @property
    def event_type(self) -> str:
        return type(self).TYPE

    def to_fields(self) -> dict[str, Any]:
        """The event's ``fields`` as the feed writes them (wire names, in order, :data:`UNSET` ones left out)."""
        out: dict[str, Any] = {}
        for spec in _specs(type(self)):
            value = getattr(self, spec.attribute)
            if spec.flatten:
                out.update(value)
            elif value is not UNSET:
                out[spec.wire] = str(value) if isinstance(value, Stage) else value
        return out

    @classmethod
    def from_fields(cls, data: Mapping[str, Any], *, partial: bool = False) -> EventPayload:
        """The payload of an event read back; raises ``TypeError`` when a field it always has is missing.

        ``partial`` reads what is there of an event an older feed (or a hand-made test event) has with fewer
        fields: each missing field that has no default is None, *whatever its annotation*, so a reader that asks
        for partial payloads treats every attribute as possibly None (the workspace projections, the progress
        display and the score chart do)."""
        kwargs: dict[str, Any] = {}
        known: set[str] = set()
        flat: str | None = None
        for spec in _specs(cls):
            if spec.flatten:
                flat = spec.attribute
                continue
            known.add(spec.wire)
            if spec.wire not in data:
                if partial and spec.required:
                    kwargs[spec.attribute] = None
                continue
            value = data[spec.wire]
            if spec.stage and isinstance(value, str):
                value = Stage.parse(value)
            elif spec.sequence and isinstance(value, list):
                value = tuple(value)
            kwargs[spec.attribute] = value
        if flat is not None:
            kwargs[flat] = {key: value for key, value in data.items() if key not in known}
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class _Spec:
    attribute: str
    wire: str
    stage: bool
    sequence: bool
    flatten: bool
    required: bool


_SPECS: dict[type[EventPayload], tuple[_Spec, ...]] = {}


def _spec(item: Field[Any]) -> _Spec:
    annotation = str(item.type)
    return _Spec(
        attribute=item.name,
        wire=str(item.metadata.get(WIRE, item.name)),
        stage=bool(item.metadata.get(_STAGE)),
        sequence=annotation.startswith("tuple["),
        flatten=bool(item.metadata.get(_FLATTEN)),
        required=item.default is MISSING and item.default_factory is MISSING,
    )


def _specs(cls: type[EventPayload]) -> tuple[_Spec, ...]:
    found = _SPECS.get(cls)
    if found is None:
        found = _SPECS[cls] = tuple(_spec(item) for item in fields(cls))  # type: ignore[arg-type]
    return found


EVENT_TYPES: dict[str, type[EventPayload]] = {}
"""Every payload class by its event type name."""

_P = TypeVar("_P", bound=type[EventPayload])


def _register(cls: _P) -> _P:
    if cls.TYPE in EVENT_TYPES:
        raise ValueError(f"event type {cls.TYPE!r} is claimed by {EVENT_TYPES[cls.TYPE].__name__} already")
    EVENT_TYPES[cls.TYPE] = cls
    return cls


def decision_types() -> frozenset[str]:
    """The type names of the decision events (the ones the normalized feed keeps)."""
    return frozenset(name for name, cls in EVENT_TYPES.items() if cls.DECISION)


@dataclass(frozen=True, slots=True)
class UnknownEvent(EventPayload):
    """An event of a type no class claims, or whose fields do not fit its class: its fields as they are."""

    type_name: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def event_type(self) -> str:
        return self.type_name

    def to_fields(self) -> dict[str, Any]:
        return dict(self.data)


def payload_of(type_name: str, data: Mapping[str, Any], *, partial: bool = False) -> EventPayload:
    """The typed payload of an event of ``type_name`` with ``data`` as its fields (an :class:`UnknownEvent` when
    no class claims the type or the fields do not fit). ``partial`` reads fields that are fewer than the class
    has as :meth:`EventPayload.from_fields` says (the missing ones None, whatever their annotation)."""
    cls = EVENT_TYPES.get(type_name)
    if cls is not None:
        for lenient in (False, True) if partial else (False,):
            try:
                return cls.from_fields(data, partial=lenient)
            except (TypeError, ValueError):
                pass
    return UnknownEvent(type_name, dict(data))


def shared_field(data: EventPayload, name: str) -> Any:
    """The attribute ``name`` that many event types share (``candidate_id``, ``proposal_index``, ``stage``,
    ``usage``...) or None for an event without it (or that left it out); an unknown event's field of that name."""
    if isinstance(data, UnknownEvent):
        return data.data.get(name)
    value = getattr(data, name, None)
    return None if value is UNSET else value


# -- the run ---------------------------------------------------------------------------------------------------


@_register
@dataclass(frozen=True, slots=True)
class RunState(EventPayload):
    """The run (or the supervisor) entered a lifecycle state; the other fields appear on the states that say them."""

    TYPE: ClassVar[str] = "run.state"
    state: str
    run_id: str | Unset = UNSET
    config_path: str | Unset = UNSET
    commits: int | Unset = UNSET
    cache_path: str | Unset = UNSET
    container_url: str | Unset = UNSET
    command: tuple[str, ...] | Unset = UNSET
    stop_reason: str | Unset | None = UNSET
    error: str | Unset | None = UNSET


@_register
@dataclass(frozen=True, slots=True)
class RunConfig(EventPayload):
    TYPE: ClassVar[str] = "run.config"
    DECISION: ClassVar[bool] = True
    digest: str
    decision_config: dict[str, Any]


@_register
@dataclass(frozen=True, slots=True)
class ConfigWarning(EventPayload):
    TYPE: ClassVar[str] = "config.warning"
    key: str


@_register
@dataclass(frozen=True, slots=True)
class RunWarning(EventPayload):
    """The seed scored 0 everywhere with one feedback: most likely a broken container."""

    TYPE: ClassVar[str] = "run.warning"
    feedback: str
    rows: int


@_register
@dataclass(frozen=True, slots=True)
class RunFinished(EventPayload):
    TYPE: ClassVar[str] = "run.finished"
    DECISION: ClassVar[bool] = True
    stop_reason: str
    best_candidate_id: str
    seed_candidate_id: str
    best_train_score: float | None
    seed_train_score: float | None


@_register
@dataclass(frozen=True, slots=True)
class RunDiscarded(EventPayload):
    """A resumed run's total of the work restarts threw away (``Discarded.to_json``)."""

    TYPE: ClassVar[str] = "run.discarded"
    rollouts: int
    rollout: dict[str, Any]
    proposer: dict[str, Any]
    probes: int
    probe: dict[str, Any]
    total: dict[str, Any]


@_register
@dataclass(frozen=True, slots=True)
class EventDiscarded(EventPayload):
    """A feed line a resume replaced: what it was, what it spent, and whether that is paid again. Written by the
    resume into the feed in place of the line, never emitted on a bus."""

    TYPE: ClassVar[str] = "event.discarded"
    discarded_type: str
    proposal_index: int | None
    stage: Stage | None = field(metadata={_STAGE: True})
    discarded_usage: dict[str, Any] | None
    paid_again: bool


@_register
@dataclass(frozen=True, slots=True)
class CheckpointWritten(EventPayload):
    """A durable checkpoint; its snapshot (``payload`` on the wire) stays out of ``events.jsonl``."""

    TYPE: ClassVar[str] = "checkpoint.written"
    FEED_OMITTED: ClassVar[tuple[str, ...]] = ("payload",)
    commits: int
    generation: int
    best_candidate_id: str | None
    candidate_count: int | None
    snapshot: dict[str, Any] = field(metadata={WIRE: "payload"})


# -- the dataset and the container -----------------------------------------------------------------------------


@_register
@dataclass(frozen=True, slots=True)
class DatasetResolved(EventPayload):
    TYPE: ClassVar[str] = "dataset.resolved"
    DECISION: ClassVar[bool] = True
    train_ids: tuple[str, ...]
    pareto_ids: tuple[str, ...]
    minibatch_ids: tuple[str, ...]
    heldout_ids: tuple[str, ...]


@_register
@dataclass(frozen=True, slots=True)
class ContainerWarning(EventPayload):
    """Something about the container or the dataset worth saying (the message says it)."""

    TYPE: ClassVar[str] = "container.warning"


@_register
@dataclass(frozen=True, slots=True)
class ContainerChecked(EventPayload):
    TYPE: ClassVar[str] = "container.checked"
    status: str
    checks: tuple[dict[str, Any], ...]


@_register
@dataclass(frozen=True, slots=True)
class ContainerLaunched(EventPayload):
    TYPE: ClassVar[str] = "container.launched"
    url: str
    pid: int


@_register
@dataclass(frozen=True, slots=True)
class ContainerOutage(EventPayload):
    """A change of the container's outage circuit (:mod:`synth_opt.container.circuit`). Each state carries its own
    figures (``failed_rollouts``, ``held``, a served probe's ``usage``...), kept in ``details`` in their order."""

    TYPE: ClassVar[str] = "container.outage"
    state: str
    url: str
    details: dict[str, Any] = field(default_factory=dict, metadata={_FLATTEN: True})

    @property
    def usage(self) -> dict[str, Any] | None:
        """A served probe's usage (state ``canary_served``)."""
        usage = self.details.get("usage")
        return usage if isinstance(usage, dict) else None

    @property
    def rollout_id(self) -> str | None:
        """A served probe's rollout id (state ``canary_served``)."""
        rid = self.details.get("rollout_id")
        return rid if isinstance(rid, str) else None


@_register
@dataclass(frozen=True, slots=True)
class ContainerReplica(EventPayload):
    """A replica of ``[container] urls`` taken out (``out``: a transport failure) or brought back in (``in``: it
    answers ``GET /health`` again); :mod:`synth_opt.container.replicas`."""

    TYPE: ClassVar[str] = "container.replica"
    url: str
    state: str
    reason: str


@_register
@dataclass(frozen=True, slots=True)
class CacheNamespace(EventPayload):
    TYPE: ClassVar[str] = "cache.namespace"
    namespace: str
    policy_model: str


@_register
@dataclass(frozen=True, slots=True)
class CacheAccess(EventPayload):
    TYPE: ClassVar[str] = "cache.access"
    boundary: str
    action: str
    key: str
    namespace: str


# -- the search ------------------------------------------------------------------------------------------------


@_register
@dataclass(frozen=True, slots=True)
class SeedScored(EventPayload):
    TYPE: ClassVar[str] = "seed.scored"
    DECISION: ClassVar[bool] = True
    candidate_id: str
    scores: dict[str, float]
    mean_score: float | None


@_register
@dataclass(frozen=True, slots=True)
class CandidateRegistered(EventPayload):
    TYPE: ClassVar[str] = "candidate.registered"
    KEY: ClassVar[tuple[str, ...]] = ("candidate_id",)
    candidate_id: str
    parent_ids: tuple[str, ...]
    module: str | None
    proposal_index: int | None
    payload: dict[str, str]


@_register
@dataclass(frozen=True, slots=True)
class CandidateStatus(EventPayload):
    """A candidate registry entry (without its payload). A seed's or an accepted candidate's entry is its record
    (``pool_index``, ``scores``, ``objective_scores``, ``mean_score``); another child's has ``minibatch_scores``."""

    TYPE: ClassVar[str] = "candidate.status"
    KEY: ClassVar[tuple[str, ...]] = ("candidate_id",)
    candidate_id: str
    parent_ids: tuple[str, ...]
    pool_index: int | Unset = UNSET
    module_changed: str | None = None
    proposal_index: int | None = None
    scores: dict[str, float] | Unset = UNSET
    objective_scores: dict[str, Any] | Unset | None = UNSET
    mean_score: float | Unset | None = UNSET
    status: str = field(kw_only=True)  # required, and written where the registry entry has it
    minibatch_scores: dict[str, float] | Unset | None = UNSET
    reason: str | Unset = UNSET
    rebased_to: str | Unset = UNSET
    extra: dict[str, Any] = field(default_factory=dict, metadata={_FLATTEN: True})
    """Entry fields this class does not name (kept, after the named ones)."""


@_register
@dataclass(frozen=True, slots=True)
class CandidateScored(EventPayload):
    TYPE: ClassVar[str] = "candidate.scored"
    DECISION: ClassVar[bool] = True
    candidate_id: str
    stage: Stage = field(metadata={_STAGE: True})
    scores: dict[str, float]
    objective_scores: dict[str, Any] | None
    mean_score: float | None


@_register
@dataclass(frozen=True, slots=True)
class ProposalPlanned(EventPayload):
    TYPE: ClassVar[str] = "proposal.planned"
    DECISION: ClassVar[bool] = True
    proposal_index: int = field(metadata={WIRE: "index"})
    kind: str
    parent_id: str
    parent_ids: tuple[str, ...]
    minibatch: tuple[str, ...]
    module: str
    pool_version: int
    ancestor_id: str | Unset | None = UNSET


@_register
@dataclass(frozen=True, slots=True)
class ProposalCreated(EventPayload):
    TYPE: ClassVar[str] = "proposal.created"
    DECISION: ClassVar[bool] = True
    proposal_index: int
    candidate_id: str
    candidate_ids: tuple[str, ...]
    parent_id: str
    parent_ids: tuple[str, ...]
    kind: str
    module: str
    pool_version: int
    staleness: int
    rebase: str | Unset = UNSET
    rebased_onto: str | Unset | None = UNSET
    # (gepa.pipeline.concurrent_edits) the proposals in flight whose edits the first reply repeated: the proposer
    # was asked again (absent when it was not)
    repeated: tuple[int, ...] | Unset = UNSET


@_register
@dataclass(frozen=True, slots=True)
class AcceptanceDecided(EventPayload):
    TYPE: ClassVar[str] = "acceptance.decided"
    DECISION: ClassVar[bool] = True
    proposal_index: int
    candidate_id: str
    accepted: bool
    reason: str
    parent_sum: float
    child_sum: float


@_register
@dataclass(frozen=True, slots=True)
class ProposalFailed(EventPayload):
    """A failed proposal's decision: rejected, the parent stays."""

    TYPE: ClassVar[str] = "proposal.failed"
    DECISION: ClassVar[bool] = True
    proposal_index: int
    candidate_id: str
    accepted: bool
    reason: str
    parent_sum: float
    child_sum: float
    error: str


@_register
@dataclass(frozen=True, slots=True)
class FrontierUpdated(EventPayload):
    TYPE: ClassVar[str] = "frontier.updated"
    DECISION: ClassVar[bool] = True
    pool_version: int
    pool_size: int
    members: tuple[str, ...]
    rows_changed: tuple[str, ...]
    fronts: dict[str, list[str]]
    best_candidate_id: str
    best_mean_score: float | None


@_register
@dataclass(frozen=True, slots=True)
class BudgetUpdated(EventPayload):
    TYPE: ClassVar[str] = "budget.updated"
    proposal_index: int
    used: dict[str, Any]
    reserved: dict[str, Any]
    train_cap: int | None
    accepted: int
    rejected: int
    since_improvement: int
    reused: int | Unset = UNSET  # rollouts the run did not make (evaluation reuse on)


@_register
@dataclass(frozen=True, slots=True)
class BudgetWarning(EventPayload):
    """A limit that leaves no room for the heldout evaluation (``limit`` names it)."""

    TYPE: ClassVar[str] = "budget.warning"
    limit: str


@_register
@dataclass(frozen=True, slots=True)
class PlanForecast(EventPayload):
    """After each commit: the proposals the run will have made when ``stopping_limit`` stops it, at the rates it
    has seen so far (``synth_opt.gepa.forecast.live_forecast``); what ``gepa plan`` forecast, kept up to date."""

    TYPE: ClassVar[str] = "plan.forecast"
    proposal_index: int
    acceptance_rate: float | None
    expected_proposals: int
    stopping_limit: str
    proposals_by_limit: dict[str, int]
    expected_totals: dict[str, float] = field(default_factory=dict)
    """The train rollouts, tokens and cost the run will have used by then (the search's, before the heldout)."""


@_register
@dataclass(frozen=True, slots=True)
class SearchStopped(EventPayload):
    TYPE: ClassVar[str] = "search.stopped"
    DECISION: ClassVar[bool] = True
    stop_reason: str


@_register
@dataclass(frozen=True, slots=True)
class HeldoutScored(EventPayload):
    TYPE: ClassVar[str] = "heldout.scored"
    DECISION: ClassVar[bool] = True
    candidate_id: str
    scores: dict[str, float]
    mean_score: float | None


# -- transport: rollouts and proposer calls --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rollout(EventPayload):
    KEY: ClassVar[tuple[str, ...]] = ("rollout_id",)
    rollout_id: str
    candidate_id: str
    task_id: str
    stage: Stage = field(metadata={_STAGE: True})
    reward: float | None
    status: str
    objectives: dict[str, Any] | None
    error: str | None
    feedback: str | None
    trace_digest: str | None
    duration_seconds: float
    usage: dict[str, Any] | None
    verifier_jobs: tuple[dict[str, Any], ...]
    # the container's trace (what the policy saw and did), kept when the run reuses evaluations: a resume rebuilds
    # its store of evaluations from the feed, and a reused row shows the proposer this output again
    output: Any | Unset = UNSET
    # what was kept only in part (``feedback``, ``output``: longer than synth_opt.container.kept.STORED_CHARS), with
    # each one's whole length in characters and sha256
    cut: dict[str, Any] | Unset = UNSET


@_register
@dataclass(frozen=True, slots=True)
class RolloutCompleted(_Rollout):
    """A rollout the container served."""

    TYPE: ClassVar[str] = "rollout.completed"


@_register
@dataclass(frozen=True, slots=True)
class RolloutDegraded(_Rollout):
    """A degraded attempt: a task failure or the row's own transport failure (``error`` says which)."""

    TYPE: ClassVar[str] = "rollout.degraded"


@_register
@dataclass(frozen=True, slots=True)
class RolloutReused(EventPayload):
    """A rollout the run did not make (``gepa.reuse_evaluations``): the same candidate's evaluation on the same row,
    committed earlier in the run as ``source_rollout_id``, stands for it, reward, output and feedback."""

    TYPE: ClassVar[str] = "rollout.reused"
    KEY: ClassVar[tuple[str, ...]] = ("rollout_id",)
    rollout_id: str
    candidate_id: str
    task_id: str
    stage: Stage = field(metadata={_STAGE: True})
    reward: float
    source_rollout_id: str


@_register
@dataclass(frozen=True, slots=True)
class ReflectionRequested(EventPayload):
    """A proposer call about to be made; the prompt's size and digest, and its file when calls are kept."""

    TYPE: ClassVar[str] = "reflection.requested"
    proposal_index: int
    candidate_id: str
    module: str
    records: tuple[dict[str, Any], ...]
    omitted_records: int
    prompt_chars: int
    prompt_sha256: str
    prompt_file: str | Unset = UNSET
    attempt: int | Unset = UNSET  # 2: asked again, the first reply having repeated edits in flight (else absent)


@_register
@dataclass(frozen=True, slots=True)
class ProposerCalled(EventPayload):
    TYPE: ClassVar[str] = "proposer.called"
    proposal_index: int
    backend: str
    model: str | None
    outcome: str
    texts: int
    duration_seconds: float
    usage: dict[str, Any]
    reply_chars: int
    reply_sha256: str
    reply: str
    reply_file: str | Unset = UNSET
    attempt: int | Unset = UNSET


@_register
@dataclass(frozen=True, slots=True)
class ProposerFailed(EventPayload):
    """A proposer call that failed; an unusable reply (``outcome`` ``"unusable_reply"``) is described as kept."""

    TYPE: ClassVar[str] = "proposer.failed"
    proposal_index: int
    backend: str
    model: str | None
    outcome: str
    error: str
    usage: dict[str, Any] | None
    reply_chars: int | Unset = UNSET
    reply_sha256: str | Unset = UNSET
    reply: str | Unset = UNSET
    reply_file: str | Unset = UNSET
    attempt: int | Unset = UNSET


@_register
@dataclass(frozen=True, slots=True)
class ProposerOutage(EventPayload):
    """The proposer served nothing (``state`` ``"waiting"``, then ``"failed"``, or ``"time_limit"`` when the run's
    time limit passed first: the call is given up) or served again (``"closed"``)."""

    TYPE: ClassVar[str] = "proposer.outage"
    state: str
    proposal_index: int
    attempt: int | Unset = UNSET
    error: str | Unset = UNSET
