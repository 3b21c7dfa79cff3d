"""The Banking77 task container, written with the public ``synth-containers`` SDK.

One rollout runs one candidate prompt on one query and scores exact label match (reward 1.0 or 0.0). Two policies:
``keyword`` (offline, deterministic; see ``policy.py``) and ``llm`` (an OpenAI-compatible chat-completions endpoint).

Run it: ``python cookbooks/banking77/container.py --port 8931 [--data-dir DIR]`` (or ``PORT=8931``). It logs the
data source it uses on stderr. ``GET /metadata`` reports ``metadata.served_rollouts``: the number of distinct
rollout ids this process has served, so a test can check that a run kept within its rollout budget.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the cookbook importable as the package ``banking77``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi import FastAPI, HTTPException
from synth_containers import Container, RolloutResult

from banking77 import data, policy
from cookbook_kit import container as kit
from cookbook_kit.container import CANDIDATE_FIELD

__all__ = ["CANDIDATE_FIELD", "PROGRAM_ID", "build_app", "build_container", "main"]

PROGRAM_ID = "banking77.keyword_classifier.v1"
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
TASK = kit.PromptTask(
    task_id="banking77",
    task_name="Banking77",
    summary="Banking77 intent classification (77 labels, exact-match reward)",
    description=TASK_DESCRIPTION,
    program_id=PROGRAM_ID,
    module_id="classifier",
    policies=("keyword", "llm"),
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
    container = kit.prompt_container(
        TASK,
        seed=seed,
        served=served,
        metadata={"data_source": source.kind, "license": "CC BY 4.0", "citation": CITATION},
        live_metadata=lambda: {"data_source": source.kind},
        task_metadata={"labels": len(source.labels), "data_source": source.kind},
    )

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
        task_ids = kit.requested_task_ids(
            payload, ("train", "test"), lambda task_id, split: task_id in rows and task_id.startswith(f"{split}-")
        )
        return {"tasks": [dict(rows[task_id]) for task_id in task_ids]}

    @container.rollout
    async def rollout(payload: dict[str, Any]) -> dict[str, Any]:
        request = kit.rollout_request(payload, TASK)
        row = _task_row(payload, rows)
        trace: dict[str, Any] = {"query": row["text"], "policy": request.policy_type}
        if request.policy_type == "keyword":
            prediction = policy.classify(request.prompt, row["text"])
            predicted = prediction.label
            trace["matched"] = prediction.matched
            usage = kit.zero_usage()
        else:
            try:
                predicted, usage = await policy.predict_llm(request.prompt, row["text"], request.policy, source.labels)
            except policy.LlmPolicyError as exc:
                raise HTTPException(status_code=exc.status, detail=str(exc)) from exc
        served.add(request.rollout_id)
        expected = row["label"]
        trace |= {"predicted": predicted, "expected": expected}
        feedback = f"expected {expected}, predicted {predicted}"
        return RolloutResult(
            rollout_id=request.rollout_id,
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
    seed = policy.seed_prompt(source.labels)

    async def known_good() -> str:
        rows = source.rows("train")
        if not rows or not source.rows("test"):
            raise RuntimeError(f"the {source.kind} data has no train or no test rows")
        predicted = policy.classify(seed, rows[0]["text"]).label
        return f"{len(source.labels)} labels from the {source.kind} data; the seed predicts {predicted!r} for row 1"

    return kit.with_start_up_check(build_container(source), TASK, known_good=("data", known_good), llm_max_tokens=32)


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
    parser = kit.container_parser("Serve the Banking77 task container.", 8931)
    parser.add_argument("--data-dir", default=None, help="the Banking77 data directory (train.csv, test.csv, ...)")
    parser.add_argument("--download", action="store_true", help="download the public files into the user cache")
    args = parser.parse_args(argv)
    if args.download:
        data.download()
    source = data.load(args.data_dir)
    print(source.describe(), file=sys.stderr, flush=True)
    return kit.serve(build_app(source), args, f"banking77 container on http://{args.host}:{args.port}")


if __name__ == "__main__":
    raise SystemExit(main())
