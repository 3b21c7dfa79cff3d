"""The run's dataset: ``[dataset]`` resolved against the container's taskset into ids and task rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synth_opt.cache import CachedContainer
from synth_opt.config import CountSelection, GepaConfig, IdSelection
from synth_opt.container.wire import TasksetInfo
from synth_opt.errors import ConfigError, RunStateError
from synth_opt.events import EventBus
from synth_opt.events.types import ContainerWarning, DatasetResolved

__all__ = ["Dataset", "resolve_dataset", "resolve_ids"]


@dataclass(frozen=True, slots=True)
class Dataset:
    train_ids: list[str]
    pareto_ids: list[str]
    minibatch_ids: list[str]
    heldout_ids: list[str]
    rows: dict[str, dict[str, Any]]


def _kept_ids(
    config: GepaConfig, taskset: TasksetInfo, recorded: DatasetResolved
) -> tuple[list[str], list[str], list[str], list[str]]:
    """The recorded ids of each role, each one the container still lists for its split (when it lists ids)."""
    ds = config.dataset
    roles = (
        ("train_ids", ds.train_split, recorded.train_ids),
        ("pareto_ids", ds.train_split, recorded.pareto_ids),
        ("minibatch_ids", ds.train_split, recorded.minibatch_ids),
        ("heldout_ids", ds.heldout_split, recorded.heldout_ids),
    )
    for key, split, ids in roles:
        listed = taskset.task_ids.get(split)
        if listed is None:  # the container gives counts, not ids: nothing to check against
            continue
        known = set(listed)
        gone = [i for i in ids if i not in known]
        if gone:
            raise RunStateError(
                f"{config.source_path}: the run started with dataset.{key} {', '.join(map(repr, gone[:3]))} of split "
                f"{split!r}, which the container's /taskset no longer lists ({len(gone)} of {len(ids)}); a resume "
                "keeps the rows it started with: serve that data again, or re-run with --fresh to start over"
            )
    return list(recorded.train_ids), list(recorded.pareto_ids), list(recorded.minibatch_ids), list(recorded.heldout_ids)


def resolve_ids(selection: IdSelection, taskset: TasksetInfo, split: str) -> list[str]:
    if isinstance(selection, CountSelection):
        return taskset.first_ids(split, selection.count)
    return list(selection)


def _check_splits(config: GepaConfig, taskset: TasksetInfo) -> None:
    """Each split the config reads is one the container lists (when it lists any), and each id the config lists
    is one the container lists for its split (when it lists them): a ConfigError naming the key otherwise."""
    ds, source = config.dataset, config.source_path
    roles = (
        (
            "train_split",
            ds.train_split,
            (("train_ids", ds.train_ids), ("pareto_ids", ds.pareto_ids), ("minibatch_ids", ds.minibatch_ids)),
        ),
        ("heldout_split", ds.heldout_split, (("heldout_ids", ds.heldout_ids),)),
    )
    for split_key, split, selections in roles:
        used = [(key, selection) for key, selection in selections if selection]  # an empty heldout reads nothing
        if taskset.counts and used and split not in taskset.counts:
            raise ConfigError(
                f"{source}: dataset.{split_key}: the container lists no split {split!r} (it lists "
                f"{', '.join(sorted(map(repr, taskset.counts)))}); use one of those"
            )
        listed = set(taskset.task_ids.get(split, ()))
        for key, selection in used:
            if not listed or not isinstance(selection, list):
                continue
            unknown = [i for i in selection if i not in listed]
            if unknown:
                raise ConfigError(
                    f"{source}: dataset.{key}: id {unknown[0]!r} is not one the container lists for split "
                    f"{split!r} ({len(unknown)} of {len(selection)} are not); list ids from its /taskset"
                )


async def resolve_dataset(
    config: GepaConfig,
    bus: EventBus,
    client: CachedContainer,
    taskset: TasksetInfo,
    *,
    announce: bool,
    recorded: DatasetResolved | None = None,
) -> Dataset:
    """The ids of each role and their task rows (fetched from the container); ``announce`` emits
    ``dataset.resolved`` (a resumed run has already announced its dataset). ``recorded``: the ids a resumed run
    started with, which it keeps whatever the container's ``/taskset`` lists now (a resume ends where the run
    would have ended); one the container no longer lists is a RunStateError."""
    ds, source = config.dataset, config.source_path
    warning = taskset.metadata.get("warning")
    if warning:
        bus.emit(ContainerWarning(), str(warning), lane="rollout")
    _check_splits(config, taskset)
    train = resolve_ids(ds.train_ids, taskset, ds.train_split)
    pareto = resolve_ids(ds.pareto_ids, taskset, ds.train_split) if ds.pareto_ids is not None else train
    minibatch = resolve_ids(ds.minibatch_ids, taskset, ds.train_split) if ds.minibatch_ids is not None else train
    heldout = resolve_ids(ds.heldout_ids, taskset, ds.heldout_split)
    if recorded is not None:
        now = (train, pareto, minibatch, heldout)
        train, pareto, minibatch, heldout = _kept_ids(config, taskset, recorded)
        if now != (train, pareto, minibatch, heldout):
            bus.emit(
                ContainerWarning(),
                "the container's /taskset lists other ids than when the run started; the resumed run keeps the ids "
                "it started with (its feed's dataset.resolved)",
                lane="rollout",
            )
    counted = (
        ("train_ids", ds.train_ids, train),
        ("pareto_ids", ds.pareto_ids, pareto),
        ("minibatch_ids", ds.minibatch_ids, minibatch),
        ("heldout_ids", ds.heldout_ids, heldout),
    )
    for key, selection, ids in counted:
        if isinstance(selection, CountSelection) and len(ids) < selection.count:
            bus.emit(
                ContainerWarning(),
                f"dataset.{key} asks for {selection.count} ids but the container lists only {len(ids)}",
                lane="rollout",
            )
    train_set = set(train)
    for key, ids in (("pareto_ids", pareto), ("minibatch_ids", minibatch)):
        outside = [i for i in ids if i not in train_set]
        if outside:
            raise ConfigError(
                f"{source}: dataset.{key}: id {outside[0]!r} is not in dataset.train_ids; "
                f"{key} must be a subset of train_ids"
            )
    if not train:
        raise ConfigError(f"{source}: dataset.train_ids: the container lists no ids for split {ds.train_split!r}")
    if ds.heldout_split == ds.train_split:
        both = [i for i in heldout if i in train_set]
        if both:
            raise ConfigError(
                f"{source}: dataset.heldout_ids: id {both[0]!r} is also in dataset.train_ids ({len(both)} of "
                f"{len(heldout)} heldout ids are), and heldout rows never reach the proposer; list heldout ids "
                "apart from the train ids, or set dataset.heldout_split to another split"
            )
    rows: dict[str, dict[str, Any]] = {}
    for split, ids in ((ds.train_split, train), (ds.heldout_split, heldout)):
        for row_id, row in zip(ids, await client.tasks(split, ids), strict=True):
            rows[row_id] = row
    if announce:
        bus.emit(
            DatasetResolved(tuple(train), tuple(pareto), tuple(minibatch), tuple(heldout)),
            f"{len(train)} train ids ({len(pareto)} pareto, {len(minibatch)} minibatch), {len(heldout)} heldout ids"
            + (f"; data source: {taskset.metadata['data_source']}" if "data_source" in taskset.metadata else ""),
        )
    return Dataset(train, pareto, minibatch, heldout, rows)
