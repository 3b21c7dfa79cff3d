"""A standing task container with a fixed per-rollout latency, for the benchmarks.

``python benchmarks/latency_container.py --port N --latency-ms 50`` serves 200 train and 50 test rows; a row's
reward is 1 when its answer word appears in the candidate's ``instruction``; the answers are drawn from
``--vocabulary`` words (40 by default). ``GET /stats`` reports how many
distinct rollouts it has served. Written with the public ``synth-containers`` package, async callbacks.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import uvicorn
from synth_containers import Container, RolloutResult

SEED = "answer w0"


def rows(vocabulary: int) -> dict[str, list[dict[str, str]]]:
    """Row ``i``'s answer is word ``i mod vocabulary`` (train) or ``7i mod vocabulary`` (test)."""
    words = [f"w{i}" for i in range(vocabulary)]
    return {
        "train": [{"task_id": f"train-{i}", "question": f"q{i}", "answer": words[i % vocabulary]} for i in range(200)],
        "test": [
            {"task_id": f"test-{i}", "question": f"q{i}", "answer": words[(i * 7) % vocabulary]} for i in range(50)
        ],
    }


def build(latency_seconds: float, vocabulary: int = 40) -> Any:
    ROWS = rows(vocabulary)
    container = Container("latency", description="Say the answer word.")
    served: set[str] = set()

    @container.program
    async def program() -> dict[str, Any]:
        module = {"module_id": "instruction", "role": "system", "content": SEED, "mutable": True}
        return {
            "program_id": "latency",
            "modules": [{**module, "candidate_field": "instruction"}],
            "target_modules": ["instruction"],
            "seed_candidate": {"instruction": SEED},
        }

    @container.taskset
    async def taskset() -> dict[str, Any]:
        return {"splits": {s: {"task_ids": [r["task_id"] for r in rows]} for s, rows in ROWS.items()}}

    @container.taskset_tasks
    async def taskset_tasks(payload: dict[str, Any]) -> dict[str, Any]:
        by_id = {row["task_id"]: row for row in ROWS[payload["split"]]}
        return {"tasks": [by_id[task_id] for task_id in payload["task_ids"]]}

    @container.rollout
    async def rollout(payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(latency_seconds)
        row = payload["task"]
        words = str(payload["candidate"]["instruction"]).split()
        served.add(str(payload["rollout_id"]))
        return RolloutResult(
            rollout_id=str(payload["rollout_id"]),
            reward=1.0 if row["answer"] in words else 0.0,
            task_id=row["task_id"],
            trace={"answer_expected": row["answer"]},
            actionable_side_info={"feedback": f"expected {row['answer']}"},
        ).to_dict()

    app = container.fastapi()

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return {"served": len(served)}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--vocabulary", type=int, default=40)
    args = parser.parse_args()
    uvicorn.run(build(args.latency_ms / 1000, args.vocabulary), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
