"""A minimal real task container written with the public ``synth_containers.Container``, for tests.

Usage: ``python tiny_container.py [PORT] [--spawn-child] [--ignore-sigterm]`` (PORT defaults to ``$PORT``);
``--ignore-sigterm`` serves only ``/health`` from a server that ignores SIGTERM.
The reward is 1.0 when the row's answer word appears in the candidate's ``instruction``. A rollout's request
``metadata`` may ask for ``delay_seconds`` (to exercise async polling) or ``explode`` (to make it fail).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import uvicorn
from synth_containers import Container, RolloutResult

TRAIN = [{"task_id": f"t{i}", "question": f"say word {i}", "answer": f"w{i}"} for i in range(6)]
TEST = [{"task_id": str(i), "question": f"say word {i}", "answer": f"w{i}"} for i in range(4)]
ROWS = {"train": TRAIN, "test": TEST}
SEED = "Say hello."

container = Container("tiny", description="Reply with the answer word.")


@container.program
async def program() -> dict[str, Any]:
    return {
        "program_id": "tiny_program",
        "modules": [
            {
                "module_id": "instruction",
                "role": "system",
                "content": SEED,
                "mutable": True,
                "candidate_field": "instruction",
            }
        ],
        "target_modules": [{"module_id": "instruction", "candidate_field": "instruction"}],
        "seed_candidate": {"instruction": SEED},
    }


@container.task_info
async def task_info() -> dict[str, Any]:
    return {"task": {"task_id": "tiny", "description": "Reply with the answer word."}, "metadata": {}}


@container.taskset
async def taskset() -> dict[str, Any]:
    return {
        "splits": {"train": {"task_ids": [row["task_id"] for row in TRAIN]}, "test": {"count": len(TEST)}},
        "labels": [],
        "metadata": {"name": "tiny"},
    }


@container.taskset_tasks
async def taskset_tasks(payload: dict[str, Any]) -> dict[str, Any]:
    by_id = {row["task_id"]: row for row in ROWS.get(payload.get("split", ""), [])}
    return {"tasks": [by_id[task_id] for task_id in payload.get("task_ids", []) if task_id in by_id]}


@container.rollout
async def rollout(payload: dict[str, Any]) -> dict[str, Any]:
    metadata = payload.get("metadata") or {}
    await asyncio.sleep(float(metadata.get("delay_seconds", 0.0)))
    if metadata.get("explode"):
        raise RuntimeError("the policy exploded")
    row = payload.get("task") or {}
    instruction = str((payload.get("candidate") or {}).get("instruction", ""))
    reward = 1.0 if row.get("answer") and str(row["answer"]) in instruction else 0.0
    return RolloutResult(
        rollout_id=str(payload["rollout_id"]),
        reward=reward,
        task_id=str(payload.get("task_id", "")),
        usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "cost_usd": 0.001},
        trace={"turns": [{"role": "user", "content": row.get("question", "")}]},
        actionable_side_info={"feedback": f"expected {row.get('answer')!r}"},
    ).to_dict()


class _HealthOnly(BaseHTTPRequestHandler):
    """A stubborn server for the stop-escalation test: answers /health and ignores SIGTERM."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, format: str, *args: Any) -> None:
        return


def main(argv: list[str]) -> None:
    positional = [arg for arg in argv if not arg.startswith("--")]
    port = int(positional[0]) if positional else int(os.environ["PORT"])
    if "--spawn-child" in argv:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print(f"child pid {child.pid}", flush=True)
    if "--ignore-sigterm" in argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        HTTPServer(("127.0.0.1", port), _HealthOnly).serve_forever()
        return
    uvicorn.run(container.fastapi(), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
