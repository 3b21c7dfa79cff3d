"""A task as a Python function: :class:`Task` and the :func:`task` decorator.

A task is a score function ``(candidate: dict[str, str], row: dict) -> float | (float, str) | Score`` (the reward,
optionally feedback for the proposer, and with :class:`Score` the tokens and cost a model call in it used), its
rows (a list of dicts, or a ``.jsonl``, ``.json`` or ``.csv`` file), an optional heldout set of rows, and the seed
candidate. :mod:`synth_opt.task.app` serves it as a container that
speaks the contract (SPEC §4); the optimizer never imports it.

Rows keep their own id (``task_id``, ``example_id`` or ``id``); a row without one is numbered by its position
(``"0"``, ``"1"``, ... for ``rows``, ``"heldout-0"``, ... for ``heldout``). Ids must be unique across both.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeAlias

import anyio
import anyio.to_thread

from synth_opt.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_THREADS",
    "SEED_FIELD",
    "Outcome",
    "RowSource",
    "Score",
    "ScoreFn",
    "Task",
    "load_rows",
    "task",
]

DEFAULT_MAX_THREADS: Final = 8
"""How many calls of a synchronous score function run at once (each in a worker thread)."""
SEED_FIELD: Final = "prompt"
"""The candidate's one field when the seed is given as a plain string."""
_ID_KEYS: Final = ("task_id", "example_id", "id")
_FEEDBACK_CHARS: Final = 4000

RowSource: TypeAlias = Sequence[Mapping[str, Any]] | str | Path


@dataclass(frozen=True, slots=True)
class Score:
    """What a score function may return when it called a model: the reward, feedback for the proposer, and the
    call's ``usage`` (``prompt_tokens``, ``completion_tokens``, ``total_tokens``, ``cost_usd``; any of them), which
    the run then counts against its token and cost limits like a container's."""

    reward: float
    feedback: str | None = None
    usage: Mapping[str, float] | None = None


