"""The Banking77 cookbook: data lookup, the keyword policy, the container routes and the offline proposer."""

from __future__ import annotations

import json
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from banking77 import container, data, offline_proposer, policy
from synth_opt.gepa.rebase import repeats_edit
from synth_opt.proposers.reflection import (
    ConcurrentEdit,
    ReflectionRequest,
    ReflectiveRecord,
    parse_reply,
    render_prompt,
)
from synth_opt.testing import converse

COOKBOOKS = Path(__file__).resolve().parents[2] / "cookbooks"

PROPOSER = COOKBOOKS / "banking77" / "offline_proposer.py"


@pytest.fixture(scope="module")
def source() -> data.DataSource:
    return data.load()


@pytest.fixture
async def client(source: data.DataSource) -> Any:
    app = container.build_container(source).fastapi()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://banking77") as http:
        yield http


# --- data -------------------------------------------------------------------------------------------------------


def _write_data(directory: Path, rows: list[tuple[str, str]], labels: list[str]) -> Path:
    directory.mkdir(parents=True)
    lines = "text,category\n" + "".join(f'"{text}",{label}\n' for text, label in rows)
    (directory / "train.csv").write_text(lines, encoding="utf-8")
    (directory / "test.csv").write_text(lines, encoding="utf-8")
    (directory / "categories.json").write_text(json.dumps(labels), encoding="utf-8")
    return directory


def test_data_lookup_order_flag_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag = _write_data(tmp_path / "flag", [("one", "a_b")], ["a_b"])
    env = _write_data(tmp_path / "env", [("two", "c_d"), ("three", "c_d")], ["c_d"])
    monkeypatch.setenv(data.ENV_VAR, str(env))
    assert data.load(flag).kind == "flag"
    from_env = data.load()
    assert (from_env.kind, from_env.path, len(from_env.train_rows)) == ("env", str(env), 2)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="missing"):
        data.load()


def test_data_falls_back_to_the_project_sample_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("BANKING77_NO_DOWNLOAD", "1")
    monkeypatch.setattr(data, "shared_data_dir", lambda: tmp_path / "no-shared")
    sample = data.load(cache_dir=tmp_path / "no-cache")
    assert sample.kind == "sample" and sample.path is None
    assert set(sample.labels) == {row["label"] for row in sample.train_rows + sample.test_rows}
    assert "NO REAL DATA FOUND" in capsys.readouterr().err


def test_ids_are_file_positions_in_a_fixed_seeded_order(source: data.DataSource) -> None:
    for split in ("train", "test"):
        rows = source.rows(split)
        expected = [f"{split}-{index:05d}" for index in range(len(rows))]
        random.Random(77).shuffle(expected)
        assert [row["task_id"] for row in rows] == expected
        assert len({row["label"] for row in rows[:50]}) > 10  # the first ids mix labels


# --- keyword policy -----------------------------------------------------------------------------------------------


def test_keyword_policy_follows_only_the_prompt_text() -> None:
    prompt = "alpha: zebra, striped horse\nbeta: yak"
    assert policy.classify(prompt, "I saw a Zebra").label == "alpha"
    assert policy.classify(prompt, "a striped horse ran").label == "alpha"  # a phrase needs its words in order
    assert policy.classify(prompt, "a horse, striped").label == "alpha"  # no keyword matched: the first line
    assert policy.classify(prompt, "yaks everywhere").label == "beta"  # the stemmer: yaks -> yak
    swapped = "alpha: yak\nbeta: zebra"
    assert policy.classify(swapped, "I saw a zebra").label == "beta"
    # real label names carry no meaning of their own: only the keywords decide
    real = "card_arrival: pin\nchange_pin: arrived"
    assert policy.classify(real, "my card has not arrived").label == "change_pin"


