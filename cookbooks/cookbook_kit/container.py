"""The shared half of the cookbooks' task containers, written with the public ``synth-containers`` SDK.

Each cookbook's program is one mutable system prompt (:class:`PromptTask`). The kit registers the routes that only
describe the task (:func:`prompt_container`), checks a ``/taskset/tasks`` request (:func:`requested_task_ids`) and the
common part of a ``/rollout`` request (:func:`rollout_request`), adds the start-up check (:func:`with_start_up_check`,
``POST /health/check``, :mod:`synth_opt.policies.check`) and serves the app from a script (:func:`container_parser`,
:func:`serve`). The cookbook keeps its taskset, its rows and its rollout: the policy, the score and the feedback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Body, FastAPI, HTTPException
from synth_containers import Container

from synth_opt.policies.check import CHECK_ROUTE, container_check

__all__ = [
    "CANDIDATE_FIELD",
    "PromptTask",
    "RolloutRequest",
    "container_parser",
    "prompt_container",
    "requested_task_ids",
    "rollout_request",
    "serve",
    "with_start_up_check",
    "zero_usage",
]

CANDIDATE_FIELD = "system_prompt"


@dataclass(frozen=True, slots=True)
class PromptTask:
    """A task whose program is one mutable system prompt, the candidate's ``candidate_field``."""

    task_id: str  # also the container's name
    task_name: str
    summary: str  # the container's one-line description
    description: str  # the task's, for the proposer
    program_id: str
    module_id: str
    policies: tuple[str, ...]  # the policy types the container runs; the first is the default
    candidate_field: str = CANDIDATE_FIELD

    def program(self, seed: str) -> dict[str, Any]:
        """``GET /program``: the one module, holding ``seed``, and the seed candidate."""
        module = {
            "module_id": self.module_id,
            "role": "system",
            "content": seed,
            "mutable": True,
            "candidate_field": self.candidate_field,
        }
        return {
            "program_id": self.program_id,
            "modules": [module],
            "target_modules": [self.candidate_field],
            "seed_candidate": {self.candidate_field: seed},
        }


@dataclass(frozen=True, slots=True)
class RolloutRequest:
    """The checked common part of a ``/rollout`` request."""

    rollout_id: str
    prompt: str  # the candidate's text
    policy: dict[str, Any]  # the request's policy table
    policy_type: str  # one of the task's policies


def prompt_container(
    task: PromptTask,
    *,
    seed: str,
    served: Collection[str],
    metadata: Mapping[str, Any],
    live_metadata: Callable[[], Mapping[str, Any]],
    task_metadata: Mapping[str, Any],
) -> Container:
    """The task's container (synchronous rollouts, ``metadata`` its own), with the routes that describe the task:
    ``GET /metadata`` (``served_rollouts``: the distinct rollout ids in ``served``, then ``live_metadata()``),
    ``GET /program`` (:meth:`PromptTask.program` of ``seed``) and ``GET /task_info`` (with ``task_metadata``). The
    cookbook adds its taskset, taskset tasks and rollout routes."""
    container = Container(
        task.task_id, description=task.summary, metadata=dict(metadata), default_submission_mode="sync"
    )

    @container.metadata_route
    async def metadata_route() -> dict[str, Any]:
        return {"metadata": {"served_rollouts": len(served), **live_metadata()}}

    @container.program
    async def program() -> dict[str, Any]:
        return task.program(seed)

    @container.task_info
    async def task_info() -> dict[str, Any]:
        return {
            "task": {"task_id": task.task_id, "task_name": task.task_name, "description": task.description},
            "description": task.description,
            "metadata": dict(task_metadata),
        }

    return container


def requested_task_ids(
    payload: Mapping[str, Any], splits: Sequence[str], in_split: Callable[[str, str], bool]
) -> list[str]:
    """The task ids a ``POST /taskset/tasks`` request asks for, in its order: a 404 for an unknown split or an id
    that is not a task of the split (``in_split(task_id, split)``), a 422 when ``task_ids`` is not a list."""
    split = str(payload.get("split") or "train")
    if split not in splits:
        raise HTTPException(
            status_code=404, detail=f"split: unknown split {split!r}; the splits are {' and '.join(splits)}"
        )
    raw_ids = payload.get("task_ids")
    if raw_ids is None:
        raw_ids = []
    if not isinstance(raw_ids, list):
        raise HTTPException(status_code=422, detail="task_ids must be a list of task id strings")
    task_ids = [str(task_id) for task_id in raw_ids]
    unknown = [task_id for task_id in task_ids if not in_split(task_id, split)]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise HTTPException(status_code=404, detail=f"task_ids: unknown task id(s) in split {split!r}: {shown}")
    return task_ids


def rollout_request(payload: Mapping[str, Any], task: PromptTask) -> RolloutRequest:
    """The rollout id, the candidate's prompt and the policy table of a ``/rollout`` request: a 422 naming the
    field that is missing or malformed, a 400 for a policy type the container does not run."""
    rollout_id = payload.get("rollout_id")
    if not isinstance(rollout_id, str) or not rollout_id:
        raise HTTPException(status_code=422, detail="rollout_id (a non-empty string) is required")
    candidate = payload.get("candidate")
    if not isinstance(candidate, dict) or not isinstance(candidate.get(task.candidate_field), str):
        raise HTTPException(status_code=422, detail=f"candidate.{task.candidate_field} (a string) is required")
    policy = payload.get("policy") or {}
    if not isinstance(policy, dict):
        raise HTTPException(status_code=422, detail="policy must be an object")
    policy_type = str(policy.get("type") or task.policies[0])
    if policy_type not in task.policies:
        raise HTTPException(
            status_code=400,
            detail=f"unknown policy.type {policy_type!r}; this container runs {' or '.join(task.policies)}",
        )
    return RolloutRequest(rollout_id, candidate[task.candidate_field], policy, policy_type)


def zero_usage() -> dict[str, Any]:
    """The usage of a rollout that called no model (an offline policy)."""
    return {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost_usd": 0.0}


def with_start_up_check(
    container: Container,
    task: PromptTask,
    *,
    known_good: tuple[str, Callable[[], Awaitable[str]]],
    llm_max_tokens: int,
) -> FastAPI:
    """The container's web app: its routes plus the start-up check (``POST /health/check``): the ``known_good``
    check (a name and a probe doing real work the rollouts need), the policy type is one of the task's and, for
    ``llm``, its endpoint serves its model (asked for at most ``llm_max_tokens``)."""
    app = container.fastapi()

    @app.post(CHECK_ROUTE)
    async def health_check(payload: dict[str, Any] = Body(default_factory=dict)) -> dict[str, Any]:
        return await container_check(
            payload.get("policy"), known_good=known_good, policy_types=task.policies, llm_max_tokens=llm_max_tokens
        )

    return app


def container_parser(description: str, default_port: int) -> argparse.ArgumentParser:
    """The script's arguments: ``--host`` (loopback) and ``--port`` (``PORT``, else ``default_port``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", str(default_port))))
    return parser


def serve(app: FastAPI, args: argparse.Namespace, banner: str) -> int:
    """Say ``banner`` on stderr and serve ``app`` on ``args.host``/``args.port`` until stopped."""
    import uvicorn

    print(banner, file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