_USAGE_KEYS: Final = ("prompt_tokens", "completion_tokens", "total_tokens", "cost_usd")
ScoreValue: TypeAlias = float | tuple[float, str | None] | Score
ScoreFn: TypeAlias = Callable[[dict[str, str], dict[str, Any]], ScoreValue | Awaitable[ScoreValue]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One call of the score function: its reward, feedback and usage, or (``error`` set) why it failed."""

    reward: float = 0.0
    feedback: str | None = None
    error: str | None = None
    usage: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class Task:
    """A score function and its rows, ready to serve (:func:`synth_opt.task.app.task_app`).

    ``rows`` are what the optimizer trains on (the ``train`` split), ``heldout`` the ``test`` split it never shows
    the proposer. ``seed`` is the starting candidate: field -> text, or one string (the field ``prompt``).
    ``max_threads`` bounds how many calls of a synchronous ``score`` run at once; an ``async def`` score runs on
    the event loop, every call at once. Relative row files are read from the folder of the score function's
    module."""

    score: ScoreFn
    rows: RowSource
    seed: str | Mapping[str, str]
    heldout: RowSource = ()
    name: str | None = None
    description: str | None = None
    max_threads: int = DEFAULT_MAX_THREADS
    train: tuple[dict[str, Any], ...] = field(init=False, repr=False)
    test: tuple[dict[str, Any], ...] = field(init=False, repr=False)
    seed_candidate: dict[str, str] = field(init=False, repr=False)
    by_id: dict[str, dict[str, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not callable(self.score):
            raise ConfigError(f"task score: expected a function, got {type(self.score).__name__}", field="score")
        if isinstance(self.max_threads, bool) or not isinstance(self.max_threads, int) or self.max_threads < 1:
            raise ConfigError(f"task max_threads: must be a positive integer (got {self.max_threads!r})")
        base = _source_dir(self.score)
        train = load_rows(self.rows, base_dir=base, what="rows")
        if not train:
            raise ConfigError("task rows: no rows; give at least one row to train on", field="rows")
        test = load_rows(self.heldout, base_dir=base, what="heldout")
        by_id: dict[str, dict[str, Any]] = {}
        for prefix, rows in (("", train), ("heldout-", test)):
            for position, row in enumerate(rows):
                row_id = _row_id(row) or f"{prefix}{position}"
                if row_id in by_id:
                    raise ConfigError(
                        f"task rows: the id {row_id!r} is used twice; give every row (rows and heldout) its own id",
                        field="rows",
                    )
                by_id[row_id] = row
        object.__setattr__(self, "train", train)
        object.__setattr__(self, "test", test)
        object.__setattr__(self, "by_id", by_id)
        object.__setattr__(self, "seed_candidate", _seed_candidate(self.seed))

    @property
    def task_name(self) -> str:
        return self.name or str(getattr(self.score, "__name__", "task"))

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.score)

    def ids(self, split: str) -> list[str]:
        """The row ids of ``train`` or ``test``, in order."""
        rows, prefix = (self.train, "") if split == "train" else (self.test, "heldout-")
        return [_row_id(row) or f"{prefix}{position}" for position, row in enumerate(rows)]

    async def evaluate(
        self, candidate: dict[str, str], row: dict[str, Any], limiter: anyio.CapacityLimiter | None = None
    ) -> Outcome:
        """Call the score function once; an exception or an unusable return value is a failed outcome, never
        raised. A synchronous function runs in a worker thread (``limiter`` bounds how many at once)."""
        try:
            if self.is_async:
                value = await self.score(candidate, row)  # type: ignore[misc]
            else:
                value = await anyio.to_thread.run_sync(partial(self.score, candidate, row), limiter=limiter)
        except Exception as exc:  # the user's function: any exception is the rollout's outcome
            return Outcome(error=_describe_exception(exc), feedback=_traceback_tail(exc))
        return _outcome(value)


def task(
    *,
    rows: RowSource,
    seed: str | Mapping[str, str],
    heldout: RowSource = (),
    name: str | None = None,
    description: str | None = None,
    max_threads: int = DEFAULT_MAX_THREADS,
) -> Callable[[ScoreFn], Task]:
    """Turn a score function into a :class:`Task`::

    @task(rows="questions.jsonl", seed="Answer in one word.")
    def exact(candidate, row):
        return float(ask(candidate["prompt"], row["question"]) == row["answer"])
    """

    def wrap(score: ScoreFn) -> Task:
        return Task(
            score=score,
            rows=rows,
            seed=seed,
            heldout=heldout,
            name=name,
            description=description if description is not None else inspect.getdoc(score),
            max_threads=max_threads,
        )

    return wrap


# -- rows -----------------------------------------------------------------------------------------------------


def load_rows(source: RowSource, *, base_dir: Path | None = None, what: str = "rows") -> tuple[dict[str, Any], ...]:
    """The rows of ``source``: a sequence of mappings, or a ``.jsonl`` / ``.json`` / ``.csv`` file (relative
    paths against ``base_dir``). A :class:`ConfigError` names the file, line and problem."""
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return _read_file(path, what)
    if isinstance(source, Mapping):
        raise ConfigError(f"task {what}: expected a list of rows (dicts) or a file path, got one dict", field=what)
    rows: list[dict[str, Any]] = []
    for position, row in enumerate(source):
        if not isinstance(row, Mapping):
            raise ConfigError(
                f"task {what}[{position}]: expected a dict, got {type(row).__name__}; every row is a mapping",
                field=what,
            )
        rows.append(dict(row))
    return tuple(rows)


def _read_file(path: Path, what: str) -> tuple[dict[str, Any], ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"task {what}: {path} not found; check the path", field=what, file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"task {what}: cannot read {path} ({exc}); check the file", file=str(path)) from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return tuple(dict(row) for row in csv.DictReader(text.splitlines()))
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"task {what}: {path} is not JSON ({exc})", file=str(path)) from None
        if not isinstance(data, list):
            raise ConfigError(f"task {what}: {path} must hold a JSON list of objects", file=str(path))
        return _objects(data, path, what, lambda position: f"item {position}")
    if suffix in (".jsonl", ".ndjson"):
        rows: list[Any] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"task {what}: {path} line {number} is not JSON ({exc})", file=str(path)) from None
        numbers = [number for number, _ in rows]
        return _objects([row for _, row in rows], path, what, lambda position: f"line {numbers[position]}")
    raise ConfigError(
        f"task {what}: {path} has an unknown extension; give a .jsonl, .json or .csv file, or a list of dicts",
        file=str(path),
    )


def _objects(items: Iterable[Any], path: Path, what: str, where: Callable[[int], str]) -> tuple[dict[str, Any], ...]:
    rows: list[dict[str, Any]] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(
                f"task {what}: {path} {where(position)} is a {type(item).__name__}, not an object", file=str(path)
            )
        rows.append(item)
    return tuple(rows)


def _row_id(row: Mapping[str, Any]) -> str | None:
    for key in _ID_KEYS:
        value = row.get(key)
        if value is not None and value != "":
            return str(value)
    return None


def _source_dir(function: Any) -> Path | None:
    code = getattr(function, "__code__", None)
    filename = getattr(code, "co_filename", None)
    if not filename or filename.startswith("<"):
        return None
    return Path(filename).resolve().parent


def _seed_candidate(seed: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(seed, str):
        return {SEED_FIELD: seed}
    if not isinstance(seed, Mapping) or not seed:
        raise ConfigError("task seed: give the seed text, or a dict of field -> text with at least one field")
    for key, value in seed.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(f"task seed: field {key!r} must be a string naming a string (got {value!r})")
    return dict(seed)


# -- outcomes -------------------------------------------------------------------------------------------------


def _outcome(value: Any) -> Outcome:
    feedback: Any = None
    if isinstance(value, Score):
        usage = _usage(value.usage)
        if isinstance(usage, str):
            return Outcome(error=usage)
        outcome = _outcome((value.reward, value.feedback))
        return outcome if outcome.failed else Outcome(reward=outcome.reward, feedback=outcome.feedback, usage=usage)
    if isinstance(value, tuple):
        if len(value) != 2:
            return Outcome(error=_bad_return(value))
        value, feedback = value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Outcome(error=_bad_return(value))
    reward = float(value)
    if not math.isfinite(reward):
        return Outcome(error=f"the score function returned {reward}; return a finite number")
    if feedback is not None and not isinstance(feedback, str):
        return Outcome(error=f"the score function's feedback is a {type(feedback).__name__}; return a string or None")
    return Outcome(reward=reward, feedback=feedback or None)


def _usage(usage: Any) -> dict[str, float] | str:
    """The usage a :class:`Score` reports, or why it cannot be used."""
    if usage is None:
        return {}
    if not isinstance(usage, Mapping):
        return f"the score's usage is a {type(usage).__name__}; give a dict such as {{'total_tokens': 120}}"
    unknown = sorted(str(key) for key in usage if key not in _USAGE_KEYS)
    if unknown:
        return f"the score's usage has unknown key(s) {', '.join(unknown)}; use {', '.join(_USAGE_KEYS)}"
    checked: dict[str, float] = {}
    for key, number in usage.items():
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number) or number < 0:
            return f"the score's usage.{key} is {number!r}; give a non-negative number"
        checked[str(key)] = number
    return checked


def _bad_return(value: Any) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"the score function returned {shown}; return a number, a (number, feedback string) pair or a Score"


def _describe_exception(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= _FEEDBACK_CHARS else text[: _FEEDBACK_CHARS - 3] + "..."


def _traceback_tail(exc: BaseException) -> str:
    """The exception and the last frames that raised it (what a person debugging the task reads first)."""
    frames = traceback.format_exception(exc, limit=-3)
    text = "".join(frames).strip()
    return text if len(text) <= _FEEDBACK_CHARS else "..." + text[-(_FEEDBACK_CHARS - 3) :]
