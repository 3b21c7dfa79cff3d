"""A :class:`~synth_opt.task.definition.Task` served as a container that speaks the contract (SPEC §4), with
litestar.

Routes: ``GET /health``, ``GET /metadata`` (alias ``/info``), ``GET /program`` (one mutable module per seed field),
``GET /task_info``, ``GET /taskset`` (``train`` and ``test``), ``POST /taskset/tasks`` and ``POST /rollout``
(synchronous). A rollout runs the score function on the server's own copy of the row (the request names it by
``task_id``) and always answers 200 once the request is well formed: an exception in the function, or a value it
should not return, is ``status: failed`` with the error and its last frames as the feedback. A 5xx would tell the
optimizer that the container is down, and it would wait for it to come back. A malformed request is a 4xx that
names the field.

With a bearer token, every route but ``/health`` requires ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, Final

import anyio
from litestar import Litestar, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody

from synth_opt.container.wire import GEPA_CONTRACT_VERSION
from synth_opt.task.definition import Task
from synth_opt.texts import replace_lone_surrogates

__all__ = ["task_app"]

_SPLITS: Final = ("train", "test")


def _task(state: State) -> Task:
    task: Task = state.task
    return task


@get("/health", sync_to_thread=False)
def health(state: State) -> dict[str, Any]:
    return {"status": "ok", "task": _task(state).task_name}


def _metadata(state: State) -> dict[str, Any]:
    task = _task(state)
    return {
        "name": task.task_name,
        "metadata": {
            "optimizer_contracts": {"gepa": {"version": GEPA_CONTRACT_VERSION}},
            "runtime": "synth_opt.task",
            "rows": {"train": len(task.train), "test": len(task.test)},
            "score": "async" if task.is_async else f"sync, {task.max_threads} threads",
            "served_rollouts": state.served,
        },
    }


@get("/metadata", sync_to_thread=False)
def metadata(state: State) -> dict[str, Any]:
    return _metadata(state)


@get("/info", sync_to_thread=False)
def info(state: State) -> dict[str, Any]:
    return _metadata(state)


@get("/program", sync_to_thread=False)
def program(state: State) -> dict[str, Any]:
    task = _task(state)
    fields = list(task.seed_candidate)
    return {
        "program_id": task.task_name,
        "modules": [
            {"module_id": name, "role": "instruction", "content": text, "mutable": True, "candidate_field": name}
            for name, text in task.seed_candidate.items()
        ],
        "target_modules": fields,
        "seed_candidate": dict(task.seed_candidate),
    }


@get("/task_info", sync_to_thread=False)
def task_info(state: State) -> dict[str, Any]:
    task = _task(state)
    description = task.description or f"Improve the text so that {task.task_name} scores higher on every row."
    return {"task": {"task_id": task.task_name, "description": description}, "description": description}


@get("/taskset", sync_to_thread=False)
def taskset(state: State) -> dict[str, Any]:
    task = _task(state)
    splits = {split: {"task_ids": task.ids(split), "count": len(task.ids(split))} for split in _SPLITS}
    return {"splits": splits, "labels": [], "metadata": {"task": task.task_name}}


@post("/taskset/tasks", status_code=200, sync_to_thread=False)
def taskset_tasks(state: State, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    task = _task(state)
    split = str(data.get("split") or "train")
    if split not in _SPLITS:
        raise HTTPException(status_code=404, detail=f"split: unknown split {split!r}; the splits are train and test")
    raw_ids = data.get("task_ids") or []
    if not isinstance(raw_ids, list):
        raise HTTPException(status_code=422, detail="task_ids must be a list of task id strings")
    known = set(task.ids(split))
    wanted = [str(task_id) for task_id in raw_ids]
    unknown = [task_id for task_id in wanted if task_id not in known]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise HTTPException(status_code=404, detail=f"task_ids: unknown task id(s) in split {split!r}: {shown}")
    return {"tasks": [{**task.by_id[task_id], "task_id": task_id} for task_id in wanted]}


@post("/rollout", status_code=200)
async def rollout(state: State, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    task = _task(state)
    rollout_id = data.get("rollout_id")
    if not isinstance(rollout_id, str) or not rollout_id:
        raise HTTPException(status_code=422, detail="rollout_id (a non-empty string) is required")
    candidate = _candidate(data.get("candidate"))
    row = _row(task, data)
    limiter = state.get("limiter")
    if limiter is None:  # made on the server's event loop, by the first rollout
        limiter = state.limiter = anyio.CapacityLimiter(task.max_threads)
    outcome = await task.evaluate(candidate, dict(row), limiter)
    state.served += 1
    if outcome.failed:
        reply: dict[str, Any] = {
            "rollout_id": rollout_id,
            "status": "failed",
            "error": outcome.error,
            "feedback": outcome.feedback or outcome.error,
            "usage": {},
        }
    else:
        reply = {
            "rollout_id": rollout_id,
            "status": "completed",
            "reward_info": {"outcome_reward": outcome.reward},
            "usage": dict(outcome.usage),  # a model call's tokens and cost (Score.usage): the run counts them
        }
        if outcome.feedback is not None:
            reply["feedback"] = outcome.feedback
    # a text with a lone surrogate (bytes read with errors="surrogateescape", half an emoji) cannot be sent as
    # JSON: the server would answer 500 and the run would count the task down; it is sent with U+FFFD instead
    reply_with_texts: dict[str, Any] = replace_lone_surrogates(reply)
    return reply_with_texts


def _candidate(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise HTTPException(status_code=422, detail="candidate (an object of field -> text) is required")
    return dict(raw)


def _row(task: Task, data: Mapping[str, Any]) -> dict[str, Any]:
    task_id = data.get("task_id")
    if task_id is None and isinstance(data.get("task"), dict):
        task_id = data["task"].get("task_id")
    if task_id is None:
        raise HTTPException(status_code=422, detail="task_id (the row to run) is required")
    row = task.by_id.get(str(task_id))
    if row is None:
        raise HTTPException(status_code=404, detail=f"task_id: unknown row {task_id!r}")
    return row


def task_app(task: Task, *, bearer_token: str | None = None) -> Litestar:
    """The container app for ``task``; with ``bearer_token``, every route but ``/health`` requires it."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if bearer_token is None or connection.url.path == "/health":
            return
        sent = connection.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {bearer_token}".encode()):
            raise NotAuthorizedException(detail="a bearer token is required (Authorization: Bearer <token>)")

    return Litestar(
        route_handlers=[health, metadata, info, program, task_info, taskset, taskset_tasks, rollout],
        state=State({"task": task, "served": 0}),
        guards=[guard],
        debug=False,
    )
