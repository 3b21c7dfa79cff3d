"""The tblite task container (small terminal tasks), written with the public ``synth-containers`` SDK.

One rollout runs one candidate prompt on one task: the policy's shell commands run in a fresh temporary directory
(see ``sandbox.py``: timeout, scrubbed environment, ``unshare -n`` where the machine allows it), then the task's
pytest checks run against that directory. Reward = the fraction of the task's checks that pass; 0.0 when a command
ran past its timeout. Two policies: ``playbook`` (offline, deterministic; see ``policy.py``) and ``llm`` (an
OpenAI-compatible chat-completions endpoint, several turns).

Run it: ``python cookbooks/tblite/container.py --port 8932`` (or ``PORT=8932``). ``GET /metadata`` reports
``metadata.served_rollouts`` (distinct rollout ids served) and ``metadata.network_isolation``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the cookbook importable as the package ``tblite``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi import FastAPI, HTTPException
from synth_containers import Container, RolloutResult

from cookbook_kit import container as kit
from cookbook_kit.container import CANDIDATE_FIELD
from tblite import policy, sandbox
from tblite.tasks import SPLITS, TASKS, Task

__all__ = ["CANDIDATE_FIELD", "PROGRAM_ID", "build_app", "build_container", "main"]

PROGRAM_ID = "tblite.shell_agent.v1"
TASK_DESCRIPTION = (
    "tblite: small terminal tasks (file and text manipulation, small scripts, data wrangling). Each task has an "
    "instruction, declared parameters (params: input file, pattern, column...) and a hint naming the general "
    "technique with a shell command template. The agent's shell commands run in a fresh temporary directory "
    "holding the task's files; then the task's pytest checks run; reward = the fraction of checks that pass. The "
    "candidate `system_prompt` is the agent's system prompt. The offline `playbook` policy runs only its rule "
    "lines, `when instruction mentions <word> | <word>: <shell command with {param} placeholders>`: a rule runs "
    "when the instruction contains one of its words (after a light stemmer) and the task declares every "
    "placeholder; rules run in prompt order. The `llm` policy gives the text to a model as its system prompt and "
    "runs the bash blocks it replies with, for a few turns."
)
TASK = kit.PromptTask(
    task_id="tblite",
    task_name="tblite",
    summary="tblite: small terminal tasks scored by pytest checks",
    description=TASK_DESCRIPTION,
    program_id=PROGRAM_ID,
    module_id="agent",
    policies=("playbook", "llm"),
)


def build_container(tasks: Sequence[Task] = TASKS) -> Container:
    rows = {task.task_id: task for task in tasks}
    served: set[str] = set()
    seed = policy.seed_prompt()
    container = kit.prompt_container(
        TASK,
        seed=seed,
        served=served,
        metadata={"tasks": len(rows)},
        live_metadata=lambda: {"tasks": len(rows), "network_isolation": sandbox.network_isolation()[1]},
        task_metadata={"tasks": len(rows)},
    )

    @container.taskset
    async def taskset() -> dict[str, Any]:
        splits = {}
        for split in SPLITS:
            ids = [task.task_id for task in rows.values() if task.split == split]
            splits[split] = {"task_ids": ids, "count": len(ids)}
        return {
            "splits": splits,
            "labels": [],
            "metadata": {
                "families": {task.task_id: task.family for task in rows.values()},
                "reward": "fraction of the task's pytest checks that pass",
            },
        }

    @container.taskset_tasks
    async def taskset_tasks(payload: dict[str, Any]) -> dict[str, Any]:
        task_ids = kit.requested_task_ids(
            payload, SPLITS, lambda task_id, split: task_id in rows and rows[task_id].split == split
        )
        return {"tasks": [rows[task_id].row() for task_id in task_ids]}

    @container.rollout
    async def rollout(payload: dict[str, Any]) -> dict[str, Any]:
        request = kit.rollout_request(payload, TASK)
        task = _task(payload, rows)
        timeout = _command_timeout(request.policy)
        result = await _run_episode(task, request.prompt, request.policy_type, request.policy, timeout)
        served.add(request.rollout_id)
        reply: dict[str, Any] = RolloutResult(
            rollout_id=request.rollout_id,
            reward=result["reward"],
            task_id=task.task_id,
            trace=result["trace"],
            usage=result["usage"],
            reward_details={"checks_passed": result["passed"], "checks_total": len(task.checks)},
            metadata={"feedback": result["feedback"]},
            actionable_side_info={"feedback": result["feedback"]},
        ).to_dict()
        return reply

    return container


def _task(payload: Mapping[str, Any], rows: Mapping[str, Task]) -> Task:
    """The container's own task for the request's ``task_id`` (its checks are the judge; a row is never trusted)."""
    raw = payload.get("task")
    task: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    task_id = str(payload.get("task_id") or task.get("task_id") or "")
    if not task_id:
        raise HTTPException(status_code=422, detail="task_id (or task.task_id) is required")
    if task_id not in rows:
        raise HTTPException(status_code=404, detail=f"task_id: unknown task id {task_id!r}")
    return rows[task_id]


def _command_timeout(policy_table: Mapping[str, Any]) -> float:
    config = policy_table.get("config") or {}
    if not isinstance(config, Mapping):
        raise HTTPException(status_code=422, detail="policy.config must be an object")
    raw = config.get("command_timeout_seconds", sandbox.DEFAULT_COMMAND_TIMEOUT)
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise HTTPException(status_code=422, detail="policy.config.command_timeout_seconds must be a number") from exc
    if not 0 < value <= sandbox.MAX_COMMAND_TIMEOUT:
        raise HTTPException(
            status_code=422,
            detail=f"policy.config.command_timeout_seconds must be in (0, {sandbox.MAX_COMMAND_TIMEOUT:g}]",
        )
    return value


async def _run_episode(
    task: Task, prompt: str, policy_type: str, policy_table: Mapping[str, Any], command_timeout: float
) -> dict[str, Any]:
    row = task.row()
    usage = kit.zero_usage()
    async with sandbox.Sandbox(task, command_timeout=command_timeout) as box:
        trace: dict[str, Any] = {
            "policy": policy_type,
            "task_id": task.task_id,
            "instruction": task.instruction,
            "sandbox": {
                "network": box.network,
                "command_timeout_seconds": command_timeout,
                "env": sorted(sandbox.agent_env(box.work)),
            },
        }
        commands: list[dict[str, Any]] = []
        if policy_type == "playbook":
            fired, missing = policy.fire(prompt, row)
            trace["rules_fired"] = fired
            trace["rules_missing_params"] = missing
            for rule in fired:
                result = (await box.run(rule["command"])).to_json()
                commands.append(result)
                if result["timed_out"]:
                    break
        else:

            async def execute(command: str) -> dict[str, Any]:
                result = (await box.run(command)).to_json()
                commands.append(result)
                return result

            try:
                turns, usage = await policy.run_llm_episode(prompt, row, policy_table, execute)
            except policy.LlmPolicyError as exc:
                raise HTTPException(status_code=exc.status, detail=str(exc)) from exc
            trace["turns"] = [{key: turn[key] for key in ("turn", "reply", "command")} for turn in turns]
        trace["commands"] = commands
        timed_out = any(command["timed_out"] for command in commands)
        trace["timed_out"] = timed_out
        if timed_out:
            checks: list[sandbox.CheckResult] = []
            passed = 0
            reward = 0.0
        else:
            checks = await box.score()
            passed = sum(check.passed for check in checks)
            reward = passed / len(task.checks) if task.checks else 0.0
    trace["checks"] = [check.to_json() for check in checks]
    return {
        "reward": reward,
        "passed": passed,
        "trace": trace,
        "usage": usage,
        "feedback": _feedback(task, commands, checks, timed_out, trace),
    }


def _feedback(
    task: Task,
    commands: Sequence[Mapping[str, Any]],
    checks: Sequence[sandbox.CheckResult],
    timed_out: bool,
    trace: Mapping[str, Any],
) -> str:
    """What a reader (or the proposer) needs: which checks failed and why, what ran, and the task's hint."""
    parts: list[str] = []
    if timed_out:
        slow = next(command for command in commands if command["timed_out"])
        parts.append(
            f"reward 0: the command {slow['command']!r} ran past {trace['sandbox']['command_timeout_seconds']:g} s"
        )
    else:
        passed = sum(check.passed for check in checks)
        parts.append(f"{passed}/{len(task.checks)} checks passed")
        failed = [check for check in checks if not check.passed]
        if failed:
            shown = "; ".join(f"{check.name} ({check.description}): {check.message}" for check in failed)
            parts.append(f"failed: {shown}")
    if not commands:
        parts.append("no command ran")
    else:
        failures = [command for command in commands if command["exit_code"] not in (0, None)]
        parts.append(f"{len(commands)} command(s) ran" + (f", {len(failures)} exited non-zero" if failures else ""))
    parts.append(f"hint: {task.hint}")
    return "\n".join(parts)


