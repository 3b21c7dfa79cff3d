"""The tblite cookbook: tasks and splits, the sandbox, both policies, the container routes, the offline proposer, and
whole runs (the container and the proposer as real processes)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from synth_opt import GepaRun, load_config
from synth_opt.proposers.reflection import ReflectionRequest, ReflectiveRecord, parse_reply, render_prompt
from synth_opt.testing import (
    FakeOpenAI,
    converse,
    serve_fake_openai,
)
from tblite import container, offline_proposer, policy, sandbox, tasks

from ..cookbook_runs import assert_planned, offline_config, run_accept

COOKBOOKS = Path(__file__).resolve().parents[2] / "cookbooks"

COOKBOOK = COOKBOOKS / "tblite"
PROPOSER = COOKBOOK / "offline_proposer.py"
TASKS = {task.task_id: task for task in tasks.TASKS}
LOG_TASK = TASKS["train-log_error_count"]


@pytest.fixture
async def client() -> Any:
    app = container.build_container().fastapi()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tblite") as http:
        yield http


def _rollout(
    task_id: str, prompt: str, rollout_id: str = "r-1", policy_table: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "rollout_id": rollout_id,
        "submission_mode": "sync",
        "task_id": task_id,
        "candidate_id": "c",
        "candidate": {"system_prompt": prompt},
        "policy": policy_table if policy_table is not None else {"type": "playbook"},
        "task": TASKS[task_id].row() if task_id in TASKS else {"task_id": task_id},
        "metadata": {},
    }


def seed_prompt_plus(*rules: str) -> str:
    return "\n".join([policy.seed_prompt(), *rules])


# --- tasks and splits ----------------------------------------------------------------------------------------------


def _skeleton(text: str, params: dict[str, str]) -> str:
    """``text`` with the task's parameter values replaced by their names (longest values first)."""
    for name, value in sorted(params.items(), key=lambda item: -len(item[1])):
        if len(value) >= 2:
            text = re.sub(rf"(?<![\w.]){re.escape(value)}(?![\w])", "{" + name + "}", text)
    return " ".join(text.split())


def test_enough_tasks_with_several_checks_each() -> None:
    assert len(tasks.TASKS) >= 24
    assert len(TASKS) == len(tasks.TASKS)  # ids are unique
    for task in tasks.TASKS:
        assert 2 <= len(task.checks) <= 5, task.task_id
        assert len({check.name for check in task.checks}) == len(task.checks), task.task_id
        assert task.solution and task.files and task.instruction
        assert all(name.startswith("test_") for name in (check.name for check in task.checks))
        row = task.row()
        assert "solution" not in row and all("code" not in check for check in row["checks"])


def test_heldout_tasks_share_no_family_template_solution_or_data_with_train() -> None:
    train, test = tasks.tasks_of("train"), tasks.tasks_of("test")
    assert len(train) >= 12 and len(test) >= 12
    assert not {task.family for task in train} & {task.family for task in test}
    instruction_templates = [{_skeleton(t.instruction, dict(t.params)) for t in split} for split in (train, test)]
    assert not instruction_templates[0] & instruction_templates[1]
    solutions = [{_skeleton(" && ".join(t.solution), dict(t.params)) for t in split} for split in (train, test)]
    assert not solutions[0] & solutions[1]
    raw_solutions = [{command for t in split for command in t.solution} for split in (train, test)]
    assert not raw_solutions[0] & raw_solutions[1]
    contents = [{content for t in split for content in t.files.values()} for split in (train, test)]
    assert not contents[0] & contents[1]
    check_code = [{check.code for t in split for check in t.checks} for split in (train, test)]
    assert not check_code[0] & check_code[1]
    # techniques do transfer: most heldout tasks need a technique some train task teaches, but not all
    train_techniques = {task.technique for task in train}
    transferable = [task for task in test if task.technique in train_techniques]
    assert len(test) - 3 <= len(transferable) < len(test)


@pytest.mark.anyio
async def test_every_oracle_solution_scores_one() -> None:
    """(An empty agent scoring 0.0 on every task is checked through the rollout route below.)"""
    limit = asyncio.Semaphore(4)

    async def score(task: tasks.Task) -> list[sandbox.CheckResult]:
        async with limit, sandbox.Sandbox(task) as box:
            for command in task.solution:
                result = await box.run(command)
                assert result.exit_code == 0, (task.task_id, result)
            return await box.score()

    oracle = await asyncio.gather(*(score(task) for task in tasks.TASKS))
    for task, passed in zip(tasks.TASKS, oracle, strict=True):
        assert [check.name for check in passed] == [check.name for check in task.checks]
        assert all(check.passed for check in passed), (task.task_id, passed)


