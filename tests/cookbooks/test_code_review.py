"""The code-review cookbook: the diffs and their splits, the F1 reward, the checklist and LLM policies, the
container routes, the offline proposer, and whole runs through real processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from code_review import container, diffs, offline_proposer, policy, scoring
from synth_opt import GepaRun
from synth_opt.gepa.rebase import repeats_edit
from synth_opt.proposers.reflection import (
    ConcurrentEdit,
    ReflectionRequest,
    ReflectiveRecord,
    parse_reply,
    render_prompt,
)
from synth_opt.testing import converse
from synth_opt.testing.fake_openai import FakeOpenAI, serve_fake_openai

from ..cookbook_runs import assert_planned, offline_config, run_accept

COOKBOOKS = Path(__file__).resolve().parents[2] / "cookbooks"

COOKBOOK = COOKBOOKS / "code_review"
PROPOSER = COOKBOOK / "offline_proposer.py"
TASKS = diffs.tasks()
ALL_TASKS = [task for split in diffs.SPLITS for task in TASKS[split]]


@pytest.fixture
async def client() -> Any:
    app = container.build_container().fastapi()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://code-review") as http:
        yield http


def _findings(checklist: str, task: diffs.Task) -> list[tuple[int, str]]:
    return [(finding.line, finding.category) for finding in policy.review(checklist, task.diff)]


def _mean_f1(checklist: str, split: str) -> float:
    scores = [scoring.score_findings(_findings(checklist, task), task.defects).f1 for task in TASKS[split]]
    return sum(scores) / len(scores)


# --- the diffs --------------------------------------------------------------------------------------------------


def test_the_diffs_are_many_small_and_labelled_on_added_lines() -> None:
    defective = [task for task in ALL_TASKS if task.defects]
    clean = [task for task in ALL_TASKS if not task.defects]
    assert len(defective) >= 48 and len(clean) >= 8
    assert all(TASKS[split] and any(not task.defects for task in TASKS[split]) for split in diffs.SPLITS)
    assert [task.task_id for task in TASKS["train"]] == [f"train-{i:02d}" for i in range(1, len(TASKS["train"]) + 1)]
    languages = {task.language for task in ALL_TASKS}
    assert {"python", "javascript", "shell", "sql"} <= languages
    for task in ALL_TASKS:
        added = policy.added_lines(task.diff)
        assert task.diff.startswith(f"--- a/{task.path}\n+++ b/{task.path}\n@@ ")
        assert "#!!" not in task.diff
        for line, category in task.defects:
            assert category in diffs.CATEGORIES
            assert line in added, (task.task_id, line)
        assert set(task.row()) == {"task_id", "path", "language", "diff"}  # the row carries no answers
    for category in diffs.CATEGORIES:  # every category is learnable on train and tested on heldout
        for split in diffs.SPLITS:
            assert any(category == c for task in TASKS[split] for _, c in task.defects), (category, split)


def test_hunk_headers_count_the_lines_they_hold() -> None:
    for task in ALL_TASKS:
        header = task.diff.splitlines()[2]
        old_start, old_count, new_start, new_count = (int(n) for n in _numbers(header))
        body = task.diff.splitlines()[3:]
        assert old_count == sum(line[:1] in " -" for line in body), task.task_id
        assert new_count == sum(line[:1] in " +" for line in body), task.task_id
        numbered = policy.parse_diff(task.diff)
        assert numbered[0].new in (new_start, None) and numbered[0].old in (old_start, None)


def _numbers(header: str) -> list[str]:
    match = re.match(r"^@@ -(\d+),(\d+) \+(\d+),(\d+) @@$", header)
    assert match, header
    return list(match.groups())


def test_heldout_diffs_share_no_code_with_train_diffs() -> None:
    """No heldout diff reuses a train diff's code: no added statement of three or more tokens appears in both
    splits (the only shorter lines in common are bare keywords like ``try:`` and ``except:``), and no file path
    or diff is shared."""

    def statements(split: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for task in TASKS[split]:
            for text in policy.added_lines(task.diff).values():
                if len(policy.tokenize(text)) >= 3:
                    found[text.strip()] = task.task_id
        return found

    train, test = statements("train"), statements("test")
    shared = sorted(set(train) & set(test))
    assert not shared, [(line, train[line], test[line]) for line in shared]
    assert not {task.path for task in TASKS["train"]} & {task.path for task in TASKS["test"]}
    short = {
        text.strip()
        for task in TASKS["test"]
        for text in policy.added_lines(task.diff).values()
        if len(policy.tokenize(text)) < 3
    }
    assert short <= {"try:", "except:", "pass", "}", ");", "return True", "return False", ""}, short


# --- the reward ---------------------------------------------------------------------------------------------------


def test_the_known_findings_score_one_and_an_empty_review_scores_by_cleanliness() -> None:
    for task in ALL_TASKS:
        assert scoring.score_findings(task.defects, task.defects).f1 == 1.0
        empty = scoring.score_findings([], task.defects)
        assert empty.f1 == (0.0 if task.defects else 1.0), task.task_id
    clean = next(task for task in ALL_TASKS if not task.defects)
    assert scoring.score_findings([(3, "race")], clean.defects).f1 == 0.0


def test_partial_reviews_score_their_f1_with_a_one_line_tolerance() -> None:
    defects = [(10, "sql_injection"), (20, "race")]
    score = scoring.score_findings
    assert score([(10, "sql_injection")], defects).f1 == pytest.approx(2 / 3)  # precision 1, recall 1/2
    assert score([(11, "sql_injection"), (20, "null_check")], defects).f1 == pytest.approx(0.5)  # 1 of 2, 1 of 2
    assert score([(9, "sql_injection"), (21, "race")], defects).f1 == 1.0  # within one line counts
    assert score([(12, "sql_injection"), (18, "race")], defects).f1 == 0.0  # two lines off does not
    assert score([(10, "sql_injection")] * 3, defects).f1 == pytest.approx(2 / 3)  # duplicates count once
    result = score([(10, "sql_injection"), (11, "sql_injection"), (20, "race")], defects)
    assert (result.tp, result.false_positives, result.missed) == (2, [(11, "sql_injection")], [])
    assert result.f1 == pytest.approx(0.8) and result.precision == pytest.approx(2 / 3) and result.recall == 1.0
    # one finding never counts for two defects; the matching is a maximum one, not greedy by distance
    twin = [(10, "race"), (11, "race")]
    assert score([(10, "race")], twin).f1 == pytest.approx(2 / 3)
    assert score([(11, "race"), (12, "race")], twin).f1 == 1.0


def test_feedback_names_the_lines_and_the_rules() -> None:
    task = next(task for task in TASKS["train"] if task.path == "auth/passwords.py")
    findings = policy.review(policy.seed_checklist(), task.diff)
    assert [(f.line, f.category, f.rule) for f in findings] == [(28, "hardcoded_secret", "password")]
    score = scoring.score_findings([(f.line, f.category) for f in findings], task.defects)
    text = scoring.render_feedback(score, policy.added_lines(task.diff), {(28, "hardcoded_secret"): "password"})
    assert text.splitlines() == [
        "F1 0.00: 0 correct, 1 false positive(s), 1 missed (a finding counts when its category is right and its "
        "line is within 1 of the defect's).",
        "false positive: line 28 hardcoded_secret (rule `password`): "
        "return hashlib.md5(salt + password.encode()).hexdigest()",
        "missed: line 28 weak_hash: return hashlib.md5(salt + password.encode()).hexdigest()",
    ]
    assert scoring.render_feedback(scoring.score_findings([], []), {}) == "F1 1.00: no defects and no findings."


# --- the checklist policy -----------------------------------------------------------------------------------------

DIFF = """\
--- a/m.py
+++ b/m.py
@@ -4,3 +4,6 @@
 def f(a, seen=None):
