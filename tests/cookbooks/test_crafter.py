"""The Crafter cookbook: the real crafter game, the text observation, the scripted and LLM policies, the container
routes, the offline proposer, and whole runs through the CLI (three-run acceptance) and GepaRun."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from crafter_cookbook import app, data, feedback, game, llm_policy, policy, proposer

from synth_opt import GepaRun, load_config
from synth_opt.proposers.reflection import ReflectionRequest, ReflectiveRecord, parse_reply, render_prompt
from synth_opt.testing import (
    FakeOpenAI,
    converse,
    serve_fake_openai,
)

from ..cookbook_runs import assert_planned, offline_config, run_accept

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbooks" / "crafter"

PROPOSER = COOKBOOK / "offline_proposer.py"
# On world seed 10002 (train-002): three trees, a table, a wooden pickaxe.
SCRIPT = (
    ["move_left"] * 2
    + ["move_up"] * 2
    + ["do"]
    + ["move_right"] * 2
    + ["move_up"] * 2
    + ["do"]
    + ["move_right"] * 4
    + ["move_up", "do", "place_table", "make_wood_pickaxe"]
)


@pytest.fixture
async def client() -> Any:
    container = app.build_container().fastapi()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=container), base_url="http://crafter") as http:
        yield http


# --- the game ---------------------------------------------------------------------------------------------------


def test_train_and_test_world_seeds_are_disjoint() -> None:
    train = {row["world_seed"] for row in data.rows("train")}
    test = {row["world_seed"] for row in data.rows("test")}
    assert len(train) == len(test) == data.COUNT
    assert not train & test
    assert data.rows("test")[3] == {"task_id": "test-003", "world_seed": 20003, "split": "test"}


def test_a_fixed_action_script_unlocks_exactly_its_achievements() -> None:
    episode = game.Episode(10002, 200)
    for action in SCRIPT:
        episode.step(action)
    assert episode.unlocked == ["collect_wood", "place_table", "make_wood_pickaxe"]
    assert episode.unlock_steps == {"collect_wood": 5, "place_table": 17, "make_wood_pickaxe": 18}
    assert episode.reward == 3 == len(episode.unlocked)
    inventory = episode.env._player.inventory
    assert (inventory["wood"], inventory["wood_pickaxe"]) == (0, 1)  # 3 wood: 2 for the table, 1 for the pickaxe
    # without the third tree the pickaxe cannot be made: the table took both pieces of wood
    short = game.Episode(10002, 200)
    for action in [*SCRIPT[:10], "place_table", "make_wood_pickaxe"]:
        short.step(action)
    assert short.unlocked == ["collect_wood", "place_table"] and short.reward == 2
    with pytest.raises(ValueError, match="fly"):
        short.step("fly")


def test_a_copied_world_plays_exactly_like_a_fresh_reset() -> None:
    rng = random.Random(7)
    actions = [rng.choice(game.ACTIONS) for _ in range(250)]
    fresh = game.reset_env(10003, 300)
    copied = game.WorldCache().fresh(10003, 300)
    for action in actions:
        left, right = fresh.step(game.ACTIONS.index(action)), copied.step(game.ACTIONS.index(action))
        assert left[1:3] == right[1:3]
    assert np.array_equal(fresh._world._mat_map, copied._world._mat_map)
    assert fresh._player.inventory == copied._player.inventory
    assert [tuple(o.pos) for o in fresh._world.objects] == [tuple(o.pos) for o in copied._world.objects]
    assert str(fresh._world.random.get_state()[1][:5]) == str(copied._world.random.get_state()[1][:5])


def test_the_text_observation_shows_the_grid_inventory_status_and_facing() -> None:
    episode = game.Episode(10002, 200)
    for action in SCRIPT[:5]:
        episode.step(action)
    obs = episode.observe()
    text = game.render_text(obs)
    assert "step 5 of 200" in text
    assert "status: health 9/9, food 9/9, drink 9/9, energy 9/9" in text
    assert "inventory: wood 1" in text
    assert "facing: up (grass)" in text  # the tree it chopped became grass
    assert "achievements so far: collect_wood" in text
    rows = [line for line in text.splitlines() if line.startswith("  ")]
    assert len(rows) == game.VIEW[1] and all(len(row.split()) == game.VIEW[0] for row in rows)
    assert rows[game.VIEW[1] // 2].split()[game.VIEW[0] // 2] == "@"
    legend = next(line for line in text.splitlines() if line.startswith("legend:"))
    assert ". grass" in legend and "T tree" in legend
    assert obs.cell(0, 0)[0] == "grass" and obs.facing == (0, -1)


# --- the scripted policy -----------------------------------------------------------------------------------------


def test_the_plan_parser_reads_goals_rules_and_avoid_lines() -> None:
    plan = policy.parse_plan(
        "Prose for a model is ignored.\n"
        "goal: collect_wood at tree until wood >= 3 (three pieces)\n"
        "# goal: collect_coal\n"
        "goal: make_wood_pickaxe near table+furnace tries 7 explore 9\n"
        "rule: if drink<4 then collect_drink at water\n"
        "avoid: lava, water\n"
        "goal: fly to the moon\n"
    )
    first, second = plan.goals
    assert (first.name, first.at, str(first.until)) == ("collect_wood", "tree", "wood>=3")
    assert (second.near, second.tries, second.explore) == (("table", "furnace"), 7, 9)
    assert str(plan.rules[0]) == "if drink<4 then collect_drink at water"
    assert plan.avoid == {"lava", "water"}
    assert len(plan.problems) == 1 and "fly to the moon" in plan.problems[0]


def test_the_scripted_policy_follows_only_the_plan() -> None:
    wood = policy.run_scripted("goal: collect_wood at tree", 10002, 200)
    again = policy.run_scripted("goal: collect_wood at tree", 10002, 200)
    assert wood.actions == again.actions == SCRIPT[:5]
    assert wood.episode.unlocked == ["collect_wood"] and wood.stopped_early
    # the same goals under another name for the thing to face: nothing called "wood" exists in the world
    misnamed = policy.run_scripted("goal: collect_wood", 10002, 200)
    assert misnamed.episode.unlocked == [] and misnamed.agent.logs[0].status == "failed"
    assert "no wood in reach" in (misnamed.agent.logs[0].reason or "")
    more = policy.run_scripted(
        "goal: collect_wood at tree until wood>=3\ngoal: place_table\ngoal: make_wood_pickaxe near table", 10002, 200
    )
    assert more.actions == SCRIPT and more.episode.reward == 3
    assert policy.run_scripted("no plan at all", 10002, 200).actions == []
    # a different world seed, the same plan: another episode
    assert policy.run_scripted("goal: collect_wood at tree", 10004, 200).actions != wood.actions


def test_the_feedback_reports_what_crafters_rules_say_a_failed_goal_lacked() -> None:
    played = policy.run_scripted("goal: collect_wood at tree\ngoal: place_table\ngoal: collect_drink", 10002, 200)
    agent = played.agent
    info = feedback.scripted_feedback(agent.plan, played.episode, agent.logs, agent.rule_logs, agent.seen)
    text = info["feedback"]
    assert text.startswith("reward 1 (achievements unlocked: collect_wood (step 5))")
    assert "inventory at the end: wood 1" in text
    assert "goal 1 `collect_wood at tree`: done at step 5" in text
    assert "place_table needs wood>=2 (had 1) [source of wood: goal: collect_wood at tree]" in text
    assert "[meaning: goal: collect_drink at water]" in text
    assert "locked achievements: collect_coal [meaning: goal: collect_coal at coal]" in text
    assert info["achievements"] == ["collect_wood"] and info["goals"][1]["status"] == "failed"


# --- the container -----------------------------------------------------------------------------------------------


def _rollout(task_id: str, text: str, rollout_id: str, **policy_table: Any) -> dict[str, Any]:
    return {
        "rollout_id": rollout_id,
        "submission_mode": "sync",
        "task_id": task_id,
        "candidate_id": "c",
        "candidate": {"system_prompt": text},
        "policy": {"type": "scripted", **policy_table},
        "task": {"task_id": task_id},
        "metadata": {},
    }


@pytest.mark.anyio
async def test_program_task_info_and_taskset(client: httpx.AsyncClient) -> None:
    program = (await client.get("/program")).json()
    assert program["seed_candidate"] == {"system_prompt": policy.seed_plan()}
    assert program["target_modules"] == ["system_prompt"]
    assert program["modules"][0]["candidate_field"] == "system_prompt"
    assert "goal: collect_wood at tree" in policy.seed_plan()
    assert "Crafter" in (await client.get("/task_info")).json()["description"]
    metadata = (await client.get("/metadata")).json()
    assert metadata["metadata"]["optimizer_contracts"]["gepa"]["version"] == "synth_optimizers.gepa.v2"
    taskset = (await client.get("/taskset")).json()
    train_ids = taskset["splits"]["train"]["task_ids"]
    assert train_ids[:2] == ["train-000", "train-001"] and len(train_ids) == data.COUNT
    tasks = (await client.post("/taskset/tasks", json={"split": "test", "task_ids": ["test-005"]})).json()["tasks"]
    assert tasks == [{"task_id": "test-005", "world_seed": 20005, "split": "test"}]
    wrong = await client.post("/taskset/tasks", json={"split": "test", "task_ids": ["train-000"]})
    assert wrong.status_code == 404 and "train-000" in wrong.text


@pytest.mark.anyio
async def test_a_rollout_scores_the_achievements_and_explains_failures(client: httpx.AsyncClient) -> None:
    plan = "goal: collect_wood at tree until wood>=2\ngoal: place_table\ngoal: make_wood_pickaxe\ngoal: place_stone"
    reply = (await client.post("/rollout", json=_rollout("train-002", plan, "r-1"))).json()
    assert reply["rollout_id"] == "r-1" and reply["status"] == "completed"
    assert reply["reward_info"]["outcome_reward"] == 2.0  # collect_wood, place_table
    assert reply["reward_info"]["metrics"]["achievement_fraction"] == pytest.approx(2 / 22, abs=1e-6)
    assert reply["trace"]["achievements"] == ["collect_wood", "place_table"]
    assert reply["trace"]["world_seed"] == 10002 and reply["usage"]["total_tokens"] == 0
    side = reply["actionable_side_info"]
    assert side["inventory"]["wood"] == 0 and side["achievements"] == ["collect_wood", "place_table"]
    assert "make_wood_pickaxe needs wood>=1 (had 0) [source of wood: goal: collect_wood at tree]" in side["feedback"]
    assert (
        "place_stone needs stone>=1 (had 0) [source of stone: goal: collect_stone at stone (needs wood_pickaxe>=1)]"
        in side["feedback"]
    )
    pickaxe_first = "goal: collect_wood at tree\ngoal: make_wood_pickaxe"
    early = (await client.post("/rollout", json=_rollout("train-002", pickaxe_first, "r-2"))).json()
    assert (
        "make_wood_pickaxe needs a table nearby (within 1 tile) [source: goal: place_table (needs wood>=2)]"
        in early["actionable_side_info"]["feedback"]
    )
    assert reply["metadata"]["feedback"] == side["feedback"]
    metadata = (await client.get("/metadata")).json()["metadata"]
    assert metadata["served_rollouts"] == 2


@pytest.mark.anyio
async def test_bad_rollout_requests_get_a_4xx_naming_the_field(client: httpx.AsyncClient) -> None:
    unknown = await client.post("/rollout", json=_rollout("train-000", "x", "b-1", type="oracle"))
    assert unknown.status_code == 400 and "policy.type" in unknown.text and "oracle" in unknown.text
    no_model = await client.post("/rollout", json=_rollout("train-000", "x", "b-2", type="llm"))
    assert no_model.status_code == 400 and "policy.model" in no_model.text
    bad_steps = await client.post("/rollout", json=_rollout("train-000", "x", "b-3", config={"max_steps": "many"}))
    assert bad_steps.status_code == 422 and "policy.config.max_steps" in bad_steps.text
    bad_bound = await client.post("/rollout", json=_rollout("train-000", "x", "b-4", config={"max_llm_steps": 0}))
    assert bad_bound.status_code == 422 and "policy.config.max_llm_steps" in bad_bound.text
    no_candidate = _rollout("train-000", "x", "b-5")
    no_candidate["candidate"] = {"other": "x"}
    missing = await client.post("/rollout", json=no_candidate)
    assert missing.status_code == 422 and "candidate.system_prompt" in missing.text
    no_task = await client.post("/rollout", json=_rollout("train-999", "x", "b-6"))
    assert no_task.status_code == 404 and "train-999" in no_task.text
    bad_seed = _rollout("", "x", "b-7")
    bad_seed["task"] = {"world_seed": "ten"}
    seed_reply = await client.post("/rollout", json=bad_seed)
    assert seed_reply.status_code == 422 and "task.world_seed" in seed_reply.text
    assert (await client.get("/metadata")).json()["metadata"]["served_rollouts"] == 0


# --- the offline proposer ----------------------------------------------------------------------------------------


def _request(text: str, seeds: list[int]) -> ReflectionRequest:
    records = []
    for seed in seeds:
        played = policy.run_scripted(text, seed, 200)
        agent = played.agent
        info = feedback.scripted_feedback(agent.plan, played.episode, agent.logs, agent.rule_logs, agent.seen)
        records.append(
            ReflectiveRecord(
                task_id=f"train-{seed - 10000:03d}",
                task={"world_seed": seed},
                output={"achievements": played.episode.unlocked},
                reward=float(played.episode.reward),
                feedback=info["feedback"],
            )
        )
    return ReflectionRequest(
        candidate_id="c",
        candidate={"system_prompt": text},
        target_module="system_prompt",
        records=tuple(records),
        task_info="Crafter",
    )


def _converse(turn_text: str) -> list[dict[str, Any]]:
    return converse([sys.executable, str(PROPOSER)], turn_text)


def test_the_offline_proposer_speaks_the_app_server_protocol_as_a_pure_function() -> None:
    request = _request("goal: collect_wood at tree\ngoal: place_table", [10002, 10004])
    turn = render_prompt(request)
    replies = _converse(turn)
    by_id = {reply["id"]: reply for reply in replies if "id" in reply}
    assert "serverInfo" in by_id[1]["result"] and by_id[2]["result"] == {"thread": {"id": "thr-1"}}
    assert by_id[3]["result"]["turn"]["status"] == "inProgress"
    methods = [reply["method"] for reply in replies if "method" in reply]
    assert methods == ["turn/started", "item/completed", "thread/tokenUsage/updated", "turn/completed"]
    notifications = {reply["method"]: reply["params"] for reply in replies if "method" in reply}
    assert notifications["turn/completed"]["turn"]["status"] == "completed"
    (text,) = parse_reply(notifications["item/completed"]["item"]["text"])
    lines = text.splitlines()
    # place_table lacked a second piece of wood: the source the feedback named is inserted before it
    assert lines[:3] == ["goal: collect_wood at tree", "goal: collect_wood at tree until wood>=2", "goal: place_table"]
    # the achievements locked in every record are appended as goals, in the feedback's own words
    assert "goal: collect_drink at water" in lines and "goal: sleep until wake_up" in lines
    assert _converse(turn) == replies  # a fresh process answers the same
    assert parse_reply(proposer.reply_for_turn(turn)) == [text]  # and so does the function, twice
    assert parse_reply(proposer.reply_for_turn(turn)) == [text]


def test_the_proposers_edits_come_from_the_records_alone() -> None:
    record = {
        "task": {"world_seed": 1},
        "reward": 0.0,
        "feedback": (
            "reward 0 (achievements unlocked: none); 40 steps played; died at step 40: walked into lava\n"
            "drink ran out at step 30 [restore: goal: collect_drink at water]\n"
            "goal 1 `make_wood_sword`: failed at step 9: 5 presses of make_wood_sword changed nothing; "
            "make_wood_sword needs a table nearby (within 1 tile) [source: goal: place_table (needs wood>=2)]; "
            "make_wood_sword needs wood>=1 (had 0) [source of wood: goal: collect_wood at tree]"
        ),
    }
    (text,) = proposer.propose({"current_text": "goal: make_wood_sword", "records": [record], "proposals": 1})
    assert text.splitlines() == [
        "goal: collect_wood at tree until wood>=2",
        "goal: place_table",
        "goal: collect_wood at tree until wood>=1",
        "goal: make_wood_sword near table",
        "avoid: lava",
        "rule: if drink<3 then collect_drink at water",
    ]
    # the same request without records: nothing to learn, and the text says so
    (same,) = proposer.propose({"current_text": "goal: make_wood_sword", "records": [], "proposals": 1})
    assert same == "goal: make_wood_sword\n# the feedback suggested no change"


# --- the LLM policy ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_llm_policy_sends_the_candidate_and_the_observation_and_sums_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    replies = iter(["move_left", "I will go left: move_left.", "do", "nothing useful"])
    fake = FakeOpenAI(lambda prompt: next(replies), api_key="sk-test")
    monkeypatch.setenv("CRAFTER_TEST_KEY", "sk-test")
    table = {
        "type": "llm",
        "model": "m",
        "api_key_env": "CRAFTER_TEST_KEY",
        "config": {"input_cost_per_million": 2.0, "output_cost_per_million": 10.0},
    }
    with serve_fake_openai(fake) as url:
        played = await llm_policy.run_llm(
            "CANDIDATE PLAN TEXT", 10002, {**table, "base_url": url}, max_steps=200, max_llm_steps=4
        )
    assert played.actions == ["move_left", "move_left", "do", "noop"] and played.invalid == 1
    assert len(fake.requests) == 4
    first = fake.requests[0]
    assert first.body["messages"][0] == {"role": "system", "content": "CANDIDATE PLAN TEXT"}
    assert "status: health 9/9" in first.prompt and "map (9 wide, 7 tall" in first.prompt
    assert "make_wood_pickaxe" in first.prompt  # the action list
    prompt_tokens = sum(len(request.prompt.split()) for request in fake.requests)
    usage = played.usage
    assert usage["calls"] == 4 and usage["prompt_tokens"] == prompt_tokens and usage["completion_tokens"] == 9
    assert usage["cost_usd"] == pytest.approx((prompt_tokens * 2.0 + 9 * 10.0) / 1e6)


def _small_llm_config(folder: Path, base_url: str) -> Path:
    text = f"""