def test_keyword_weights_ties_and_determinism() -> None:
    prompt = "a: shared, own\nb: shared\nc: shared, other"
    # "shared" is on three lines (1/3 each); "own" on one line (1)
    assert policy.classify(prompt, "shared").label == "a"  # a three-way tie goes to the earliest line
    assert policy.classify(prompt, "other shared").label == "c"
    prediction = policy.classify(prompt, "own shared")
    assert (prediction.label, prediction.score) == ("a", pytest.approx(1 + 1 / 3, abs=1e-6))
    again = policy.classify(prompt, "own shared")
    assert again == prediction
    assert policy.parse_prompt_uncached(prompt) == policy.parse_prompt_uncached(prompt)


def test_seed_prompt_is_one_line_per_label_with_the_label_words(source: data.DataSource) -> None:
    seed = policy.seed_prompt(source.labels)
    lines = seed.splitlines()
    assert len(lines) == len(source.labels)
    assert [line.split(":")[0] for line in lines] == source.labels
    if "card_arrival" in source.labels:
        assert "card_arrival: card, arrival" in lines
    assert policy.seed_prompt(["Refund_not_showing_up", "lost_or_stolen_card"]) == (
        "Refund_not_showing_up: refund, not, showing, up\nlost_or_stolen_card: lost, or, stolen, card"
    )


@pytest.mark.anyio
async def test_llm_policy_sends_the_candidate_as_system_prompt_and_prices_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def reply(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.content), auth=request.headers.get("authorization"), url=str(request.url))
        body = {
            "choices": [{"message": {"role": "assistant", "content": "card_arrival\n"}}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 10},
        }
        return httpx.Response(200, json=body)

    monkeypatch.setenv("B77_TEST_KEY", "sk-test")
    table = {
        "type": "llm",
        "model": "m",
        "base_url": "http://llm.local/v1",
        "api_key_env": "B77_TEST_KEY",
        "max_tokens": 8,
        "config": {"input_cost_per_million": 2.0, "output_cost_per_million": 10.0},
    }
    label, usage = await policy.predict_llm(
        "PROMPT", "where is my card", table, ["card_arrival", "card_linking"], transport=httpx.MockTransport(reply)
    )
    assert label == "card_arrival"
    assert seen["messages"] == [
        {"role": "system", "content": "PROMPT"},
        {"role": "user", "content": "where is my card"},
    ]
    assert (seen["auth"], seen["url"], seen["max_tokens"]) == (
        "Bearer sk-test",
        "http://llm.local/v1/chat/completions",
        8,
    )
    assert usage["total_tokens"] == 1010 and usage["cost_usd"] == pytest.approx(0.0021)
    assert policy.parse_label_reply("The intent is **card_linking**.", ["card_linking", "card"]) == "card_linking"


# --- container routes --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_program_and_task_info(client: httpx.AsyncClient, source: data.DataSource) -> None:
    program = (await client.get("/program")).json()
    seed = policy.seed_prompt(source.labels)
    assert program["seed_candidate"] == {"system_prompt": seed}
    assert program["target_modules"] == ["system_prompt"]
    (module,) = program["modules"]
    assert module == {
        "module_id": "classifier",
        "role": "system",
        "content": seed,
        "mutable": True,
        "candidate_field": "system_prompt",
    }
    assert "Banking77" in (await client.get("/task_info")).json()["description"]
    metadata = (await client.get("/metadata")).json()
    assert metadata["metadata"]["optimizer_contracts"]["gepa"]["version"] == "synth_optimizers.gepa.v2"


@pytest.mark.anyio
async def test_taskset_lists_shuffled_ids_and_tasks_returns_rows(
    client: httpx.AsyncClient, source: data.DataSource
) -> None:
    taskset = (await client.get("/taskset")).json()
    assert taskset["labels"] == source.labels
    assert taskset["metadata"]["data_source"] == source.kind
    train_ids = taskset["splits"]["train"]["task_ids"]
    assert train_ids == [row["task_id"] for row in source.train_rows]
    assert train_ids != sorted(train_ids)
    assert len(taskset["splits"]["test"]["task_ids"]) == len(source.test_rows)
    wanted = train_ids[:3]
    tasks = (await client.post("/taskset/tasks", json={"split": "train", "task_ids": wanted})).json()["tasks"]
    assert [task["task_id"] for task in tasks] == wanted
    assert all(set(task) == {"task_id", "text", "label"} for task in tasks)
    missing = await client.post("/taskset/tasks", json={"split": "train", "task_ids": [wanted[0], "train-99999"]})
    assert missing.status_code == 404 and "train-99999" in missing.text
    wrong_split = await client.post("/taskset/tasks", json={"split": "test", "task_ids": [wanted[0]]})
    assert wrong_split.status_code == 404 and wanted[0] in wrong_split.text