-    return run(a)
+    try:
+        return run(a, cache=[])
+    except:
+        apiKey = "abc"
     x = 1
"""


def test_diff_lines_are_numbered_in_the_new_file() -> None:
    assert policy.added_lines(DIFF) == {
        5: "    try:",
        6: "        return run(a, cache=[])",
        7: "    except:",
        8: '        apiKey = "abc"',
    }
    kinds = [(line.kind, line.old, line.new) for line in policy.parse_diff(DIFF)]
    assert kinds[:2] == [(" ", 4, 4), ("-", 5, None)]
    assert kinds[2:] == [("+", None, 5), ("+", None, 6), ("+", None, 7), ("+", None, 8), (" ", 6, 9)]


def test_tokens_are_generic_code_tokens() -> None:
    assert policy.tokenize('API_KEY = "sk-1"') == ("api", "key", "=", policy.STR)
    assert policy.tokenize("const apiKey = `x${y}`;") == ("const", "api", "key", "=", policy.FSTR, ";")
    assert policy.tokenize("if a <= len(xs):") == ("if", "a", "<=", "len", "(", "xs", ")", ":")
    assert policy.tokenize("cur.execute(f'SELECT {x}')") == ("cur", ".", "execute", "(", policy.FSTR, ")")
    assert policy.tokenize_phrase("execute ( FSTR ... )") == ("execute", "(", policy.FSTR, policy.GAP, ")")
    assert policy.tokenize_phrase(policy.render_phrase(("key", "=", policy.STR))) == ("key", "=", policy.STR)


def test_checklist_policy_follows_only_the_prompt() -> None:
    def found(checklist: str) -> list[tuple[int, str]]:
        return [(f.line, f.category) for f in policy.review(checklist, DIFF)]

    assert found("") == [] and found("just prose, no rules\n- not a rule line") == []
    assert found("- bare_except: `except :`") == [(7, "bare_except")]
    assert found("- whatever: `except :`") == [(7, "whatever")]  # the category is only a name
    assert found("- mutable_default: `= [ ] )`") == [(6, "mutable_default")]  # not line 4's `=None)`
    assert found("- hardcoded_secret: `key = STR`") == [(8, "hardcoded_secret")]  # apiKey -> api key
    assert found("- x: `return ... cache`") == [(6, "x")]  # a gap
    assert found("- x: `/^\\s+try:$/`") == [(5, "x")]  # a regex on the raw line
    assert found("- x: `return`, `=` unless `[ ]`") == [(8, "x")]
    assert found("- a: `except`\n- b: `except`\n- a: `:`") == [(5, "a"), (7, "a"), (7, "b")]
    assert policy.parse_checklist("- x: `/(/`").problems and found("- x: `/(/`") == []
    seed = policy.seed_checklist()
    assert [rule.category for rule in policy.parse_checklist(seed).rules] == ["bare_except", "hardcoded_secret"]


def test_the_seed_is_weak_but_not_empty() -> None:
    seed = policy.seed_checklist()
    train, test = _mean_f1(seed, "train"), _mean_f1(seed, "test")
    assert 0.1 < train < 0.35 and 0.1 < test < 0.35
    caught = sum(
        scoring.score_findings(_findings(seed, task), task.defects).tp for task in TASKS["test"] if task.defects
    )
    assert 0 < caught <= 5  # it finds a few heldout defects, not only the clean diffs


def test_llm_replies_are_parsed_from_json_or_lines() -> None:
    parse = policy.parse_findings_reply

    def pairs(text: str) -> list[tuple[int, str]]:
        return [(f.line, f.category) for f in parse(text)]

    assert pairs('[{"line": 12, "category": "sql_injection"}]') == [(12, "sql_injection")]
    assert pairs('{"findings": [{"line": "3", "category": "Race"}]}') == [(3, "race")]
    assert pairs('{"line": 4, "category": "race"}\n{"line": 9, "category": "weak_hash"}') == [
        (4, "race"),
        (9, "weak_hash"),
    ]
    assert pairs("12: sql_injection\n- line 14: off-by-one (the loop runs past the end)\n12: sql_injection") == [
        (12, "sql_injection"),
        (14, "off_by_one"),
    ]
    assert pairs('```json\n[{"line": 2, "category": "race"}]\n```') == [(2, "race")]
    assert pairs("No defects found.") == [] and pairs("none") == []


# --- the container routes -----------------------------------------------------------------------------------------


def _rollout(task_id: str, prompt: str, rollout_id: str, policy_table: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "rollout_id": rollout_id,
        "submission_mode": "sync",
        "task_id": task_id,
        "candidate_id": "c",
        "candidate": {"system_prompt": prompt},
        "policy": policy_table if policy_table is not None else {"type": "checklist"},
        "task": {"task_id": task_id},
        "metadata": {},
    }


@pytest.mark.anyio
async def test_program_task_info_and_metadata(client: httpx.AsyncClient) -> None:
    program = (await client.get("/program")).json()
    seed = policy.seed_checklist()
    assert program["seed_candidate"] == {"system_prompt": seed}
    assert program["target_modules"] == ["system_prompt"]
    (module,) = program["modules"]
    assert module == {
        "module_id": "reviewer",
        "role": "system",
        "content": seed,
        "mutable": True,
        "candidate_field": "system_prompt",
    }
    info = (await client.get("/task_info")).json()
    assert "F1" in info["description"] and "sql_injection" in info["description"]
    metadata = (await client.get("/metadata")).json()
    assert metadata["metadata"]["optimizer_contracts"]["gepa"]["version"] == "synth_optimizers.gepa.v2"
    assert (await client.get("/health")).json()["status"] == "ok"


@pytest.mark.anyio
async def test_taskset_and_tasks(client: httpx.AsyncClient) -> None:
    taskset = (await client.get("/taskset")).json()
    for split in diffs.SPLITS:
        assert taskset["splits"][split]["task_ids"] == [task.task_id for task in TASKS[split]]
        assert taskset["splits"][split]["count"] == len(TASKS[split])
    assert taskset["labels"] == list(diffs.CATEGORIES)
    wanted = ["test-03", "test-01"]
    rows = (await client.post("/taskset/tasks", json={"split": "test", "task_ids": wanted})).json()["tasks"]
    assert [row["task_id"] for row in rows] == wanted
    assert rows[1]["diff"] == TASKS["test"][0].diff and "defects" not in rows[1]
    wrong_split = await client.post("/taskset/tasks", json={"split": "train", "task_ids": ["test-01"]})
    assert wrong_split.status_code == 404 and "test-01" in wrong_split.text
    no_split = await client.post("/taskset/tasks", json={"split": "dev", "task_ids": []})
    assert no_split.status_code == 404 and "dev" in no_split.text
    not_a_list = await client.post("/taskset/tasks", json={"split": "train", "task_ids": "train-01"})
    assert not_a_list.status_code == 422 and "task_ids" in not_a_list.text


@pytest.mark.anyio
async def test_rollout_rewards_the_f1_and_explains_it(client: httpx.AsyncClient) -> None:
    task = next(task for task in TASKS["train"] if task.path == "files/checksum.py")  # weak_hash + wrong_operator
    assert task.defects == ((13, "weak_hash"), (17, "wrong_operator"))
    checklist = "- weak_hash: `sha1`\n- wrong_operator: `!= none`\n- race: `with open`"
    perfect = (await client.post("/rollout", json=_rollout(task.task_id, checklist, "r-1"))).json()
    assert perfect["rollout_id"] == "r-1" and perfect["status"] == "completed"
    assert perfect["reward_info"]["outcome_reward"] == 1.0
    assert perfect["trace"]["findings"] == [
        {"line": 13, "category": "weak_hash", "rule": "sha1"},
        {"line": 17, "category": "wrong_operator", "rule": "!= none"},
    ]
    assert perfect["usage"]["total_tokens"] == 0 and perfect["usage"]["cost_usd"] == 0.0
    partial = (await client.post("/rollout", json=_rollout(task.task_id, "- weak_hash: `digest`", "r-2"))).json()
    # `digest` fires on lines 13 and 17: one correct, one false positive, wrong_operator missed -> 2/4
    assert partial["reward_info"]["outcome_reward"] == pytest.approx(0.5)
    feedback = partial["actionable_side_info"]["feedback"]
    assert feedback == partial["metadata"]["feedback"]
    assert feedback.splitlines()[1:] == [
        "correct: line 13 weak_hash (rule `digest`)",
        "false positive: line 17 weak_hash (rule `digest`): if previous != None and previous != digest.hexdigest():",
        "missed: line 17 wrong_operator: if previous != None and previous != digest.hexdigest():",
    ]
    assert partial["trace"]["missed"] == [{"line": 17, "category": "wrong_operator"}]
    clean = TASKS["test"][-1]
    assert not clean.defects
    empty = (await client.post("/rollout", json=_rollout(clean.task_id, "", "r-3"))).json()
    assert empty["reward_info"]["outcome_reward"] == 1.0
    await client.post("/rollout", json=_rollout(task.task_id, checklist, "r-1"))  # a repeated id is counted once
    assert (await client.get("/metadata")).json()["metadata"]["served_rollouts"] == 3


@pytest.mark.anyio
async def test_rollout_rejects_bad_input_naming_the_field(client: httpx.AsyncClient) -> None:
    async def post(body: dict[str, Any]) -> httpx.Response:
        return await client.post("/rollout", json=body)

    unknown_policy = await post(_rollout("train-01", "", "b-1", {"type": "oracle"}))
    assert (
        unknown_policy.status_code == 400 and "policy.type" in unknown_policy.text and "oracle" in unknown_policy.text
    )
    no_model = await post(_rollout("train-01", "", "b-2", {"type": "llm"}))
    assert no_model.status_code == 400 and "policy.model" in no_model.text
    no_key = await post(_rollout("train-01", "", "b-3", {"type": "llm", "model": "m", "api_key_env": "CR_NO_KEY"}))
    assert no_key.status_code == 400 and "CR_NO_KEY" in no_key.text
    no_candidate = _rollout("train-01", "", "b-4")
    no_candidate["candidate"] = {"other": "x"}
    response = await post(no_candidate)
    assert response.status_code == 422 and "candidate.system_prompt" in response.text
    bad_policy = _rollout("train-01", "", "b-5")
    bad_policy["policy"] = "checklist"
    response = await post(bad_policy)
    assert response.status_code == 422 and "policy" in response.text
    unknown_task = await post(_rollout("train-99", "", "b-6"))
    assert unknown_task.status_code == 404 and "train-99" in unknown_task.text
    bad_defects = _rollout("x-1", "", "b-7")
    bad_defects["task"] = {"task_id": "x-1", "diff": DIFF, "defects": [{"line": "seven"}]}
    response = await post(bad_defects)
    assert response.status_code == 422 and "task.defects" in response.text
    assert (await client.get("/metadata")).json()["metadata"]["served_rollouts"] == 0
    inline = _rollout("x-1", "- bare_except: `except :`", "b-8")
    inline["task"] = {"task_id": "x-1", "diff": DIFF, "defects": [{"line": 7, "category": "bare_except"}]}
    assert (await post(inline)).json()["reward_info"]["outcome_reward"] == 1.0


# --- the LLM policy against a fake OpenAI-compatible server -------------------------------------------------------


def _fake_reviewer(prompt: str) -> str:
    """A stand-in model: flags `except:` lines of the diff it is given, as JSON lines."""
    findings = [
        json.dumps({"line": line, "category": "bare_except"})
        for line, text in policy.added_lines(prompt).items()
        if text.strip() == "except:"
    ]
    return "\n".join(findings) or "no findings"


@pytest.mark.anyio
async def test_llm_policy_sends_the_candidate_as_system_prompt_and_prices_usage(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CR_TEST_KEY", "sk-test")
    fake = FakeOpenAI(_fake_reviewer, api_key="sk-test")
    task = next(task for task in TASKS["train"] if task.path == "plugins/loader.py")
    with serve_fake_openai(fake) as base_url:
        table = {
            "type": "llm",
            "model": "fake-reviewer",
            "base_url": base_url,
            "api_key_env": "CR_TEST_KEY",
            "max_tokens": 64,
            "config": {"input_cost_per_million": 2.0, "output_cost_per_million": 10.0},
        }
        findings, reply, usage = await policy.predict_llm("CHECK THE EXCEPTS", task.diff, table)
        reply_body = (await client.post("/rollout", json=_rollout(task.task_id, "MY CHECKLIST", "l-1", table))).json()
    assert [(f.line, f.category) for f in findings] == list(task.defects) == [(28, "bare_except")]
    assert reply == '{"line": 28, "category": "bare_except"}'
    first, second = fake.requests
    assert first.body["messages"] == [
        {"role": "system", "content": "CHECK THE EXCEPTS"},
        {"role": "user", "content": task.diff},
    ]
    assert second.body["messages"][0] == {"role": "system", "content": "MY CHECKLIST"}
    assert first.body["model"] == "fake-reviewer" and first.body["max_tokens"] == 64
    words = len(task.diff.split())
    assert usage == {
        "calls": 1,
        "prompt_tokens": words,
        "completion_tokens": 4,
        "total_tokens": words + 4,
        "cost_usd": pytest.approx((words * 2.0 + 4 * 10.0) / 1e6),
    }
    assert reply_body["reward_info"]["outcome_reward"] == 1.0
    assert reply_body["usage"]["total_tokens"] == words + 4 and reply_body["usage"]["cost_usd"] > 0
    assert reply_body["trace"]["reply"] == reply


def test_a_small_run_with_the_llm_policy_reports_its_usage_and_cost(tmp_path: Path) -> None:
    fake = FakeOpenAI(_fake_reviewer, models=("fake-reviewer",))
    with serve_fake_openai(fake) as base_url:
        config = tmp_path / "gepa.toml"
        config.write_text(
            f"""
