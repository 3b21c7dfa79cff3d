"""An in-memory task container that speaks the synth-containers wire shapes, for tests and examples.

``FakeContainer(...).transport()`` is an ``httpx.MockTransport``, so a ``ContainerClient`` talks to it
through the real client code path (retries, polling, validation) with no sockets. Everything is deterministic:
the reward is a pure function of the candidate and the row, async rollouts finish after a fixed number of
polls, and failures are injected by count, never by chance.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from synth_opt.container.wire import GEPA_CONTRACT_VERSION

__all__ = ["FakeContainer", "ScoreFn", "exact_match_score"]

ScoreFn = Callable[[dict[str, str], dict[str, Any]], float]
FeedbackFn = Callable[[dict[str, str], dict[str, Any], float], str | None]

_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), template)
    for method, pattern, template in (
        ("GET", r"/health", "GET /health"),
        ("GET", r"/metadata", "GET /metadata"),
        ("GET", r"/info", "GET /info"),
        ("GET", r"/task_info", "GET /task_info"),
        ("GET", r"/program", "GET /program"),
        ("GET", r"/taskset", "GET /taskset"),
        ("POST", r"/taskset/tasks", "POST /taskset/tasks"),
        ("POST", r"/rollouts?", "POST /rollout"),
        ("GET", r"/rollouts/(?P<id>[^/]+)/state", "GET /rollouts/{id}/state"),
        ("GET", r"/rollouts/(?P<id>[^/]+)", "GET /rollouts/{id}"),
        ("POST", r"/rollouts/(?P<id>[^/]+)/terminate", "POST /rollouts/{id}/terminate"),
    )
)


def exact_match_score(candidate: dict[str, str], row: dict[str, Any]) -> float:
    """1.0 when the row's ``answer`` appears in any candidate text, else 0.0."""
    answer = str(row.get("answer", ""))
    return 1.0 if answer and any(answer in text for text in candidate.values()) else 0.0


@dataclass(slots=True)
class _Failure:
    remaining: int
    status: int | None