def _rollout(row: dict[str, str], prompt: str, rollout_id: str, policy_type: str = "keyword") -> dict[str, Any]:
    return {
        "rollout_id": rollout_id,
        "submission_mode": "sync",
        "task_id": row["task_id"],
        "candidate_id": "c",
        "candidate": {"system_prompt": prompt},
        "policy": {"type": policy_type},
        "task": row,
        "metadata": {},
    }


@pytest.mark.anyio
async def test_rollout_rewards_exact_label_match(client: httpx.AsyncClient, source: data.DataSource) -> None:
    row = source.train_rows[0]
    other = next(label for label in source.labels if label != row["label"])
    words = ", ".join(policy.tokenize(row["text"]))
    right = f"{other}: zzzz\n{row['label']}: {words}"
    wrong = f"{other}: {words}\n{row['label']}: zzzz"
    good = (await client.post("/rollout", json=_rollout(row, right, "r-1"))).json()
    assert good["rollout_id"] == "r-1" and good["status"] == "completed"
    assert good["reward_info"]["outcome_reward"] == 1.0
    assert good["trace"]["predicted"] == good["trace"]["expected"] == row["label"]
    bad = (await client.post("/rollout", json=_rollout(row, wrong, "r-2"))).json()
    assert bad["reward_info"]["outcome_reward"] == 0.0
    assert bad["trace"]["query"] == row["text"]
    assert bad["actionable_side_info"]["feedback"] == f"expected {row['label']}, predicted {other}"
    assert bad["metadata"]["feedback"] == f"expected {row['label']}, predicted {other}"
    await client.post("/rollout", json=_rollout(row, wrong, "r-2"))  # a repeated id is counted once
    metadata = (await client.get("/metadata")).json()
    assert metadata["metadata"]["served_rollouts"] == 2


@pytest.mark.anyio
async def test_rollout_rejects_bad_requests(client: httpx.AsyncClient, source: data.DataSource) -> None:
    row = source.train_rows[0]
    unknown = await client.post("/rollout", json=_rollout(row, "a: b", "r-3", policy_type="oracle"))
    assert unknown.status_code == 400 and "oracle" in unknown.text
    no_model = await client.post("/rollout", json=_rollout(row, "a: b", "r-6", policy_type="llm"))
    assert no_model.status_code == 400 and "policy.model" in no_model.text
    no_candidate = _rollout(row, "a: b", "r-4")
    no_candidate["candidate"] = {"other": "x"}
    assert (await client.post("/rollout", json=no_candidate)).status_code == 422
    no_task = _rollout({"task_id": "train-99999"}, "a: b", "r-5")
    response = await client.post("/rollout", json=no_task)
    assert response.status_code == 404 and "train-99999" in response.text
    metadata = (await client.get("/metadata")).json()
    assert metadata["metadata"]["served_rollouts"] == 0


# --- offline proposer --------------------------------------------------------------------------------------------


def _request(source: data.DataSource, proposals: int = 1) -> ReflectionRequest:
    seed = policy.seed_prompt(source.labels)
    records = []
    for row in source.train_rows[:12]:
        predicted = policy.classify(seed, row["text"]).label
        records.append(
            ReflectiveRecord(
                task_id=row["task_id"],
                task=dict(row),
                output={"query": row["text"], "predicted": predicted, "expected": row["label"]},
                reward=1.0 if predicted == row["label"] else 0.0,
                feedback=f"expected {row['label']}, predicted {predicted}",
            )
        )
    return ReflectionRequest(
        candidate_id="seed",
        candidate={"system_prompt": seed},
        target_module="system_prompt",
        records=tuple(records),
        task_info="Banking77",
        proposals=proposals,
    )