# --- sandbox -------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_commands_run_in_a_fresh_temp_dir_with_a_scrubbed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TBLITE_TEST_SECRET", "hunter2-do-not-leak")
    async with sandbox.Sandbox(LOG_TASK) as box:
        where = await box.run("pwd; ls; env")
        work = box.work
        assert work.is_dir() and Path.cwd() not in work.parents
    assert not work.exists()  # removed after the rollout
    lines = where.stdout.splitlines()
    assert lines[0] == str(work) and "tblite-" in lines[0]
    assert "app.log" in lines[1:3]
    names = {line.split("=", 1)[0] for line in lines if "=" in line}
    assert names <= {"PATH", "HOME", "LANG", "PWD", "SHLVL", "_", "OLDPWD"}  # bash adds the last four itself
    assert f"HOME={work}" in lines
    assert "hunter2" not in where.stdout and "TBLITE_TEST_SECRET" not in where.stdout


@pytest.mark.anyio
async def test_a_command_past_its_timeout_is_killed_with_its_children() -> None:
    started = time.monotonic()
    async with sandbox.Sandbox(LOG_TASK, command_timeout=1.0) as box:
        result = await box.run("sleep 31.7 & sleep 31.7; echo never")
    assert time.monotonic() - started < 10
    assert result.timed_out and result.exit_code is None and "never" not in result.stdout
    assert "ran past 1 s" in result.stderr
    done = await asyncio.to_thread(
        subprocess.run, ["pgrep", "-f", "sleep 31.7"], capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "", "the background sleep outlived the timeout"


@pytest.mark.anyio
async def test_the_network_is_cut_off_where_unshare_works() -> None:
    prefix, described = sandbox.network_isolation()
    if not prefix:
        pytest.skip(f"unshare -n is not available here: {described}")
    assert described == "unshare -n (no network)"
    async with sandbox.Sandbox(LOG_TASK) as box:
        probe = "import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)"
        result = await box.run(f'python3 -c "{probe}"')
    assert result.exit_code != 0 and "unreachable" in result.stderr.lower()


# --- playbook policy -----------------------------------------------------------------------------------------------


def test_playbook_policy_follows_only_the_prompt() -> None:
    row = LOG_TASK.row()
    assert policy.fire("", row) == ([], [])
    assert policy.fire("count the lines with grep -c, please", row) == ([], [])  # prose is no rule
    prompt = "when instruction mentions counting: grep -c -e '{pattern}' {input} > {output}"
    (fired,), missing = policy.fire(prompt, row)
    assert fired["command"] == "grep -c -e 'ERROR' app.log > errors.txt" and fired["matched"] == ["counting"]
    assert missing == []
    # the same rule does not fire where its word is absent, nor where a placeholder is not a declared parameter
    assert policy.fire(prompt.replace("counting", "zebra"), row) == ([], [])
    (missing_rule,) = policy.fire(prompt.replace("{pattern}", "{regex}"), row)[1]
    assert missing_rule["missing_params"] == ["regex"]
    # several words are alternatives, rules run in prompt order, ${...} is shell and no placeholder
    two = "when instruction mentions zebra | errors: echo ${HOME} {output}\nwhen instruction mentions app: ls {input}"
    fired_two, _ = policy.fire(two, row)
    assert [rule["command"] for rule in fired_two] == ["echo ${HOME} errors.txt", "ls app.log"]
    # the instruction decides, not the task id: another row with the same params and words fires the same way
    # the hint, the check descriptions and the file names are not read by this policy
    assert policy.fire(two, {**row, "hint": "", "checks": [], "files": []}) == policy.fire(two, row)
    other = {"instruction": "Zebra crossing", "params": {"output": "o.txt", "input": "i.txt"}}
    assert [rule["command"] for rule in policy.fire(two, other)[0]] == ["echo ${HOME} o.txt"]


def test_seed_prompt_solves_little() -> None:
    seed = policy.seed_prompt()
    (rule,) = policy.parse_rules(seed)
    assert rule.command == "touch {output}"
    helped = [task for task in tasks.TASKS if policy.fire(seed, task.row())[0]]
    assert 0 < len(helped) < len(tasks.TASKS)


# --- container routes ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_program_task_info_and_metadata(client: httpx.AsyncClient) -> None:
    program = (await client.get("/program")).json()
    assert program["seed_candidate"] == {"system_prompt": policy.seed_prompt()}
    assert program["target_modules"] == ["system_prompt"]
    (module,) = program["modules"]
    assert module["candidate_field"] == "system_prompt" and module["mutable"] is True
    assert "pytest checks" in (await client.get("/task_info")).json()["description"]
    metadata = (await client.get("/metadata")).json()["metadata"]
    assert metadata["optimizer_contracts"]["gepa"]["version"] == "synth_optimizers.gepa.v2"
    assert metadata["network_isolation"] == sandbox.network_isolation()[1]


@pytest.mark.anyio
async def test_taskset_and_tasks(client: httpx.AsyncClient) -> None:
    splits = (await client.get("/taskset")).json()["splits"]
    assert splits["train"]["task_ids"] == [task.task_id for task in tasks.tasks_of("train")]
    assert splits["test"]["count"] == len(tasks.tasks_of("test"))
    wanted = splits["test"]["task_ids"][:2]
    got = (await client.post("/taskset/tasks", json={"split": "test", "task_ids": wanted})).json()["tasks"]
    assert [row["task_id"] for row in got] == wanted
    assert set(got[0]) == {"task_id", "split", "family", "instruction", "params", "hint", "files", "checks"}
    wrong_split = await client.post("/taskset/tasks", json={"split": "train", "task_ids": wanted})
    assert wrong_split.status_code == 404 and "task_ids" in wrong_split.text and wanted[0] in wrong_split.text
    bad_split = await client.post("/taskset/tasks", json={"split": "dev", "task_ids": []})
    assert bad_split.status_code == 404 and "split" in bad_split.text
    not_a_list = await client.post("/taskset/tasks", json={"split": "train", "task_ids": "train-x"})
    assert not_a_list.status_code == 422 and "task_ids" in not_a_list.text


@pytest.mark.anyio
async def test_rollout_rewards_the_fraction_of_checks_passed(client: httpx.AsyncClient) -> None:
    seed = (await client.post("/rollout", json=_rollout(LOG_TASK.task_id, policy.seed_prompt()))).json()
    assert seed["rollout_id"] == "r-1" and seed["status"] == "completed"
    assert seed["reward_info"]["outcome_reward"] == pytest.approx(1 / 3)  # touch errors.txt: it exists, that is all
    trace = seed["trace"]
    assert [check["passed"] for check in trace["checks"]] == [True, False, False]
    assert trace["commands"][0]["command"] == "touch errors.txt" and trace["sandbox"]["network"]
    assert sorted(trace["sandbox"]["env"]) == ["HOME", "LANG", "PATH"]
    feedback = seed["actionable_side_info"]["feedback"]
    assert feedback == seed["metadata"]["feedback"]
    assert "1/3 checks passed" in feedback and "test_count_is_right" in feedback
    assert f"hint: {LOG_TASK.hint}" in feedback
    solved = seed_prompt_plus("when instruction mentions count: grep -c {pattern} {input} > {output}")
    good = (await client.post("/rollout", json=_rollout(LOG_TASK.task_id, solved, "r-2"))).json()
    assert good["reward_info"]["outcome_reward"] == 1.0
    empty = (await client.post("/rollout", json=_rollout(LOG_TASK.task_id, "Do your best.", "r-3"))).json()
    assert empty["reward_info"]["outcome_reward"] == 0.0 and empty["trace"]["commands"] == []
    assert "no command ran" in empty["actionable_side_info"]["feedback"]
    await client.post("/rollout", json=_rollout(LOG_TASK.task_id, "Do your best.", "r-3"))  # counted once
    assert (await client.get("/metadata")).json()["metadata"]["served_rollouts"] == 3


@pytest.mark.anyio
async def test_an_empty_agent_scores_zero_on_every_task(client: httpx.AsyncClient) -> None:
    limit = asyncio.Semaphore(4)

    async def empty(task_id: str) -> dict[str, Any]:
        async with limit:
            return (await client.post("/rollout", json=_rollout(task_id, "No rules.", f"e-{task_id}"))).json()

    replies = await asyncio.gather(*(empty(task_id) for task_id in TASKS))
    for reply in replies:
        assert reply["trace"]["commands"] == [] and reply["reward_info"]["outcome_reward"] == 0.0, reply["task_id"]
        assert len(reply["trace"]["checks"]) == len(TASKS[reply["task_id"]].checks)


@pytest.mark.anyio
async def test_a_rollout_past_the_command_timeout_fails_instead_of_hanging(client: httpx.AsyncClient) -> None:
    table = {"type": "playbook", "config": {"command_timeout_seconds": 1}}
    prompt = "when instruction mentions count: sleep 30\nwhen instruction mentions count: echo later > {output}"
    started = time.monotonic()
    reply = (await client.post("/rollout", json=_rollout(LOG_TASK.task_id, prompt, "t-1", table))).json()
    assert time.monotonic() - started < 10
    assert reply["reward_info"]["outcome_reward"] == 0.0 and reply["trace"]["timed_out"] is True
    assert len(reply["trace"]["commands"]) == 1  # the episode stopped at the slow command
    assert "ran past 1 s" in reply["actionable_side_info"]["feedback"]


@pytest.mark.anyio
async def test_bad_rollout_requests_are_4xx_naming_the_field(client: httpx.AsyncClient) -> None:
    task_id = LOG_TASK.task_id
    unknown_policy = await client.post("/rollout", json=_rollout(task_id, "", policy_table={"type": "oracle"}))
    assert unknown_policy.status_code == 400 and "policy.type" in unknown_policy.text
    no_model = await client.post("/rollout", json=_rollout(task_id, "", policy_table={"type": "llm"}))
    assert no_model.status_code == 400 and "policy.model" in no_model.text
    no_candidate = _rollout(task_id, "")
    no_candidate["candidate"] = {"other": "x"}
    response = await client.post("/rollout", json=no_candidate)
    assert response.status_code == 422 and "candidate.system_prompt" in response.text
    unknown_task = await client.post("/rollout", json=_rollout("train-nope", ""))
    assert unknown_task.status_code == 404 and "task_id" in unknown_task.text and "train-nope" in unknown_task.text
    bad_timeout = _rollout(task_id, "", policy_table={"type": "playbook", "config": {"command_timeout_seconds": -1}})
    response = await client.post("/rollout", json=bad_timeout)
    assert response.status_code == 422 and "command_timeout_seconds" in response.text
    assert (await client.get("/metadata")).json()["metadata"]["served_rollouts"] == 0


# --- llm policy ----------------------------------------------------------------------------------------------------


def _scripted(prompt: str) -> str:
    """A fake model: on the task message it answers with commands, after a command result it says DONE."""
    if prompt.startswith("Task:") and "app.log" in prompt:
        return "Let me count.\n```bash\ngrep -c ERROR app.log > errors.txt\n```"
    if prompt.startswith("Task:"):
        return "```bash\nls\n```"
    return "DONE"


@pytest.mark.anyio
async def test_llm_policy_gets_the_candidate_and_reports_priced_usage(client: httpx.AsyncClient) -> None:
    fake = FakeOpenAI(_scripted)
    with serve_fake_openai(fake) as url:
        table = {
            "type": "llm",
            "model": "fake-model",
            "base_url": url,
            "max_tokens": 64,
            "config": {"input_cost_per_million": 1000.0, "output_cost_per_million": 2000.0, "max_turns": 3},
        }
        reply = (await client.post("/rollout", json=_rollout(LOG_TASK.task_id, "CANDIDATE TEXT", "l-1", table))).json()
    assert reply["reward_info"]["outcome_reward"] == 1.0
    first, second = fake.requests
    assert first.body["messages"][0] == {"role": "system", "content": "CANDIDATE TEXT"}
    assert LOG_TASK.instruction in first.prompt and first.body["max_tokens"] == 64
    assert "grep" not in first.prompt  # the task's hint (its technique) is feedback material, not given to the agent
    assert second.prompt.startswith("exit code: 0")  # the command's result went back as the next user message
    assert [turn["command"] for turn in reply["trace"]["turns"]] == ["grep -c ERROR app.log > errors.txt", None]
    usage = reply["usage"]
    assert usage["calls"] == 2 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    expected = (usage["prompt_tokens"] * 1000.0 + usage["completion_tokens"] * 2000.0) / 1e6
    assert usage["cost_usd"] == pytest.approx(expected)


@pytest.mark.anyio
async def test_llm_policy_stops_at_max_turns() -> None:
    calls: list[str] = []

    async def execute(command: str) -> dict[str, Any]:
        calls.append(command)
        return {"exit_code": 0, "stdout": "", "stderr": "", "timed_out": False}

    def chatty(_: str) -> str:
        return "```bash\necho again\n```"

    with serve_fake_openai(chatty) as url:
        table = {"type": "llm", "model": "m", "base_url": url, "config": {"max_turns": 2}}
        turns, usage = await policy.run_llm_episode("P", LOG_TASK.row(), table, execute)
    assert len(turns) == 2 and calls == ["echo again", "echo again"] and usage["calls"] == 2


# --- offline proposer ----------------------------------------------------------------------------------------------


def _request(task_ids: list[str], prompt: str, rewards: list[float], proposals: int = 1) -> ReflectionRequest:
    records = tuple(
        ReflectiveRecord(
            task_id=task_id,
            task=TASKS[task_id].row(),
            output={"instruction": TASKS[task_id].instruction},
            reward=reward,
            feedback=f"0/3 checks passed\nhint: {TASKS[task_id].hint}",
        )
        for task_id, reward in zip(task_ids, rewards, strict=True)
    )
    return ReflectionRequest(
        candidate_id="seed",
        candidate={"system_prompt": prompt},
        target_module="system_prompt",
        records=records,
        task_info="tblite",
        proposals=proposals,
    )


TRAIN_FOUR = ["train-log_error_count", "train-score_ranking", "train-shout_names", "train-db_host"]


def _converse(turn_text: str) -> list[dict[str, Any]]:
    return converse([sys.executable, str(PROPOSER)], turn_text)


def test_offline_proposer_speaks_the_app_server_protocol_and_answers_the_same_twice() -> None:
    request = _request(TRAIN_FOUR, policy.seed_prompt(), [0.0, 0.0, 1 / 3, 0.0])
    replies = _converse(render_prompt(request))
    by_id = {reply["id"]: reply for reply in replies if "id" in reply}
    assert "serverInfo" in by_id[1]["result"] and by_id[2]["result"] == {"thread": {"id": "thr-1"}}
    assert by_id[3]["result"]["turn"]["status"] == "inProgress"
    methods = [reply["method"] for reply in replies if "method" in reply]
    assert methods == ["turn/started", "item/completed", "thread/tokenUsage/updated", "turn/completed"]
    notifications = {reply["method"]: reply["params"] for reply in replies if "method" in reply}
    assert notifications["turn/completed"]["turn"]["status"] == "completed"
    (text,) = parse_reply(notifications["item/completed"]["item"]["text"])
    assert text.startswith(policy.seed_prompt())  # nothing removed
    new_rules = text[len(policy.seed_prompt()) :].strip().splitlines()
    assert len(new_rules) == 4  # one per failed record
    assert _converse(render_prompt(request)) == replies  # a fresh process answers identically


def test_offline_proposer_turns_hints_into_rules_that_fix_the_failures() -> None:
    request = _request(TRAIN_FOUR, policy.seed_prompt(), [0.0, 0.0, 0.0, 1.0]).to_json()
    (text,) = offline_proposer.propose(request)
    assert offline_proposer.propose(request) == [text]  # a pure function of the request
    assert "when instruction mentions count: grep -c -e '{pattern}' {input} > {output}" in text
    assert "when instruction mentions uppercase: tr '[:lower:]' '[:upper:]' < {input} > {output}" in text
    assert "sed -i 's/{old}/{new}/g'" not in text  # the passing record teaches nothing
    for task_id in TRAIN_FOUR[:3]:
        fired, _ = policy.fire(text, TASKS[task_id].row())
        assert fired[-1]["rule"].endswith(offline_proposer._template(TASKS[task_id].hint))
    # the learned rule transfers to a heldout task of another family that needs the same technique
    fired, _ = policy.fire(text, TASKS["test-city_visit_count"].row())
    assert fired[-1]["command"] == "grep -c -e 'Oslo' visits.csv > oslo.txt"
    # nothing failed: the text comes back unchanged; more proposals give distinct variants
    assert offline_proposer.propose({**request, "records": request["records"][3:]}) == [request["current_text"]]
    variants = offline_proposer.propose({**request, "proposals": 2})
    assert len(variants) == 2 == len(set(variants))


def test_offline_proposer_broadens_a_rule_and_reads_the_hint_from_feedback() -> None:
    rule = "when instruction mentions tally: grep -c -e '{pattern}' {input} > {output}"
    record = {
        "task": {"task_id": "x"},
        "output": {"instruction": "Count the lines of app.log that contain ERROR"},
        "reward": 0.0,
        "feedback": f"0/3 checks passed\nhint: {LOG_TASK.hint}",
    }
    (text,) = offline_proposer.propose({"current_text": f"intro\n{rule}", "records": [record], "proposals": 1})
    assert text == "intro\n" + rule.replace("tally:", "tally | count:")


# --- whole runs (real processes) -----------------------------------------------------------------------------------


def small_config(folder: Path, *, train_rollouts: int = 34, cache: str = "readwrite") -> Path:
    changes = {
        "max_train_rollouts = 120": f"max_train_rollouts = {train_rollouts}",
        "max_total_rollouts = 146": f"max_total_rollouts = {train_rollouts + 16}",
        'mode = "off"': f'mode = "{cache}"',
        "heldout_ids = { count = 13 }": "heldout_ids = { count = 8 }",
        "max_heldout_rollouts = 26": "max_heldout_rollouts = 16",
    }
    return offline_config(COOKBOOK, folder, changes, name="tblite.toml")


@pytest.mark.slow
def test_accept_the_reduced_offline_config_and_heldout_goes_up(tmp_path: Path) -> None:
    done = run_accept(small_config(tmp_path), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("acceptance passed")
    fresh = next((tmp_path / "runs").glob("*-fresh"))
    manifest = json.loads((fresh / "result_manifest.json").read_text())
    assert manifest["best_heldout_score"] > manifest["seed_heldout_score"] > 0
    assert manifest["rollouts_used"]["train"] <= 34 and manifest["rollouts_used"]["heldout"] <= 16
    assert_planned(tmp_path / "tblite.toml", manifest)  # gepa plan forecast this run's use
    assert manifest["best_candidate"]["system_prompt"] != policy.seed_prompt()
    profile = json.loads(
        (tmp_path / "runs" / fresh.name.replace("-fresh", "-cached") / "cache_profile.json").read_text()
    )
    assert profile["misses"] == 0 and profile["hits"] > 0


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_run_with_the_llm_policy_reports_its_usage_and_cost(tmp_path: Path) -> None:
    fake = FakeOpenAI(_scripted)
    with serve_fake_openai(fake) as url:
        path = tmp_path / "llm.toml"
        path.write_text(
            f"""
[run]
run_id = "tblite-llm"
output_dir = "runs"

[container]
command = [{json.dumps(sys.executable)}, {json.dumps(str(COOKBOOK / "container.py"))}, "--port", "{{port}}"]
startup_timeout_seconds = 30

[dataset]
train_ids = ["train-log_error_count", "train-shout_names", "train-db_host"]
heldout_ids = ["test-upper_codes"]

[policy]
type = "llm"
model = "fake-model"
base_url = "{url}"
max_tokens = 64
config = {{ input_cost_per_million = 100.0, output_cost_per_million = 400.0, max_turns = 2 }}

[proposer]
backend = "codex_app_server"
command = [{json.dumps(sys.executable)}, {json.dumps(str(PROPOSER))}]
cost_per_million_input_tokens = 0.0  # the offline proposer is free
cost_per_million_output_tokens = 0.0
timeout_seconds = 60

[gepa]
max_train_rollouts = 12
minibatch_size = 2
candidate_selector = "current_best"

[gepa.pipeline]
mode = "async_pipelined"
max_in_flight_candidates = 1

[gepa.pipeline.workers]
rollout = 4

[cache]
mode = "off"
"""
        )
        result = await GepaRun(load_config(path)).execute_async()
    rollout = result.usage["rollout"]
    assert rollout["calls"] == result.rollouts_used["total"] > 0  # synth_opt counts one call per rollout
    # the fake reports words as tokens: the model calls of every rollout were summed into the run's usage
    assert rollout["prompt_tokens"] == sum(len(request.prompt.split()) for request in fake.requests) > 0
    assert rollout["completion_tokens"] == sum(len(_scripted(request.prompt).split()) for request in fake.requests)
    expected = (rollout["prompt_tokens"] * 100.0 + rollout["completion_tokens"] * 400.0) / 1e6
    assert rollout["cost_usd"] == pytest.approx(expected)
    assert expected > 0 and result.cost_usd == pytest.approx(expected + result.usage["proposer"]["cost_usd"])
    assert result.proposals >= 1  # the offline proposer answered through the codex client
    assert result.usage["total"]["total_tokens"] >= rollout["total_tokens"]
    systems = {request.body["messages"][0]["content"] for request in fake.requests}
    assert policy.seed_prompt() in systems  # the candidate text is what reached the model
    assert result.seed_train_score is not None and result.seed_train_score > 0
    assert os.path.exists(result.manifest_path)
