"""A standing task container with a fixed per-rollout latency, for the benchmarks.

``python benchmarks/latency_container.py --port N --latency-ms 50`` serves the word task: 200 train and 50 test
rows; a row's reward is 1 when its answer word appears in the candidate's ``instruction``; the answers are drawn
from ``--vocabulary`` words (40 by default). ``GET /stats`` reports how many distinct rollouts it has served.
Written with the public ``synth-containers`` package, async callbacks.

``--task banking77`` serves the Banking77 cookbook's container instead (``cookbooks/banking77/container.py``, the
offline keyword policy, the real data from ``../shared/data/banking77``), and ``--task code_review`` the code_review
cookbook's (``cookbooks/code_review/container.py``, the offline ``checklist`` policy, the 65 diffs of
``diffs.py``); either one holds each ``POST /rollout`` for the same latency first, and its ``GET /stats`` counts
the rollouts it answered with 200 (a retried rollout counts again, so the count is never below the distinct
rollouts served).

``--concurrency N`` serves at most N rollouts at once (the others wait their turn): a replica whose capacity is
the limit, as a container backed by N model slots would be.

``--pad-kb N`` makes the word task verbose: every feedback gets N kB of further lines after its first, and every
trace N kB of steps (a container that logs a long transcript per rollout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
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


def build(latency_seconds: float, vocabulary: int = 40, pad_kb: int = 0) -> Any:
    ROWS = rows(vocabulary)
    pad_lines = pad_kb * 1024 // 64  # lines of 64 characters
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
            trace={"answer_expected": row["answer"], "steps": [f"{i:08d} " + "x" * 55 for i in range(pad_lines)]},
            actionable_side_info={"feedback": f"expected {row['answer']}" + f"\n{'detail ' * 9}" * pad_lines},
        ).to_dict()

    app = container.fastapi()

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return {"served": len(served)}

    return app


class Latency:
    """ASGI wrapper: holds each ``POST /rollout`` ``seconds`` before the app runs it, and answers ``GET /stats``
    with the number of rollouts the app answered with 200."""

    def __init__(self, app: Any, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        self.answered = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path == "/stats":
            body = json.dumps({"served": self.answered}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if path != "/rollout":
            await self.app(scope, receive, send)
            return
        await asyncio.sleep(self.seconds)
        status = 0

        async def watched(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watched)
        self.answered += status == 200


def build_banking77(latency_seconds: float) -> Any:
    """The Banking77 cookbook container, each rollout held ``latency_seconds`` before it runs."""
    from _common import import_cookbooks

    import_cookbooks()
    from banking77 import data
    from banking77.container import build_container

    source = data.load()
    print(source.describe(), file=sys.stderr, flush=True)
    return Latency(build_container(source).fastapi(), latency_seconds)


def build_code_review(latency_seconds: float) -> Any:
    """The code_review cookbook container (its default policy is the offline ``checklist``), each rollout held
    ``latency_seconds`` before it runs."""
    from _common import import_cookbooks

    import_cookbooks()
    from code_review.container import build_container

    return Latency(build_container().fastapi(), latency_seconds)


class Limited:
    """ASGI wrapper: at most ``concurrency`` ``POST /rollout`` requests are handled at once; the rest wait."""

    def __init__(self, app: Any, concurrency: int) -> None:
        self.app = app
        self.slots = asyncio.Semaphore(concurrency)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") == "/rollout":
            async with self.slots:
                await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)


BUILDERS = {"banking77": build_banking77, "code_review": build_code_review}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--vocabulary", type=int, default=40, help="answer words of the word task")
    parser.add_argument("--task", choices=("words", *BUILDERS), default="words")
    parser.add_argument("--concurrency", type=int, default=0, help="rollouts served at once (0: no limit)")
    parser.add_argument("--pad-kb", type=int, default=0, help="kB more of feedback and of trace a rollout (words)")
    args = parser.parse_args()
    seconds = args.latency_ms / 1000
    app = build(seconds, args.vocabulary, args.pad_kb) if args.task == "words" else BUILDERS[args.task](seconds)
    if args.concurrency > 0:
        app = Limited(app, args.concurrency)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