def _converse(turn_text: str) -> list[dict[str, Any]]:
    return converse([sys.executable, str(PROPOSER)], turn_text)


def test_offline_proposer_speaks_the_app_server_protocol(source: data.DataSource) -> None:
    request = _request(source)
    replies = _converse(render_prompt(request))
    by_id = {reply["id"]: reply for reply in replies if "id" in reply}
    assert "serverInfo" in by_id[1]["result"]
    assert by_id[2]["result"] == {"thread": {"id": "thr-1"}}
    assert by_id[3]["result"]["turn"]["status"] == "inProgress"
    methods = [reply["method"] for reply in replies if "method" in reply]
    assert methods == ["turn/started", "item/completed", "thread/tokenUsage/updated", "turn/completed"]
    notifications = {reply["method"]: reply["params"] for reply in replies if "method" in reply}
    assert notifications["turn/completed"]["turn"]["status"] == "completed"
    assert notifications["thread/tokenUsage/updated"]["tokenUsage"]["total"]["totalTokens"] > 0
    item = notifications["item/completed"]["item"]
    assert item["type"] == "agentMessage"
    (text,) = parse_reply(item["text"])
    assert text != request.candidate["system_prompt"]
    # the edit only adds keywords: every label line is kept, in order
    assert [line.split(":")[0] for line in text.splitlines()] == source.labels
    # a fresh process answers an identical request identically
    assert _converse(render_prompt(request)) == replies


def test_offline_proposer_is_a_pure_function_with_distinct_proposals(source: data.DataSource) -> None:
    request = _request(source, proposals=3)
    turn = render_prompt(request)
    first = parse_reply(offline_proposer.reply_for_turn(turn), wanted=3)
    assert len(first) == 3 == len(set(first))
    assert parse_reply(offline_proposer.reply_for_turn(turn), wanted=3) == first
    # each failed record's expected line gains words of its query
    seed_lines = dict(line.split(": ", 1) for line in request.candidate["system_prompt"].splitlines())
    new_lines = dict(line.split(": ", 1) for line in first[0].splitlines())
    failed = [record for record in request.records if record.reward < 1.0]
    assert failed
    for record in failed:
        assert len(new_lines[record.task["label"]]) > len(seed_lines[record.task["label"]])


def test_offline_proposer_asked_again_adds_other_keywords_than_the_edits_in_flight(source: data.DataSource) -> None:
    """``gepa.pipeline.concurrent_edits``: asked again with another proposal's version of the text (its first reply
    was that edit), the proposer counts that version's keywords as listed and adds the next most telling words of
    the failed queries: a reply that repeats nothing in flight."""
    request = _request(source)
    current = request.candidate["system_prompt"]
    (first,) = parse_reply(offline_proposer.reply_for_turn(render_prompt(request)))
    again = replace(request, concurrent_edits=(ConcurrentEdit(3, first),))
    (second,) = parse_reply(offline_proposer.reply_for_turn(render_prompt(again)))
    assert second != current
    assert not repeats_edit({"p": current}, {"p": second}, {"p": first})
    # the lines it changes gain none of the keywords the edit in flight added to them
    before, in_flight, after = (dict(line.split(": ", 1) for line in t.splitlines()) for t in (current, first, second))
    changed = [label for label in after if after[label] != before[label]]
    assert changed
    for label in changed:
        added = set(after[label].split(", ")) - set(before[label].split(", "))
        assert added and not added & (set(in_flight[label].split(", ")) - set(before[label].split(", ")))


def test_offline_proposer_reads_labels_from_feedback_when_rows_lack_them() -> None:
    prompt = "alpha: zebra\nbeta: yak"
    record = {
        "task": {"text": "the quokka smiles"},
        "output": None,
        "reward": 0.0,
        "feedback": "expected beta, predicted alpha",
    }
    request = {"current_text": prompt, "records": [record], "proposals": 1}
    (text,) = offline_proposer.propose(request)
    assert text.splitlines()[0] == "alpha: zebra"
    assert text.splitlines()[1].startswith("beta: yak, ")
    assert "quokka" in text and policy.classify(text, "the quokka smiles").label == "beta"
