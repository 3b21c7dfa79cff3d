"""A third-party task container that only supports async submission, written with ``synth_containers``.

Usage: ``python async_only_container.py PORT``. ``POST /rollout`` with ``submission_mode: "sync"`` is refused
with 422 (as a container whose rollouts run for minutes would); an async submission is accepted at once and
polled through ``/rollouts/{id}/state``. Every rollout takes 50 ms. The reward is 1.0 when the row's answer word
appears in the candidate's ``prompt`` (this container names its module ``prompt``, not ``instruction``).
``GET /stats`` counts sync refusals and async submissions.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from synth_containers import Container, RolloutResult

ROWS = {
    "train": [{"task_id": f"row-{i}", "text": f"item {i}", "answer": f"tok{i % 4}"} for i in range(8)],
    "test": [{"task_id": f"held-{i}", "text": f"item {i}", "answer": f"tok{i % 4}"} for i in range(4)],
}
SEED = "Answer briefly."
STATS = {"sync_refused": 0, "async_submitted": 0}

container = Container("async-only", description="Say the token.")


@container.program
async def program() -> dict[str, Any]:
    module = {"module_id": "prompt", "role": "system", "content": SEED, "mutable": True, "candidate_field": "prompt"}
    return {
        "program_id": "async_only",
        "modules": [module],
        "target_modules": ["prompt"],
        "seed_candidate": {"prompt": SEED},
    }


@container.taskset
async def taskset() -> dict[str, Any]:
    return {"splits": {split: {"task_ids": [row["task_id"] for row in rows]} for split, rows in ROWS.items()}}


@container.taskset_tasks
async def taskset_tasks(payload: dict[str, Any]) -> dict[str, Any]:
    by_id = {row["task_id"]: row for row in ROWS.get(str(payload.get("split")), [])}
    return {"tasks": [by_id[task_id] for task_id in payload.get("task_ids", []) if task_id in by_id]}


@container.rollout
async def rollout(payload: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.05)
    row = payload["task"]
    words = str(payload["candidate"].get("prompt", "")).split()
    return RolloutResult(
        rollout_id=str(payload["rollout_id"]),
        reward=1.0 if row["answer"] in words else 0.0,
        task_id=row["task_id"],
        trace={"text": row["text"]},
        actionable_side_info={"feedback": f"expected {row['answer']}"},
    ).to_dict()


app = container.fastapi()


@app.middleware("http")
async def async_submission_only(request: Request, call_next: Any) -> Response:
    if request.method == "POST" and request.url.path == "/rollout":
        body = await request.body()
        try:
            mode = json.loads(body or b"{}").get("submission_mode", "sync")
        except ValueError:
            mode = "sync"
        if mode != "async":
            STATS["sync_refused"] += 1
            detail = "submission_mode must be 'async': this container only runs rollouts in the background"
            return JSONResponse({"detail": detail}, status_code=422)
        STATS["async_submitted"] += 1
    response: Response = await call_next(request)
    return response


@app.get("/stats")
async def stats() -> dict[str, int]:
    return dict(STATS)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
