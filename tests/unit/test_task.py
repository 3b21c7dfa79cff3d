"""synth_opt.task: a score function and its rows, and the container that serves them (through the real
ContainerClient, over an ASGI transport)."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from synth_opt.container.client import ContainerClient
from synth_opt.container.replies import ContainerTransportError
from synth_opt.container.wire import RolloutRequest
from synth_opt.errors import ConfigError, ContainerContractError
from synth_opt.task import Score, Task, load_rows, load_task, task
from synth_opt.task.app import task_app

pytestmark = pytest.mark.anyio

ROWS = [{"word": "apple"}, {"word": "pear"}, {"word": "fig"}]


def covers(candidate: dict[str, str], row: dict[str, Any]) -> tuple[float, str]:
    found = row["word"] in candidate["prompt"]
    return float(found), "" if found else f"Name {row['word']}."


def request(task_id: str, text: str, rollout_id: str = "ro-1") -> RolloutRequest:
    return RolloutRequest(
        rollout_id=rollout_id,
        submission_mode="sync",
        task_id=task_id,
        candidate_id="cand-x",
        candidate={"prompt": text},
        policy={},
        task={"task_id": task_id},
        metadata={},
    )


async def client_for(served: Task, *, token: str | None = None) -> AsyncIterator[ContainerClient]:
    transport = httpx.ASGITransport(app=task_app(served, bearer_token=token))
    async with ContainerClient("http://task", transport=transport, bearer_token=token) as client:
        yield client


# -- rows and definition ------------------------------------------------------------------------------------


def test_rows_from_a_list_jsonl_json_and_csv(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"id": "a", "q": 1}\n\n{"id": "b", "q": 2}\n')
    (tmp_path / "rows.json").write_text(json.dumps([{"q": 1}, {"q": 2}]))
    (tmp_path / "rows.csv").write_text("id,q\na,1\nb,2\n")
    assert load_rows(ROWS) == tuple(ROWS)
    assert load_rows("rows.jsonl", base_dir=tmp_path) == ({"id": "a", "q": 1}, {"id": "b", "q": 2})
    assert load_rows(tmp_path / "rows.json") == ({"q": 1}, {"q": 2})
    assert load_rows(tmp_path / "rows.csv") == ({"id": "a", "q": "1"}, {"id": "b", "q": "2"})


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.jsonl", '{"q": 1}\n{"q": \n', "line 2 is not JSON"),
        ("list.jsonl", '{"q": 1}\n[1, 2]\n', "line 2 is a list, not an object"),
        ("obj.json", '{"q": 1}', "must hold a JSON list of objects"),
        ("rows.txt", "q\n", "unknown extension"),
    ],
)
def test_a_bad_row_file_names_the_file_and_the_line(tmp_path: Path, name: str, content: str, expected: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(ConfigError) as raised:
        load_rows(tmp_path / name)
    assert expected in str(raised.value) and name in str(raised.value)


def test_a_missing_row_file_and_rows_that_are_not_dicts_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.jsonl not found"):
        load_rows(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match=r"rows\[1\]: expected a dict, got str"):
        load_rows([{"q": 1}, "two"])


def test_ids_are_the_rows_own_else_their_position_and_must_be_unique() -> None:
    served = Task(score=covers, rows=[{"id": 7, "word": "a"}, {"word": "b"}], heldout=[{"word": "c"}], seed="x")
    assert served.ids("train") == ["7", "1"] and served.ids("test") == ["heldout-0"]
    assert served.seed_candidate == {"prompt": "x"}
    with pytest.raises(ConfigError, match="the id '1' is used twice"):
        Task(score=covers, rows=[{"word": "a"}, {"word": "b"}], heldout=[{"task_id": "1"}], seed="x")
    with pytest.raises(ConfigError, match="no rows"):
        Task(score=covers, rows=[], seed="x")
    with pytest.raises(ConfigError, match="seed"):
        Task(score=covers, rows=ROWS, seed={"prompt": 3})  # type: ignore[dict-item]


def test_row_files_are_read_beside_the_score_functions_module(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"word": "kiwi"}\n')
    (tmp_path / "beside.py").write_text(
        "from synth_opt.task import task\n\n"
        "@task(rows='rows.jsonl', seed='Name fruit.')\n"
        "def score(candidate, row):\n    return 1.0\n"
    )
    loaded = load_task("beside:score", search_dir=tmp_path)
    assert loaded.train == ({"word": "kiwi"},) and loaded.task_name == "score"


async def test_outcomes_of_a_score_function() -> None:
    async def scored(value: Any) -> Any:
        outcome = await Task(score=lambda c, r: value, rows=ROWS, seed="x").evaluate({"prompt": ""}, {})
        return {"reward": outcome.reward, "error": outcome.error}

    def raising(candidate: dict[str, str], row: dict[str, Any]) -> float:
        raise KeyError("answer")

    assert (await Task(score=covers, rows=ROWS, seed="x").evaluate({"prompt": "apple"}, ROWS[0])).reward == 1.0
    outcome = await Task(score=covers, rows=ROWS, seed="x").evaluate({"prompt": ""}, ROWS[1])
    assert (outcome.reward, outcome.feedback, outcome.failed) == (0.0, "Name pear.", False)
    failed = await Task(score=raising, rows=ROWS, seed="x").evaluate({"prompt": ""}, ROWS[0])
    assert failed.failed and failed.error == "KeyError: 'answer'"
    assert failed.feedback is not None and "raise KeyError" in failed.feedback  # the frame that raised it
    assert (await scored(0.5))["reward"] == 0.5 and (await scored(True))["error"] is not None
    assert "return a number" in (await scored("high"))["error"]
    assert "finite" in (await scored(float("nan")))["error"]
    assert "feedback is a int" in (await scored((1.0, 3)))["error"]
    assert "return a number" in (await scored((1.0, "a", "b")))["error"]
    used = await Task(score=lambda c, r: Score(0.5, "ok", {"total_tokens": 12}), rows=ROWS, seed="x").evaluate({}, {})
    assert (used.reward, used.feedback, used.usage) == (0.5, "ok", {"total_tokens": 12})
    assert "unknown key(s) tokens" in (await scored(Score(1.0, usage={"tokens": 3})))["error"]
    assert "non-negative" in (await scored(Score(1.0, usage={"cost_usd": -1})))["error"]


# -- the container ----------------------------------------------------------------------------------------------


async def test_the_container_speaks_the_contract() -> None:
    served = task(rows=ROWS, heldout=[{"word": "plum"}], seed="Name some fruit.", name="fruit")(covers)
    async for client in client_for(served):
        metadata = await client.metadata()
        assert metadata is not None and metadata["metadata"]["optimizer_contracts"]["gepa"]["version"]
        program = await client.program()
        assert program.seed_candidate == {"prompt": "Name some fruit."} and program.target_modules == ("prompt",)
        taskset = await client.taskset()
        assert taskset.task_ids == {"train": ("0", "1", "2"), "test": ("heldout-0",)}
        assert await client.tasks("test", ["heldout-0"]) == [{"word": "plum", "task_id": "heldout-0"}]
        assert await client.task_info() is not None
        reply = await client.rollout(request("1", "Name some fruit."))
        assert (reply.reward, reply.feedback) == (0.0, "Name pear.")
        assert (await client.rollout(request("1", "pear"))).reward == 1.0
        with pytest.raises(ContainerContractError, match="unknown task id"):
            await client.tasks("train", ["9"])


async def test_an_exception_is_a_failed_rollout_with_its_feedback_never_a_5xx() -> None:
    def broken(candidate: dict[str, str], row: dict[str, Any]) -> float:
        return 1 / 0

    async for client in client_for(Task(score=broken, rows=ROWS, seed="x")):
        with pytest.raises(ContainerContractError) as raised:
            await client.rollout(request("0", "x"))
        assert not isinstance(raised.value, ContainerTransportError)  # a task outcome, not an outage
        assert "ZeroDivisionError: division by zero" in str(raised.value)
    transport = httpx.ASGITransport(app=task_app(Task(score=broken, rows=ROWS, seed="x")))
    async with httpx.AsyncClient(transport=transport, base_url="http://task") as http:
        reply = (await http.post("/rollout", json=request("0", "x").to_json())).json()
        assert reply["status"] == "failed" and "1 / 0" in reply["feedback"]
        missing = await http.post("/rollout", json={"candidate": {"prompt": "x"}, "task_id": "0"})
        assert missing.status_code == 422 and "rollout_id" in missing.text
        unknown = await http.post("/rollout", json={**request("0", "x").to_json(), "task_id": "nope"})
        assert unknown.status_code == 404 and "nope" in unknown.text


async def test_half_an_emoji_in_feedback_or_an_error_is_sent_as_a_replacement_character_never_a_5xx() -> None:
    """A score function's text with a lone surrogate (bytes read with ``errors="surrogateescape"``, an emoji cut in
    two) cannot be encoded as JSON: the server sends it with U+FFFD instead of answering 500 (which the run would
    take for an outage)."""

    def half(candidate: dict[str, str], row: dict[str, Any]) -> tuple[float, str]:
        if row["word"] == "pear":
            raise ValueError("bad byte \udc80 in the log")
        return 0.5, "kept \ud83d this"

    async for client in client_for(Task(score=half, rows=ROWS, seed="x")):
        reply = await client.rollout(request("0", "x"))
        assert (reply.reward, reply.feedback) == (0.5, "kept \ufffd this")
        with pytest.raises(ContainerContractError, match="bad byte \ufffd in the log"):
            await client.rollout(request("1", "x"))


async def test_a_bearer_token_guards_every_route_but_health() -> None:
    app = task_app(Task(score=covers, rows=ROWS, seed="x"), bearer_token="s3cret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://task") as http:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/program")).status_code == 401
        assert (await http.get("/program", headers={"Authorization": "Bearer s3cret"})).status_code == 200
    async for client in client_for(Task(score=covers, rows=ROWS, seed="x"), token="s3cret"):
        assert (await client.rollout(request("0", "apple"))).reward == 1.0


async def test_async_score_functions_run_concurrently() -> None:
    entered, all_in = 0, anyio.Event()

    async def waits_for_all(candidate: dict[str, str], row: dict[str, Any]) -> float:
        nonlocal entered
        entered += 1
        if entered == 4:
            all_in.set()
        await all_in.wait()  # returns only once four calls are running at once
        return 1.0

    async for client in client_for(Task(score=waits_for_all, rows=ROWS * 2, seed="x")):
        with anyio.fail_after(30):  # a deadlock guard: serial calls would never get past the wait
            async with anyio.create_task_group() as tg:
                for index in range(4):
                    tg.start_soon(client.rollout, request(str(index), "x", f"ro-{index}"))


async def test_sync_score_functions_run_in_threads_at_most_max_threads_at_once() -> None:
    lock, active, most = threading.Lock(), [0], [0]
    pair = threading.Barrier(2, timeout=30)  # two calls must be running together to pass

    def blocking(candidate: dict[str, str], row: dict[str, Any]) -> float:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        pair.wait()
        with lock:
            active[0] -= 1
        return 1.0

    rows = [{"word": str(index)} for index in range(6)]
    async for client in client_for(Task(score=blocking, rows=rows, seed="x", max_threads=2)):
        async with anyio.create_task_group() as tg:
            for index in range(6):
                tg.start_soon(client.rollout, request(str(index), "x", f"ro-{index}"))
    assert most[0] == 2


def test_load_task_says_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "notatask.py").write_text("value = 3\n")
    (tmp_path / "crashes.py").write_text("raise RuntimeError('boom at import')\n")
    cases = {
        "no_colon": "is not module:attribute",
        "nowhere:task": "no module named 'nowhere'",
        "notatask:missing": "has no attribute 'missing'",
        "notatask:value": "is a int, not a Task",
        "crashes:task": "raised RuntimeError: boom at import",
    }
    for reference, expected in cases.items():
        with pytest.raises(ConfigError, match=expected):
            load_task(reference, search_dir=tmp_path)