[run]
run_id = "crafter-llm"
output_dir = {json.dumps(str(folder / "runs"))}

[container]
command = [{json.dumps(sys.executable)}, {json.dumps(str(COOKBOOK / "container.py"))}, "--port", "{{port}}"]
startup_timeout_seconds = 60

[dataset]
train_ids = ["train-002", "train-004"]
heldout_ids = ["test-000"]

[policy]
type = "llm"
model = "fake"
base_url = {json.dumps(base_url)}
config = {{ max_steps = 50, max_llm_steps = 2, input_cost_per_million = 1000.0, output_cost_per_million = 2000.0 }}

[proposer]
backend = "codex_app_server"
command = [{json.dumps(sys.executable)}, {json.dumps(str(PROPOSER))}]
cost_per_million_input_tokens = 0.0  # the offline proposer is free
cost_per_million_output_tokens = 0.0
timeout_seconds = 60

[gepa]
max_train_rollouts = 6
max_heldout_rollouts = 2
minibatch_size = 1

[cache]
mode = "off"
"""
    path = folder / "llm.toml"
    path.write_text(text)
    return path


@pytest.mark.anyio
async def test_a_whole_run_with_the_llm_policy_reports_its_usage_and_cost(tmp_path: Path) -> None:
    fake = FakeOpenAI(lambda prompt: "do", models=("fake",))
    with serve_fake_openai(fake) as url:
        result = await GepaRun(load_config(_small_llm_config(tmp_path, url))).execute_async()
    assert result.status == "completed"
    rollouts = result.rollouts_used["train"] + result.rollouts_used["heldout"]
    assert rollouts >= 3 and len(fake.requests) == 2 * rollouts  # two model calls per episode
    assert all(request.body["messages"][0]["role"] == "system" for request in fake.requests)
    assert any("goal: collect_wood at tree" in request.body["messages"][0]["content"] for request in fake.requests)
    usage = result.usage["rollout"]
    prompt_tokens = sum(len(request.prompt.split()) for request in fake.requests)
    assert usage["prompt_tokens"] == prompt_tokens and usage["completion_tokens"] == len(fake.requests)
    assert usage["cost_usd"] == pytest.approx((prompt_tokens * 1000.0 + len(fake.requests) * 2000.0) / 1e6)
    assert result.cost_usd is not None and result.cost_usd >= usage["cost_usd"] > 0


# --- the offline config through the CLI --------------------------------------------------------------------------


def small_offline_config(folder: Path) -> Path:
    changes = {
        'output_dir = "../../runs"': 'output_dir = "runs"\nrun_id = "crafter-small"',
        "train_ids = { count = 12 }": "train_ids = { count = 6 }",
        "pareto_ids = { count = 6 }": "pareto_ids = { count = 3 }",
        "heldout_ids = { count = 20 }": "heldout_ids = { count = 3 }",
        "max_train_rollouts = 160": "max_train_rollouts = 36",
        "max_heldout_rollouts = 40": "max_heldout_rollouts = 6",
        "max_total_rollouts = 200": "max_total_rollouts = 42",
        "minibatch_size = 4": "minibatch_size = 3",
        'mode = "off"': 'mode = "readwrite"',
    }
    return offline_config(COOKBOOK, folder, changes)


def test_the_offline_config_passes_the_three_run_acceptance_and_improves_heldout(tmp_path: Path) -> None:
    done = run_accept(small_offline_config(tmp_path), timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fresh vs cached: identical" in done.stdout and "fresh vs readonly: identical" in done.stdout
    assert done.stdout.strip().endswith("acceptance passed")
    manifest = json.loads((tmp_path / "runs" / "crafter-small-fresh" / "result_manifest.json").read_text())
    assert manifest["seed_heldout_score"] == 1.0  # the seed plan collects one piece of wood
    assert manifest["best_heldout_score"] > manifest["seed_heldout_score"]
    assert manifest["rollouts_used"]["train"] <= 36 and manifest["rollouts_used"]["heldout"] <= 6
    assert_planned(tmp_path / "gepa.toml", manifest)  # gepa plan forecast this run's use
    assert manifest["accepted"] >= 1
