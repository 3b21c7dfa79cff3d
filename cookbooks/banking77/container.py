"""The Banking77 task container, written with the public ``synth-containers`` SDK.

One rollout runs one candidate prompt on one query and scores exact label match (reward 1.0 or 0.0). Two policies:
``keyword`` (offline, deterministic; see ``policy.py``) and ``llm`` (an OpenAI-compatible chat-completions endpoint).

Run it: ``python cookbooks/banking77/container.py --port 8931 [--data-dir DIR]`` (or ``PORT=8931``). It logs the
data source it uses on stderr. ``GET /metadata`` reports ``metadata.served_rollouts``: the number of distinct
rollout ids this process has served, so a test can check that a run kept within its rollout budget.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the cookbook importable as the package ``banking77``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi import Body, FastAPI, HTTPException
from synth_containers import Container, RolloutResult

from banking77 import data, policy
from synth_opt.policies.check import CHECK_ROUTE, container_check

__all__ = ["CANDIDATE_FIELD", "PROGRAM_ID", "build_app", "build_container", "main"]

PROGRAM_ID = "banking77.keyword_classifier.v1"
CANDIDATE_FIELD = "system_prompt"
TASK_DESCRIPTION = (
    "Banking77 intent classification: each task is one online-banking customer query, to be labelled with exactly "
    "one of 77 intents. The candidate `system_prompt` holds one line per intent, `label_name: keyword, keyword, "
    "...`. The offline `keyword` policy predicts the line whose keywords best match the query (a keyword listed on "
    "n lines adds 1/n; ties go to the earlier line; no match gives the first line); the `llm` policy gives the text "
    "to a model as its system prompt. Reward is 1 when the predicted label equals the expected one, else 0. "
    "Label names must stay exactly as written."
)
CITATION = (
    "Casanueva, Temčinas, Gerz, Henderson, Vulić. Efficient Intent Detection with Dual Sentence Encoders. 2020. "
    "arXiv:2003.04807"
)


SAMPLE_WARNING = (
    "banking77: NO REAL DATA FOUND; this container uses the tiny sample the project wrote itself, so scores mean "
    "nothing. Pass --data-dir or set BANKING77_DATA_DIR."
)


def build_container(source: data.DataSource | None = None) -> Container:
    """The container over ``source`` (default: ``data.load()``)."""
    source = source if source is not None else data.load()
    seed = policy.seed_prompt(source.labels)
    rows = {row["task_id"]: row for split in ("train", "test") for row in source.rows(split)}
    served: set[str] = set()
    container = Container(
        "banking77",
        description="Banking77 intent classification (77 labels, exact-match reward)",
        metadata={"data_source": source.kind, "license": "CC BY 4.0", "citation": CITATION},
        default_submission_mode="sync",
    )

    @container.metadata_route
    async def metadata() -> dict[str, Any]:
        return {"metadata": {"served_rollouts": len(served), "data_source": source.kind}}

    @container.program
    async def program() -> dict[str, Any]:
        module = {
            "module_id": "classifier",
            "role": "system",
            "content": seed,
            "mutable": True,
            "candidate_field": CANDIDATE_FIELD,
        }
        return {
            "program_id": PROGRAM_ID,
            "modules": [module],
            "target_modules": [CANDIDATE_FIELD],
            "seed_candidate": {CANDIDATE_FIELD: seed},
        }

    @container.task_info
    async def task_info() -> dict[str, Any]:
        return {
            "task": {"task_id": "banking77", "task_name": "Banking77", "description": TASK_DESCRIPTION},
            "description": TASK_DESCRIPTION,
            "metadata": {"labels": len(source.labels), "data_source": source.kind},
        }

    @container.taskset
    async def taskset() -> dict[str, Any]:
        splits = {
            split: {"task_ids": [row["task_id"] for row in source.rows(split)], "count": len(source.rows(split))}
            for split in ("train", "test")
        }
        return {
            "splits": splits,
            "labels": list(source.labels),
            "metadata": {
                "data_source": source.kind,
                "data_path": source.path,
                "order": f"file order shuffled by random.Random({data.ORDER_SEED}), one generator per split",
                "license": "CC BY 4.0",
                **({"warning": SAMPLE_WARNING} if source.kind == "sample" else {}),
                "citation": CITATION,
            },
        }

    @container.taskset_tasks
    async def taskset_tasks(payload: dict[str, Any]) -> dict[str, Any]:
        split = str(payload.get("split") or "train")
        if split not in ("train", "test"):
            raise HTTPException(status_code=404, detail=f"unknown split {split!r}; the splits are train and test")
        task_ids = [str(task_id) for task_id in payload.get("task_ids") or []]
        unknown = [task_id for task_id in task_ids if task_id not in rows or not task_id.startswith(f"{split}-")]
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise HTTPException(status_code=404, detail=f"unknown task id(s) in split {split!r}: {shown}")
        return {"tasks": [dict(rows[task_id]) for task_id in task_ids]}

    @container.rollout
    async def rollout(payload: dict[str, Any]) -> dict[str, Any]:
        rollout_id = str(payload["rollout_id"])
        candidate = payload.get("candidate")
        if not isinstance(candidate, dict) or not isinstance(candidate.get(CANDIDATE_FIELD), str):
            raise HTTPException(status_code=422, detail=f"candidate.{CANDIDATE_FIELD} (a string) is required")
        row = _task_row(payload, rows)
        policy_table = payload.get("policy") or {}
        if not isinstance(policy_table, dict):
            raise HTTPException(status_code=422, detail="policy must be an object")
        policy_type = str(policy_table.get("type") or "keyword")
        prompt = candidate[CANDIDATE_FIELD]
        trace: dict[str, Any] = {"query": row["text"], "policy": policy_type}
        if policy_type == "keyword":
            prediction = policy.classify(prompt, row["text"])
            predicted = prediction.label
            trace["matched"] = prediction.matched
            usage: dict[str, Any] = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
            usage["cost_usd"] = 0.0
        elif policy_type == "llm":
            try:
                predicted, usage = await policy.predict_llm(prompt, row["text"], policy_table, source.labels)
            except policy.LlmPolicyError as exc:
                raise HTTPException(status_code=exc.status, detail=str(exc)) from exc
        else:
            raise HTTPException(
                status_code=400, detail=f"unknown policy type {policy_type!r}; this container runs keyword or llm"
            )
        served.add(rollout_id)
        expected = row["label"]
        trace |= {"predicted": predicted, "expected": expected}
        feedback = f"expected {expected}, predicted {predicted}"
        return RolloutResult(
            rollout_id=rollout_id,
            reward=1.0 if predicted == expected else 0.0,
            task_id=row["task_id"],
            trace=trace,
            usage=usage,
            metadata={"feedback": feedback},
            actionable_side_info={"feedback": feedback},
        ).to_dict()

    return container


def build_app(source: data.DataSource | None = None) -> FastAPI:
    """The container's web app: its routes plus the start-up check (``POST /health/check``,
    :mod:`synth_opt.policies.check`): the data has rows and the keyword policy classifies one, the policy type is
    known and, for ``llm``, its endpoint serves its model."""
    source = source if source is not None else data.load()
    app = build_container(source).fastapi()
    seed = policy.seed_prompt(source.labels)

    async def known_good() -> str:
        rows = source.rows("train")
        if not rows or not source.rows("test"):
            raise RuntimeError(f"the {source.kind} data has no train or no test rows")
        predicted = policy.classify(seed, rows[0]["text"]).label
        return f"{len(source.labels)} labels from the {source.kind} data; the seed predicts {predicted!r} for row 1"

    @app.post(CHECK_ROUTE)
    async def health_check(payload: dict[str, Any] = Body(default_factory=dict)) -> dict[str, Any]:
        return await container_check(
            payload.get("policy"), known_good=("data", known_good), policy_types=("keyword", "llm"), llm_max_tokens=32
        )

    return app


def _task_row(payload: dict[str, Any], rows: dict[str, dict[str, str]]) -> dict[str, str]:
    """The row to run: the container's own row for a known ``task_id`` (its label is the judge), else the row the
    request carries when it has ``text`` and ``label``."""
    task = payload.get("task") if isinstance(payload.get("task"), dict) else {}
    task_id = str(payload.get("task_id") or task.get("task_id") or "")
    if task_id in rows:
        return rows[task_id]
    if isinstance(task.get("text"), str) and isinstance(task.get("label"), str):
        return {"task_id": task_id, "text": task["text"], "label": task["label"]}
    raise HTTPException(status_code=404, detail=f"unknown task id {task_id!r} and no task row with text and label")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the Banking77 task container.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8931")))
    parser.add_argument("--data-dir", default=None, help="the Banking77 data directory (train.csv, test.csv, ...)")
    parser.add_argument("--download", action="store_true", help="download the public files into the user cache")
    args = parser.parse_args(argv)
    import uvicorn

    if args.download:
        data.download()
    source = data.load(args.data_dir)
    print(source.describe(), file=sys.stderr, flush=True)
    app = build_app(source)
    print(f"banking77 container on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
