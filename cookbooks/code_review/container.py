"""The code-review task container, written with the public ``synth-containers`` SDK.

One rollout runs one candidate review prompt on one unified diff and scores the review's findings against the
diff's known defects: reward = F1 (see ``scoring.py``: a finding matches a defect of the same category within one
line). Two policies: ``checklist`` (offline, deterministic; see ``policy.py``) and ``llm`` (an OpenAI-compatible
chat-completions endpoint).

Run it: ``python cookbooks/code_review/container.py --port 8932`` (or ``PORT=8932``). ``GET /metadata`` reports
``metadata.served_rollouts``: the number of distinct rollout ids this process has served.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the cookbook importable as the package ``code_review``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi import FastAPI, HTTPException
from synth_containers import Container, RolloutResult

from code_review import diffs, policy, scoring
from cookbook_kit import container as kit
from cookbook_kit.container import CANDIDATE_FIELD

__all__ = ["CANDIDATE_FIELD", "PROGRAM_ID", "build_app", "build_container", "main"]

PROGRAM_ID = "code_review.checklist_reviewer.v1"
TASK_DESCRIPTION = (
    "Code review: each task is one small unified diff (Python mostly, some JavaScript, shell and SQL) written with "
    "known defects on its added lines, or none. The review reports findings `<new-file line>: <category>`; the "
    "categories are " + ", ".join(diffs.CATEGORIES) + ". Reward is the F1 of the findings against the known "
    "defects: a finding matches a defect when the category is equal and the line is within 1; a clean diff scores "
    "1 with no findings and 0 with any. The candidate `system_prompt` is a review checklist: the offline "
    "`checklist` policy applies its rule lines `- <category>: `<pattern>`, ... [unless `<pattern>`, ...]` to "
    "every added line (a pattern is a phrase of code tokens, STR / FSTR for string literals, ... for a gap, or a "
    "/regex/); the `llm` policy gives the text to a model as its system prompt and the diff as the user message."
)
TASK = kit.PromptTask(
    task_id="code_review",
    task_name="Code review",
    summary="Code review of small diffs with known defects (F1 reward)",
    description=TASK_DESCRIPTION,
    program_id=PROGRAM_ID,
    module_id="reviewer",
    policies=("checklist", "llm"),
)


def build_container() -> Container:
    """The container over the tasks of ``diffs.py``."""
    by_split = diffs.tasks()
    tasks = {task.task_id: task for split in diffs.SPLITS for task in by_split[split]}
    seed = policy.seed_checklist()
    served: set[str] = set()
    container = kit.prompt_container(
        TASK,
        seed=seed,
        served=served,
        metadata={"categories": list(diffs.CATEGORIES)},
        live_metadata=lambda: {"categories": list(diffs.CATEGORIES)},
        task_metadata={"categories": list(diffs.CATEGORIES)},
    )

    @container.taskset
    async def taskset() -> dict[str, Any]:
        splits = {
            split: {"task_ids": [task.task_id for task in by_split[split]], "count": len(by_split[split])}
            for split in diffs.SPLITS
        }
        return {
            "splits": splits,
            "labels": list(diffs.CATEGORIES),
            "metadata": {
                "defective": {split: sum(bool(task.defects) for task in by_split[split]) for split in diffs.SPLITS},
                "defects": {split: sum(len(task.defects) for task in by_split[split]) for split in diffs.SPLITS},
                "reward": "F1 of findings (line, category) against known defects; line tolerance 1",
            },
        }

    @container.taskset_tasks
    async def taskset_tasks(payload: dict[str, Any]) -> dict[str, Any]:
        task_ids = kit.requested_task_ids(
            payload, diffs.SPLITS, lambda task_id, split: task_id in tasks and tasks[task_id].split == split
        )
        return {"tasks": [tasks[task_id].row() for task_id in task_ids]}

    @container.rollout
    async def rollout(payload: dict[str, Any]) -> dict[str, Any]:
        request = kit.rollout_request(payload, TASK)
        task_id, diff, defects = _task(payload, tasks)
        trace: dict[str, Any] = {"policy": request.policy_type}
        if request.policy_type == "checklist":
            findings = policy.review(request.prompt, diff)
            problems = policy.parse_checklist(request.prompt).problems
            if problems:
                trace["checklist_problems"] = list(problems)
            usage = kit.zero_usage()
        else:
            try:
                findings, reply, usage = await policy.predict_llm(request.prompt, diff, request.policy)
            except policy.LlmPolicyError as exc:
                raise HTTPException(status_code=exc.status, detail=str(exc)) from exc
            trace["reply"] = reply
        served.add(request.rollout_id)
        pairs = [(finding.line, finding.category) for finding in findings]
        score = scoring.score_findings(pairs, defects)
        rules = {(finding.line, finding.category): finding.rule for finding in findings}
        feedback = scoring.render_feedback(score, policy.added_lines(diff), rules)
        trace |= {
            "findings": [finding.to_json() for finding in findings],
            "expected": [{"line": line, "category": category} for line, category in defects],
            "false_positives": [{"line": line, "category": category} for line, category in score.false_positives],
            "missed": [{"line": line, "category": category} for line, category in score.missed],
        }
        metrics = {"precision": score.precision, "recall": score.recall, "f1": score.f1, "true_positives": score.tp}
        return RolloutResult(
            rollout_id=request.rollout_id,
            reward=score.f1,
            task_id=task_id,
            trace=trace,
            usage=usage,
            reward_details={"metrics": metrics},
            metadata={"feedback": feedback},
            actionable_side_info={"feedback": feedback},
        ).to_dict()

    return container


def _task(payload: dict[str, Any], tasks: dict[str, diffs.Task]) -> tuple[str, str, list[tuple[int, str]]]:
    """(task id, diff, defects): the container's own task for a known ``task_id`` (its defects are the judge),
    else the row the request carries when it has ``diff`` and ``defects`` (a list of ``{line, category}``)."""
    raw_task = payload.get("task")
    task: dict[str, Any] = raw_task if isinstance(raw_task, dict) else {}
    task_id = str(payload.get("task_id") or task.get("task_id") or "")
    if task_id in tasks:
        known = tasks[task_id]
        return task_id, known.diff, list(known.defects)
    if isinstance(task.get("diff"), str) and isinstance(task.get("defects"), list):
        defects: list[tuple[int, str]] = []
        for item in task["defects"]:
            if not isinstance(item, dict) or not isinstance(item.get("line"), int) or not item.get("category"):
                raise HTTPException(status_code=422, detail="task.defects entries need an integer line and a category")
            defects.append((item["line"], str(item["category"])))
        return task_id, task["diff"], defects
    raise HTTPException(
        status_code=404, detail=f"unknown task_id {task_id!r} and no task row with a diff and its defects"
    )


def build_app() -> FastAPI:
    """The container's web app: its routes plus the start-up check (``POST /health/check``,
    :mod:`synth_opt.policies.check`): a review that names a train diff's known defects scores 1, the policy type is
    known and, for ``llm``, its endpoint serves its model."""
    task = diffs.tasks()["train"][0]

    async def known_good() -> str:
        score = scoring.score_findings(list(task.defects), list(task.defects))
        if scoring.f1(list(task.defects), list(task.defects)) != 1.0:
            raise RuntimeError(f"the known defects of {task.task_id} do not score 1 against themselves: {score}")
        findings = policy.review(policy.seed_checklist(), task.diff)
        return f"{task.task_id}: its known defects score 1; the seed checklist finds {len(findings)}"

    return kit.with_start_up_check(build_container(), TASK, known_good=("scoring", known_good), llm_max_tokens=400)


def main(argv: Sequence[str] | None = None) -> int:
    args = kit.container_parser("Serve the code-review task container.", 8932).parse_args(argv)
    return kit.serve(build_app(), args, f"code_review container on http://{args.host}:{args.port}")


if __name__ == "__main__":
    raise SystemExit(main())