[run]
run_id = "code-review-llm"
output_dir = "runs"

[container]
command = [{json.dumps(sys.executable)}, {json.dumps(str(COOKBOOK / "container.py"))}, "--port", "{{port}}"]
startup_timeout_seconds = 30

[dataset]
train_ids = ["train-02", "train-30", "train-01", "train-13"]
heldout_ids = ["test-02", "test-24"]

[policy]
type = "llm"
model = "fake-reviewer"
base_url = "{base_url}"
max_tokens = 64
config = {{ input_cost_per_million = 1.0, output_cost_per_million = 4.0 }}

[proposer]
backend = "codex_app_server"
command = [{json.dumps(sys.executable)}, {json.dumps(str(PROPOSER))}]
cost_per_million_input_tokens = 0.0  # the offline proposer is free
cost_per_million_output_tokens = 0.0
timeout_seconds = 30

[gepa]
max_train_rollouts = 16
minibatch_size = 2
candidate_selector = "current_best"

[cache]
mode = "off"
"""
        )
        result = GepaRun.from_toml(config).execute()
    rollout = result.usage["rollout"]
    assert rollout["calls"] == len(fake.requests) == result.rollouts_used["total"] > 4  # one chat call a rollout
    assert rollout["prompt_tokens"] == sum(len(request.prompt.split()) for request in fake.requests)
    assert rollout["total_tokens"] > rollout["prompt_tokens"] > 0
    assert rollout["cost_usd"] == pytest.approx((rollout["prompt_tokens"] + 4 * rollout["completion_tokens"]) / 1e6)
    assert result.usage["total"]["total_tokens"] >= rollout["total_tokens"]
    assert result.cost_usd >= rollout["cost_usd"] > 0
    seed = policy.seed_checklist()
    assert all(request.body["messages"][0]["content"] for request in fake.requests)
    assert any(request.body["messages"][0]["content"] == seed for request in fake.requests)
    assert result.seed_train_score == pytest.approx(0.75)  # both `except:` diffs and the clean one: 1; the SQL one: 0
    manifest = json.loads(Path(result.manifest_path).read_text())
    assert manifest["usage"]["rollout"]["total_tokens"] == rollout["total_tokens"]


# --- the offline proposer -----------------------------------------------------------------------------------------


def _record(task: diffs.Task, checklist: str) -> ReflectiveRecord:
    findings = policy.review(checklist, task.diff)
    score = scoring.score_findings([(f.line, f.category) for f in findings], task.defects)
    rules = {(f.line, f.category): f.rule for f in findings}
    return ReflectiveRecord(
        task_id=task.task_id,
        task=task.row(),
        output={"findings": [f.to_json() for f in findings]},
        reward=score.f1,
        feedback=scoring.render_feedback(score, policy.added_lines(task.diff), rules),
    )


def _request(checklist: str, paths: list[str], proposals: int = 1) -> ReflectionRequest:
    chosen = [next(task for task in TASKS["train"] if task.path == path) for path in paths]
    return ReflectionRequest(
        candidate_id="parent",
        candidate={"system_prompt": checklist},
        target_module="system_prompt",
        records=tuple(_record(task, checklist) for task in chosen),
        task_info=container.TASK_DESCRIPTION,
        proposals=proposals,
    )


MINIBATCH = ["auth/passwords.py", "web/forms.py", "cart/cart.py", "search/index.py", "plugins/loader.py"]


def test_offline_proposer_learns_rules_from_missed_lines_and_drops_false_positives() -> None:
    seed = policy.seed_checklist()
    request = _request(seed, MINIBATCH)
    (text,) = offline_proposer.propose(request.to_json())
    rules = {rule.category: [p.source for p in rule.patterns] for rule in policy.parse_checklist(text).rules}
    # `password` fired on three lines that are not secrets and caught no defect here: it goes, and its rule too
    assert "hardcoded_secret" not in rules
    # each missed line gave a pattern that the line matches and no other line of the minibatch diffs does
    assert set(rules) == {"weak_hash", "mutable_default", "bare_except"}
    assert text.splitlines()[:3] == seed.splitlines()[:3]  # prose and untouched rules stay as written
    chosen = [task for task in TASKS["train"] if task.path in MINIBATCH]
    before = sum(scoring.score_findings(_findings(seed, t), t.defects).f1 for t in chosen)
    after = sum(scoring.score_findings(_findings(text, t), t.defects).f1 for t in chosen)
    assert before < len(chosen) - 2 and after == len(chosen)
    # what it learned carries over to heldout diffs it never saw
    assert _mean_f1(text, "test") > _mean_f1(seed, "test")


def test_offline_proposer_fences_a_rule_that_also_catches_defects() -> None:
    checklist = "- hardcoded_secret: `password`"
    request = _request(checklist, ["config/settings.py", "web/forms.py"])
    (text,) = offline_proposer.propose(request.to_json())
    (rule,) = policy.parse_checklist(text).rules
    assert [p.source for p in rule.patterns] == ["password"] and rule.exceptions
    settings, forms = (next(t for t in TASKS["train"] if t.path == p) for p in ("config/settings.py", "web/forms.py"))
    assert _findings(text, settings) == list(settings.defects) and _findings(text, forms) == []


def test_offline_proposer_is_a_pure_function_with_distinct_proposals() -> None:
    request = _request(policy.seed_checklist(), MINIBATCH, proposals=3)
    turn = render_prompt(request)
    first = parse_reply(offline_proposer.reply_for_turn(turn), wanted=3)
    assert len(first) == 3 == len(set(first))
    assert parse_reply(offline_proposer.reply_for_turn(turn), wanted=3) == first
    assert offline_proposer.propose(json.loads(json.dumps(request.to_json()))) == first
    perfect = _request("- mutable_default: `= [ ] )`, `= [ ] ,`", ["cart/cart.py", "search/index.py"])
    assert offline_proposer.propose(perfect.to_json()) == [perfect.candidate["system_prompt"]]  # nothing to fix


def test_offline_proposer_asked_again_passes_over_the_edits_in_flight() -> None:
    """``gepa.pipeline.concurrent_edits``: asked again with another proposal's version of the checklist, the
    proposer passes over its variants that repeat that edit and answers with the next one (the evidence allows
    three distinct ones here)."""
    request = _request(policy.seed_checklist(), MINIBATCH, proposals=3)
    current = request.candidate["system_prompt"]
    variants = parse_reply(offline_proposer.reply_for_turn(render_prompt(request)), wanted=3)
    single = replace(request, proposals=1)
    (first,) = parse_reply(offline_proposer.reply_for_turn(render_prompt(single)))
    assert first == variants[0]
    again = replace(single, concurrent_edits=(ConcurrentEdit(2, first),))
    (second,) = parse_reply(offline_proposer.reply_for_turn(render_prompt(again)))
    assert second in variants[1:]
    assert not repeats_edit({"p": current}, {"p": second}, {"p": first})


def _converse(turn_text: str) -> list[dict[str, Any]]:
    return converse([sys.executable, str(PROPOSER)], turn_text, extra=[{"id": 4, "method": "no/such"}])


def test_offline_proposer_speaks_the_app_server_protocol() -> None:
    request = _request(policy.seed_checklist(), MINIBATCH)
    replies = _converse(render_prompt(request))
    by_id = {reply["id"]: reply for reply in replies if "id" in reply}
    assert "serverInfo" in by_id[1]["result"]
    assert by_id[2]["result"] == {"thread": {"id": "thr-1"}}
    assert by_id[3]["result"]["turn"]["status"] == "inProgress"
    assert by_id[4]["error"]["code"] == -32601
    methods = [reply["method"] for reply in replies if "method" in reply]
    assert methods == ["turn/started", "item/completed", "thread/tokenUsage/updated", "turn/completed"]
    notifications = {reply["method"]: reply["params"] for reply in replies if "method" in reply}
    assert notifications["turn/completed"]["turn"]["status"] == "completed"
    assert notifications["thread/tokenUsage/updated"]["tokenUsage"]["total"]["totalTokens"] > 0
    item = notifications["item/completed"]["item"]
    assert item["type"] == "agentMessage"
    assert parse_reply(item["text"]) == offline_proposer.propose(request.to_json())
    assert _converse(render_prompt(request)) == replies  # a fresh process answers the same
    failed = _converse("no reflection block here")
    completed = next(reply for reply in failed if reply.get("method") == "turn/completed")
    assert completed["params"]["turn"]["status"] == "failed"


# --- whole runs through the CLI -----------------------------------------------------------------------------------


def small_config(folder: Path, *, budget: int = 300, cache: str = "off") -> Path:
    changes = {
        "max_train_rollouts = 1000": f"max_train_rollouts = {budget}",
        "max_total_rollouts = 1048": f"max_total_rollouts = {budget + 48}",
        'mode = "off"': f'mode = "{cache}"',
    }
    return offline_config(COOKBOOK, folder, changes)


def test_a_reduced_offline_run_improves_heldout_f1(tmp_path: Path) -> None:
    config = small_config(tmp_path, budget=200)
    done = subprocess.run(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(config), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((tmp_path / "runs" / "latest" / "result_manifest.json").read_text())
    assert manifest["seed_heldout_score"] == pytest.approx(_mean_f1(policy.seed_checklist(), "test"))
    assert manifest["best_heldout_score"] > manifest["seed_heldout_score"] + 0.1
    assert manifest["rollouts_used"]["train"] <= 200 and manifest["rollouts_used"]["heldout"] <= 48
    assert manifest["stop_reason"] == "max_train_rollouts"
    assert_planned(config, manifest)  # gepa plan forecast this run's use
    best = manifest["best_candidate"]["system_prompt"]
    assert best != policy.seed_checklist()
    assert _mean_f1(best, "test") == pytest.approx(manifest["best_heldout_score"])


def test_the_three_run_acceptance_passes(tmp_path: Path) -> None:
    done = run_accept(small_config(tmp_path, budget=120, cache="readwrite"), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fresh vs cached: identical" in done.stdout and "fresh vs readonly: identical" in done.stdout
    assert done.stdout.strip().endswith("acceptance passed")