class FakeContainer:
    """A configurable fake container.

    ``rows`` maps a split to its rows; each row's id is its ``task_id`` (else ``example_id``, else ``id``).
    ``fail_first(route, count, status)`` makes the next ``count`` requests of a route (a template such as
    ``"POST /rollout"`` or ``"GET /rollouts/{id}/state"``) fail with ``status``, or with a connection error
    when ``status`` is None. With ``async_mode`` the container treats requests without ``submission_mode`` as
    async (the synth-containers default); an async rollout is done after ``polls_to_finish`` state polls, or
    never with ``polls_to_finish=None``.
    """

    def __init__(
        self,
        *,
        rows: Mapping[str, Sequence[Mapping[str, Any]]],
        score: ScoreFn = exact_match_score,
        seed_candidate: Mapping[str, str] | None = None,
        metadata_version: str | None = GEPA_CONTRACT_VERSION,
        serve_metadata: bool = True,
        task_description: str | None = "A fake task used in tests.",
        list_task_ids: bool = True,
        async_mode: bool = False,
        polls_to_finish: int | None = 1,
        latency_seconds: float | Mapping[str, float] = 0.0,
        usage: Mapping[str, Any] | None = None,
        feedback: FeedbackFn | None = None,
        rewrite_reply: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.rows = {split: [dict(row) for row in split_rows] for split, split_rows in rows.items()}
        self._by_id = {_row_id(row): row for split_rows in reversed(self.rows.values()) for row in split_rows}
        self.score = score
        self.seed_candidate = dict(seed_candidate or {"instruction": "Answer the question."})
        self.metadata_version = metadata_version
        self.serve_metadata = serve_metadata
        self.task_description = task_description
        self.list_task_ids = list_task_ids
        self.async_mode = async_mode
        self.polls_to_finish = polls_to_finish
        self.latency_seconds = latency_seconds
        self.usage = dict(usage or {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12})
        self.feedback = feedback
        self.rewrite_reply = rewrite_reply
        self.requests: Counter[str] = Counter()
        self.request_log: list[httpx.Request] = []
        self.rollout_ids_served: set[str] = set()
        self.terminated: set[str] = set()
        self._failures: dict[str, _Failure] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._polls: Counter[str] = Counter()

    @property
    def rollouts_served(self) -> int:
        """Distinct rollout ids that ran to a reply (async ones once they finished)."""
        return len(self.rollout_ids_served)

    def fail_first(self, route: str, count: int, status: int | None = 503) -> None:
        self._failures[route] = _Failure(remaining=count, status=status)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def row(self, task_id: str) -> dict[str, Any] | None:
        return self._by_id.get(task_id)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """The MockTransport handler: route, inject latency and failures, answer."""
        self.request_log.append(request)
        matched = _match(request.method, request.url.path)
        if matched is None:
            return _json(404, {"detail": f"no route {request.method} {request.url.path}"})
        template, rollout_id = matched
        self.requests[template] += 1
        latency = self._latency(template)
        if latency > 0:
            await anyio.sleep(latency)
        failure = self._failures.get(template)
        if failure is not None and failure.remaining > 0:
            failure.remaining -= 1
            if failure.status is None:
                raise httpx.ConnectError("injected connection failure", request=request)
            return _json(failure.status, {"detail": "injected failure"})
        body: Any = json.loads(request.content) if request.content else {}
        return self._answer(template, rollout_id, body)

    # ------------------------------------------------------------------------------------------- routes

    def _answer(self, template: str, rollout_id: str | None, body: Any) -> httpx.Response:
        if template == "GET /health":
            return _json(200, {"status": "ok"})
        if template in ("GET /metadata", "GET /info"):
            return self._metadata()
        if template == "GET /task_info":
            if self.task_description is None:
                return _json(404, {"detail": "no task info"})
            return _json(200, {"task": {"task_id": "fake", "description": self.task_description}})
        if template == "GET /program":
            return _json(200, self._program())
        if template == "GET /taskset":
            return _json(200, self._taskset())
        if template == "POST /taskset/tasks":
            wanted = [str(task_id) for task_id in body.get("task_ids", [])]
            split_rows = {_row_id(row): row for row in self.rows.get(body.get("split", ""), [])}
            return _json(200, {"tasks": [split_rows[i] for i in wanted if i in split_rows]})
        if template == "POST /rollout":
            return self._submit(body)
        assert rollout_id is not None
        record = self._records.get(rollout_id)
        if record is None:
            return _json(404, {"detail": f"unknown_rollout:{rollout_id}"})
        if template == "GET /rollouts/{id}/state":
            self._polls[rollout_id] += 1
            if record["status"] == "running" and self.polls_to_finish is not None:
                if self._polls[rollout_id] >= self.polls_to_finish:
                    record = self._finish(rollout_id)
            return _json(200, _public(record, drop=("reward_info", "trace")))
        if template == "GET /rollouts/{id}":
            return _json(200, _public(record))
        self.terminated.add(rollout_id)
        record.update(status="terminated", success_status="failed", status_detail="terminated")
        return _json(200, _public(record))

    def _metadata(self) -> httpx.Response:
        if not self.serve_metadata:
            return _json(404, {"detail": "not found"})
        metadata: dict[str, Any] = {"runtime": {"name": "fake"}, "metadata": {}}
        if self.metadata_version is not None:
            metadata["metadata"]["optimizer_contracts"] = {"gepa": {"version": self.metadata_version}}
        return _json(200, metadata)

    def _program(self) -> dict[str, Any]:
        modules = [
            {"module_id": name, "role": "system", "content": text, "mutable": True, "candidate_field": name}
            for name, text in self.seed_candidate.items()
        ]
        return {
            "program_id": "fake_program",
            "modules": modules,
            "target_modules": [{"module_id": name, "candidate_field": name} for name in self.seed_candidate],
            "seed_candidate": dict(self.seed_candidate),
        }

    def _taskset(self) -> dict[str, Any]:
        splits: dict[str, Any] = {}
        for split, split_rows in self.rows.items():
            if self.list_task_ids:
                splits[split] = {"task_ids": [_row_id(row) for row in split_rows]}
            else:
                splits[split] = {"count": len(split_rows)}
        return {"splits": splits, "labels": [], "metadata": {"name": "fake"}}

    def _submit(self, body: dict[str, Any]) -> httpx.Response:
        rollout_id = str(body.get("rollout_id", ""))
        mode = body.get("submission_mode") or ("async" if self.async_mode else "sync")
        running = {"rollout_id": rollout_id, "status": "running", "success_status": "running"}
        self._records[rollout_id] = {**running, "_request": body}
        if mode == "sync":
            return _json(200, self._finish(rollout_id))
        self._polls[rollout_id] = 0
        return _json(200, running)

    def _finish(self, rollout_id: str) -> dict[str, Any]:
        body = self._records[rollout_id].pop("_request")
        task_id = str(body.get("task_id", ""))
        row = self.row(task_id) or dict(body.get("task") or {})
        candidate = {str(k): str(v) for k, v in dict(body.get("candidate") or {}).items()}
        reward = float(self.score(candidate, row))
        reply: dict[str, Any] = {
            "rollout_id": rollout_id,
            "status": "completed",
            "success_status": "succeeded",
            "task_id": task_id,
            "reward_info": {"outcome_reward": reward, "details": {"objective": "outcome_reward"}},
            "objective_scores": [{"objective": "outcome_reward", "value": reward, "source": "fake"}],
            "usage": dict(self.usage),
            "trace": {"task_id": task_id, "candidate_fields": sorted(candidate)},
            "metadata": {},
        }
        if self.feedback is not None:
            text = self.feedback(candidate, row, reward)
            if text is not None:
                reply["actionable_side_info"] = {"feedback": text}
        if self.rewrite_reply is not None:
            reply = self.rewrite_reply(reply)
        self._records[rollout_id] = reply
        self.rollout_ids_served.add(rollout_id)
        return reply

    def _latency(self, template: str) -> float:
        if isinstance(self.latency_seconds, Mapping):
            return float(self.latency_seconds.get(template, 0.0))
        return float(self.latency_seconds)


def _match(method: str, path: str) -> tuple[str, str | None] | None:
    for route_method, pattern, template in _ROUTES:
        found = pattern.fullmatch(path)
        if route_method == method and found is not None:
            return template, found.groupdict().get("id")
    return None


def _row_id(row: Mapping[str, Any]) -> str:
    for key in ("task_id", "example_id", "id"):
        if row.get(key) is not None:
            return str(row[key])
    raise ValueError(f"fake container row has no task_id, example_id or id: {dict(row)!r}")


def _public(record: Mapping[str, Any], drop: Sequence[str] = ()) -> dict[str, Any]:
    return {key: value for key, value in record.items() if not key.startswith("_") and key not in drop}


def _json(status: int, payload: Any) -> httpx.Response:
    return httpx.Response(status, json=payload)