def build_app(tasks: Sequence[Task] = TASKS) -> FastAPI:
    """The container's web app: its routes plus the start-up check (``POST /health/check``,
    :mod:`synth_opt.policies.check`): a train task's oracle solution passes its pytest checks in the sandbox, the
    policy type is known and, for ``llm``, its endpoint serves its model."""
    task = next(task for task in tasks if task.split == "train")

    async def known_good() -> str:
        async with sandbox.Sandbox(task) as box:
            for command in task.solution:
                result = await box.run(command)
                if result.exit_code != 0:
                    raise RuntimeError(f"{task.task_id}: its oracle command {command!r} failed: {result.stderr[-300:]}")
            checks = await box.score()
        failed = [check for check in checks if not check.passed]
        if failed:
            shown = "; ".join(f"{check.name}: {check.message[:300]}" for check in failed)
            raise RuntimeError(f"{task.task_id}: its oracle solution fails its own checks ({shown})")
        return f"{task.task_id}: its oracle solution passes its {len(checks)} pytest checks (network: {box.network})"

    return kit.with_start_up_check(build_container(tasks), TASK, known_good=("sandbox", known_good), llm_max_tokens=512)


def main(argv: Sequence[str] | None = None) -> int:
    args = kit.container_parser("Serve the tblite task container.", 8932).parse_args(argv)
    _, network = sandbox.network_isolation()
    banner = f"tblite container on http://{args.host}:{args.port} ({len(TASKS)} tasks; network isolation: {network})"
    return kit.serve(build_app(), args, banner)


if __name__ == "__main__":
    raise SystemExit(main())
