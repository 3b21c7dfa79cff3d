"""ContainerClient against in-memory transports: retries, validation, async polling, discovery routes."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

from synth_opt.container.client import ContainerClient, RetryPolicy, validate_rollout_reply
from synth_opt.container.wire import GEPA_CONTRACT_VERSION, RolloutRequest
from synth_opt.errors import ContainerContractError
from synth_opt.testing.fake_container import FakeContainer

URL = "http://container.test"
TRAIN = [{"task_id": f"t{i}", "question": f"q{i}", "answer": f"a{i}"} for i in range(5)]
TEST = [{"task_id": str(i), "question": f"h{i}", "answer": f"b{i}"} for i in range(3)]


class RecordingSleep:
    """Records requested delays instead of sleeping, so retry tests are instant and exact."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def fake(**kwargs: Any) -> FakeContainer:
    return FakeContainer(rows={"train": TRAIN, "test": TEST}, **kwargs)


def client_for(
    transport: httpx.AsyncBaseTransport, sleep: RecordingSleep | None = None, **kwargs: Any
) -> ContainerClient:
    return ContainerClient(URL, transport=transport, sleep=sleep or RecordingSleep(), **kwargs)


def handler_client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> ContainerClient:
    return client_for(httpx.MockTransport(handler), **kwargs)


def request(rollout_id: str = "r-1", task_id: str = "t1", mode: str = "sync") -> RolloutRequest:
    return RolloutRequest(
        rollout_id=rollout_id,
        submission_mode=mode,
        task_id=task_id,
        candidate_id="c-1",
        candidate={"instruction": "answer a1"},
        policy={"model": "m"},
        task={"task_id": task_id, "answer": "a1"},
        metadata={},
    )


def rollout_reply(**overrides: Any) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "rollout_id": "r-1",
        "status": "completed",
        "success_status": "succeeded",
        "reward_info": {"outcome_reward": 0.5},
    }
    reply.update(overrides)
    return reply


def replying(payload: dict[str, Any], status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(status, json=payload)


# ------------------------------------------------------------------------------------------------ retries


@pytest.mark.anyio
async def test_retries_503_then_succeeds_with_deterministic_backoff() -> None:
    container = fake()
    container.fail_first("GET /health", 2, status=503)
    sleep = RecordingSleep()
    async with client_for(container.transport(), sleep) as client:
        assert (await client.health())["status"] == "ok"
        assert client.stats.requests == 3
        assert client.stats.retries == 2
    assert sleep.delays == [0.1, 0.2]


@pytest.mark.anyio
async def test_retries_connect_errors_and_429() -> None:
    container = fake()
    container.fail_first("POST /rollout", 1, status=None)
    container.fail_first("GET /taskset", 1, status=429)
    async with client_for(container.transport()) as client:
        assert (await client.rollout(request())).reward == 1.0
        assert (await client.taskset()).counts["train"] == 5
        assert client.stats.retries == 2


def test_backoff_is_capped() -> None:
    assert [RetryPolicy(max_attempts=8).delay_before_retry(n) for n in range(1, 7)] == [
        0.1,
        0.2,
        0.4,
        0.8,
        1.6,
        2.0,
    ]


@pytest.mark.anyio
async def test_400_is_not_retried() -> None:
    async with handler_client(replying({"detail": "bad field"}, status=400)) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.health()
        assert client.stats.requests == 1
        assert client.stats.retries == 0
    assert "HTTP 400" in caught.value.message
    assert "bad field" in caught.value.message


@pytest.mark.anyio
async def test_a_redirect_is_not_followed_and_says_to_set_the_url_it_leads_to() -> None:
    async with handler_client(replying({}, status=307)) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.rollout(request())
        assert client.stats.requests == 1
    assert "HTTP 307" in caught.value.message
    assert "a redirect, which is not followed; set [container] url" in caught.value.message


@pytest.mark.anyio
async def test_exhausted_retries_name_url_route_and_status() -> None:
    container = fake()
    container.fail_first("POST /rollout", 10, status=503)
    async with client_for(container.transport(), retry=RetryPolicy(max_attempts=3)) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.rollout(request())
    message = caught.value.message
    assert URL in message and "POST /rollout" in message and "HTTP 503" in message
    assert "3 attempts" in message
    assert caught.value.detail["status"] == 503
    assert caught.value.detail["route"] == "/rollout"
    assert container.requests["POST /rollout"] == 3


@pytest.mark.anyio
async def test_a_malformed_body_was_served_so_it_is_not_retried() -> None:
    calls = 0

    def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(200, content=b"<html>oops")
        return httpx.Response(200, json={"status": "ok"})

    async with handler_client(handler) as client:
        with pytest.raises(ContainerContractError, match="not JSON"):
            await client.health()
        assert client.stats.retries == 0
        assert await client.health() == {"status": "ok"}


@pytest.mark.anyio
async def test_transport_failure_after_retries_names_the_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with handler_client(handler) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.program()
    assert "ReadTimeout" in caught.value.message
    assert "GET /program" in caught.value.message
    assert "request_timeout_seconds" in caught.value.message


class TrickledBody(httpx.AsyncByteStream):
    """A body that arrives a byte at a time, each byte well inside a per-read timeout."""

    def __init__(self, body: bytes, interval: float) -> None:
        self.body = body
        self.interval = interval

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index in range(len(self.body)):
            await anyio.sleep(self.interval)
            yield self.body[index : index + 1]


@pytest.mark.anyio
async def test_request_timeout_bounds_the_whole_body_not_each_read() -> None:
    body = json.dumps({"status": "ok", "padding": "x" * 500}).encode()

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": str(len(body))}, stream=TrickledBody(body, 0.02))

    started = anyio.current_time()
    async with handler_client(handler, request_timeout_seconds=0.3, retry=RetryPolicy(max_attempts=2)) as client:
        with anyio.fail_after(30), pytest.raises(ContainerContractError) as caught:
            await client.health()  # a whole body takes over 10 s; each attempt may take 0.3 s
        assert client.stats.requests == 2
    assert anyio.current_time() - started < 5.0
    message = caught.value.message
    assert "GET /health" in message and URL in message
    assert "no complete reply within the request timeout of 0.3 s (after 2 attempts)" in message
    assert "raise [container] request_timeout_seconds" in message
    assert caught.value.detail["status"] is None


@pytest.mark.anyio
async def test_a_slow_body_within_the_request_timeout_is_read() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=TrickledBody(b'{"status": "ok"}', 0.001))

    async with handler_client(handler, request_timeout_seconds=30.0) as client:
        assert await client.health() == {"status": "ok"}
        assert client.stats.retries == 0


@pytest.mark.anyio
async def test_a_body_that_is_never_json_is_blamed_on_the_reply() -> None:
    async with handler_client(lambda _request: httpx.Response(200, content=b"<html>oops")) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.health()
    assert "HTTP 200 with a body that is not JSON;" in caught.value.message
    assert "fix the container so its reply follows the synth-containers contract" in caught.value.message


@pytest.mark.anyio
async def test_transport_failure_names_the_operating_system_reason() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        try:
            try:
                raise ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('10.0.0.1', 80)")
            except OSError as refused:
                raise OSError("All connection attempts failed") from refused
        except OSError as failed:
            raise httpx.ConnectError("All connection attempts failed", request=request) from failed

    async with handler_client(handler, retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.health()
    expected = f"ConnectError (All connection attempts failed: {os.strerror(errno.ECONNREFUSED)}) (after 1 attempt)"
    assert expected in caught.value.message


@pytest.mark.anyio
async def test_headers_and_bearer_token_are_sent_and_never_shown() -> None:
    container = fake()
    container.fail_first("GET /health", 10, status=500)
    async with client_for(
        container.transport(),
        headers={"X-Team": "opt"},
        bearer_token="sekrit-token",
        retry=RetryPolicy(max_attempts=2),
    ) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.health()
    assert all(r.headers["authorization"] == "Bearer sekrit-token" for r in container.request_log)
    assert all(r.headers["x-team"] == "opt" for r in container.request_log)
    assert "sekrit" not in caught.value.message
    assert "sekrit" not in json.dumps(caught.value.to_dict(), default=str)


@pytest.mark.anyio
async def test_url_credentials_are_not_shown() -> None:
    client = ContainerClient(
        "http://user:pw@container.test/?token=abc",
        transport=httpx.MockTransport(replying({}, status=400)),
    )
    async with client:
        with pytest.raises(ContainerContractError) as caught:
            await client.health()
    assert "pw" not in caught.value.message and "abc" not in caught.value.message


# ------------------------------------------------------------------------------------------------ rollouts


@pytest.mark.anyio
async def test_sync_rollout_through_fake_container() -> None:
    container = fake(feedback=lambda _c, row, reward: f"wanted {row['answer']}")
    async with client_for(container.transport()) as client:
        reply = await client.rollout(request())
    assert reply.reward == 1.0
    assert reply.objectives == {"outcome_reward": 1.0}
    assert reply.usage.total_tokens == 12
    assert reply.feedback == "wanted a1"
    assert reply.trace == {"task_id": "t1", "candidate_fields": ["instruction"]}
    assert json.loads(container.request_log[0].content)["submission_mode"] == "sync"
    assert container.rollouts_served == 1


@pytest.mark.anyio
async def test_rollout_id_mismatch() -> None:
    async with handler_client(replying(rollout_reply(rollout_id="other"))) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.rollout(request())
    assert "'other'" in caught.value.message and "'r-1'" in caught.value.message


@pytest.mark.anyio
async def test_missing_reward() -> None:
    async with handler_client(replying(rollout_reply(reward_info={"metrics": {}}))) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.rollout(request())
    assert "no numeric reward" in caught.value.message
    assert URL in caught.value.message


@pytest.mark.anyio
async def test_non_numeric_reward() -> None:
    async with handler_client(replying(rollout_reply(reward_info={"outcome_reward": "high"}))) as client:
        with pytest.raises(ContainerContractError):
            await client.rollout(request())


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"reward_info": {"outcome_reward": 0.25, "score": 0.9}, "reward": 0.1}, 0.25),
        ({"reward_info": {"score": 0.75}, "reward": 0.1}, 0.75),
        ({"reward_info": None, "reward": 1}, 1.0),
        ({"reward_info": {"outcome_reward": 0}}, 0.0),
    ],
)
def test_reward_fallbacks(overrides: dict[str, Any], expected: float) -> None:
    reply = validate_rollout_reply(rollout_reply(**overrides), "r-1", url=URL, route="/rollout")
    assert reply.reward == expected


def test_objectives_from_list_and_dict() -> None:
    reply = validate_rollout_reply(
        rollout_reply(
            objective_scores=[{"objective": "accuracy", "value": 1.0}],
            reward_info={"outcome_reward": 1.0, "objectives": {"latency": 0.5, "accuracy": 0.0}},
        ),
        "r-1",
        url=URL,
        route="/rollout",
    )
    assert reply.objectives == {"accuracy": 1.0, "latency": 0.5}
    with pytest.raises(ContainerContractError, match="objective 'x'"):
        validate_rollout_reply(
            rollout_reply(objective_scores=[{"objective": "x", "value": None}]), "r-1", url=URL, route="/r"
        )


def test_feedback_trace_and_usage_sources() -> None:
    reply = validate_rollout_reply(
        rollout_reply(
            trace={},
            turns=[{"role": "user"}],
            metadata={"feedback": {"hint": "x"}},
            usage={"input_tokens": 3, "output_tokens": 4, "cost_usd": 0.5},
        ),
        "r-1",
        url=URL,
        route="/rollout",
    )
    assert reply.trace == [{"role": "user"}]
    assert reply.feedback == '{"hint":"x"}'
    assert (reply.usage.total_tokens, reply.usage.cost_usd) == (7, 0.5)
    reply = validate_rollout_reply(
        rollout_reply(reward_info={"outcome_reward": 1.0, "feedback": "from reward_info"}),
        "r-1",
        url=URL,
        route="/rollout",
    )
    assert reply.feedback == "from reward_info"


def test_failed_and_unknown_statuses() -> None:
    with pytest.raises(ContainerContractError, match="failed"):
        validate_rollout_reply(
            rollout_reply(status="completed", success_status="FAILED"), "r-1", url=URL, route="/rollout"
        )
    with pytest.raises(ContainerContractError, match="no terminal success status"):
        validate_rollout_reply(rollout_reply(status="weird", success_status=None), "r-1", url=URL, route="/r")
    assert validate_rollout_reply(rollout_reply(status="Done"), "r-1", url=URL, route="/r").reward == 0.5


@pytest.mark.anyio
async def test_async_rollout_polls_until_complete() -> None:
    container = fake(async_mode=True, polls_to_finish=3)
    sleep = RecordingSleep()
    async with client_for(container.transport(), sleep) as client:
        reply = await client.rollout(request(mode="async"), poll_interval_seconds=0.01)
        assert client.stats.polls == 3
    assert reply.reward == 1.0
    assert sleep.delays == [0.01, 0.01, 0.01]
    assert container.requests["GET /rollouts/{id}/state"] == 3
    assert container.requests["GET /rollouts/{id}"] == 1
    assert container.rollouts_served == 1


@pytest.mark.anyio
async def test_non_terminal_reply_to_a_sync_request_is_polled() -> None:
    container = fake(async_mode=True)

    async def handle(request_: httpx.Request) -> httpx.Response:
        if request_.url.path == "/rollout":
            body = json.loads(request_.content)
            body["submission_mode"] = "async"
            request_ = httpx.Request("POST", request_.url, json=body)
        return await container.handle(request_)

    async with client_for(httpx.MockTransport(handle)) as client:
        assert (await client.rollout(request(mode="sync"), poll_interval_seconds=0)).reward == 1.0


@pytest.mark.anyio
async def test_async_timeout_sends_terminate() -> None:
    container = fake(async_mode=True, polls_to_finish=None)
    async with ContainerClient(URL, transport=container.transport()) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.rollout(request(mode="async"), poll_interval_seconds=0.01, async_timeout_seconds=0.1)
        assert client.stats.terminations == 1
    assert container.terminated == {"r-1"}
    assert "did not finish within 0.1 s" in caught.value.message
    assert URL in caught.value.message


@pytest.mark.anyio
async def test_cancelled_async_rollout_is_terminated() -> None:
    container = fake(async_mode=True, polls_to_finish=None)
    async with ContainerClient(URL, transport=container.transport()) as client:
        with anyio.move_on_after(0.1) as scope:
            await client.rollout(request(mode="async"), poll_interval_seconds=0.01)
    assert scope.cancelled_caught
    assert container.terminated == {"r-1"}


@pytest.mark.anyio
async def test_fake_reply_rewrite_reaches_validation() -> None:
    container = fake(rewrite_reply=lambda reply: {**reply, "rollout_id": "someone-else"})
    async with client_for(container.transport()) as client:
        with pytest.raises(ContainerContractError, match="someone-else"):
            await client.rollout(request())


@pytest.mark.anyio
async def test_async_failure_status_raises() -> None:
    def handler(request_: httpx.Request) -> httpx.Response:
        if request_.method == "POST":
            return httpx.Response(200, json={"rollout_id": "r-1", "status": "queued"})
        return httpx.Response(
            200,
            json={
                "rollout_id": "r-1",
                "status": "failed",
                "success_status": "error",
                "status_detail": "boom",
            },
        )

    async with handler_client(handler) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.rollout(request(), poll_interval_seconds=0)
    assert "rollout r-1 failed" in caught.value.message
    assert "boom" in caught.value.message
    assert "/rollouts/r-1/state" in caught.value.message


# ------------------------------------------------------------------------------------------------ discovery


@pytest.mark.anyio
async def test_metadata_version_ok_and_mismatch() -> None:
    async with client_for(fake().transport()) as client:
        metadata = await client.metadata()
    assert metadata is not None
    async with client_for(fake(metadata_version="synth_optimizers.gepa.v1").transport()) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.metadata()
    assert "synth_optimizers.gepa.v1" in caught.value.message
    assert GEPA_CONTRACT_VERSION in caught.value.message
    assert URL in caught.value.message


@pytest.mark.anyio
async def test_metadata_top_level_contract_and_missing_block() -> None:
    top_level = {"optimizer_contracts": {"gepa": {"version": "other.v9"}}}
    async with handler_client(replying(top_level)) as client:
        with pytest.raises(ContainerContractError, match=r"other\.v9"):
            await client.metadata()
    async with handler_client(replying({"runtime": {}})) as client:
        assert await client.metadata() == {"runtime": {}}


@pytest.mark.anyio
async def test_metadata_404_on_both_routes_is_none() -> None:
    container = fake(serve_metadata=False)
    async with client_for(container.transport()) as client:
        assert await client.metadata() is None
    assert container.requests["GET /metadata"] == 1
    assert container.requests["GET /info"] == 1


@pytest.mark.anyio
async def test_metadata_falls_back_to_info() -> None:
    def handler(request_: httpx.Request) -> httpx.Response:
        if request_.url.path == "/metadata":
            return httpx.Response(404)
        return httpx.Response(200, json={"source": "info"})

    async with handler_client(handler) as client:
        assert await client.metadata() == {"source": "info"}


@pytest.mark.anyio
async def test_program_seed_and_targets() -> None:
    async with client_for(fake(seed_candidate={"a": "A", "b": "B"}).transport()) as client:
        program = await client.program()
    assert program.seed_candidate == {"a": "A", "b": "B"}
    assert program.target_modules == ("a", "b")

    derived = {
        "program_id": "p",
        "modules": [
            {"module_id": "sys", "content": "S", "mutable": True, "candidate_field": "system_prompt"},
            {"module_id": "fixed", "content": "F", "mutable": False},
        ],
    }
    async with handler_client(replying(derived)) as client:
        program = await client.program()
    assert program.seed_candidate == {"system_prompt": "S"}
    assert program.target_modules == ("system_prompt",)
    assert program.modules[1].candidate_field == "fixed"

    bad = {"modules": [{"module_id": "m", "mutable": True}], "target_modules": ["nope"]}
    async with handler_client(replying(bad)) as client:
        with pytest.raises(ContainerContractError, match="nope"):
            await client.program()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("listed", "named"),
    [
        (["t0", "t1", "t0"], "split 'train' lists task id 't0' twice (task_ids[0] and [2])"),
        (["t0", 1, "1"], "split 'train' lists task id '1' twice (task_ids[1] and [2])"),
        (["t0", None], "split 'train': task_ids[1] is null, not a string or an integer"),
        (["t0", {"a": 1}], "split 'train': task_ids[1] is {\"a\": 1}, not a string or an integer"),
        ([True], "split 'train': task_ids[0] is true, not a string or an integer"),
    ],
)
async def test_a_taskset_listing_an_id_twice_or_an_id_that_is_no_id_is_refused(listed: list[Any], named: str) -> None:
    async with handler_client(replying({"splits": {"train": {"task_ids": listed}}})) as client:
        with pytest.raises(ContainerContractError) as raised:
            await client.taskset()
    assert named in raised.value.message, raised.value.message


@pytest.mark.anyio
async def test_task_info() -> None:
    async with client_for(fake(task_description="Classify intents.").transport()) as client:
        assert await client.task_info() == "Classify intents."
    async with client_for(fake(task_description=None).transport()) as client:
        assert await client.task_info() is None
    async with handler_client(replying({"task": {"name": "x"}})) as client:
        assert await client.task_info() == '{"task":{"name":"x"}}'


@pytest.mark.anyio
async def test_taskset_with_ids_and_with_counts() -> None:
    async with client_for(fake().transport()) as client:
        listed = await client.taskset()
    assert listed.task_ids["train"] == ("t0", "t1", "t2", "t3", "t4")
    assert listed.first_ids("train", 2) == ["t0", "t1"]
    async with client_for(fake(list_task_ids=False).transport()) as client:
        counted = await client.taskset()
    assert counted.task_ids == {}
    assert counted.counts == {"train": 5, "test": 3}
    assert counted.first_ids("test", 2) == ["0", "1"]

    shapes = {"splits": {"a": 4, "b": {"size": 2}, "c": {"task_ids": [1, 2]}}, "labels": ["x"]}
    async with handler_client(replying(shapes)) as client:
        info = await client.taskset()
    assert info.counts == {"a": 4, "b": 2, "c": 2}
    assert info.task_ids == {"c": ("1", "2")}
    assert info.labels == ("x",)
    async with handler_client(replying({"splits": {"a": {"nothing": True}}})) as client:
        with pytest.raises(ContainerContractError, match="'a'"):
            await client.taskset()


@pytest.mark.anyio
async def test_tasks_in_request_order_and_chunked() -> None:
    rows = [{"example_id": i, "x": i} for i in range(1203)]
    container = FakeContainer(rows={"train": rows})
    ids = [str(i) for i in reversed(range(1203))]
    async with client_for(container.transport()) as client:
        got = await client.tasks("train", ids)
    assert [row["x"] for row in got] == list(reversed(range(1203)))
    assert container.requests["POST /taskset/tasks"] == 3
    sizes = [len(json.loads(r.content)["task_ids"]) for r in container.request_log]
    assert sizes == [500, 500, 203]


@pytest.mark.anyio
async def test_tasks_mismatch_names_missing_and_extra_ids() -> None:
    async with client_for(fake().transport()) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.tasks("train", ["t1", "zz"])
    assert "'zz'" in caught.value.message
    assert caught.value.detail["missing_ids"] == ["zz"]

    reply = {"tasks": [{"task_id": "t1"}, {"task_id": "t9"}]}
    async with handler_client(replying(reply)) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.tasks("train", ["t1", "t2"])
    assert caught.value.detail["missing_ids"] == ["t2"]
    assert caught.value.detail["extra_ids"] == ["t9"]
    assert "POST /taskset/tasks" in caught.value.message


# ------------------------------------------------------------------------------------------ hostile replies


def raw_replying(body: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(200, content=body, headers={"content-type": "application/json"})


def test_the_client_default_reply_limit_is_the_config_default() -> None:
    from synth_opt.config import ContainerSection
    from synth_opt.container.client import MAX_REPLY_BYTES

    assert MAX_REPLY_BYTES == ContainerSection.model_fields["max_reply_bytes"].default == 8 * 1024 * 1024


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"rollout_id": "r-1", "status": "completed", "trace": ' + b"[" * 300 + b"]" * 300 + b"}", "deeper than 256"),
        (b"[" * 100_000 + b"]" * 100_000, "deeper than 256"),
        (b'{"reward": ' + b"9" * 5000 + b"}", "not JSON (Exceeds the limit (4300 digits)"),
    ],
    ids=["deeper-than-the-limit", "deeper-than-python", "past-the-digit-limit"],
)
async def test_an_unparseable_body_is_a_task_failure_naming_the_problem(body: bytes, named: str) -> None:
    async with handler_client(raw_replying(body)) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.rollout(request())
    assert type(caught.value) is ContainerContractError  # served: a task failure, not a transport failure
    assert named in caught.value.message and "POST /rollout" in caught.value.message


@pytest.mark.anyio
async def test_a_body_over_the_limit_names_its_size_and_the_key() -> None:
    body = json.dumps(rollout_reply(padding="x" * 5000)).encode()
    async with handler_client(raw_replying(body), max_reply_bytes=1000) as client:
        with pytest.raises(ContainerContractError) as caught:
            await client.rollout(request())
    assert type(caught.value) is ContainerContractError
    assert f"a body of {len(body)} bytes, over container.max_reply_bytes = 1000" in caught.value.message


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"reward_info": {"outcome_reward": 10**399}}, "reward_info.outcome_reward is an integer of 400 digits"),
        ({"reward_info": None, "reward": -(10**400)}, "reward is an integer of 401 digits"),
        (
            {"reward_info": {"outcome_reward": 1.0, "objectives": {"acc": 10**399}}},
            "reward_info.objectives['acc'] is an integer of 400 digits",
        ),
        ({"objective_scores": [{"objective": "x", "value": 10**399}]}, "objective 'x' is an integer of 400 digits"),
        ({"usage": {"prompt_tokens": 10**30}}, "usage.prompt_tokens is an integer of 31 digits"),
        ({"usage": {"total_tokens": float("inf")}}, "usage.total_tokens is inf"),
        ({"usage": {"cost_usd": 10**400}}, "usage.cost_usd is an integer of 401 digits, more than the 1e+06 USD"),
        ({"usage": {"total_tokens": -1000}}, "usage.total_tokens is -1000: usage cannot be negative"),
        ({"usage": {"cost_usd": -0.5}}, "usage.cost_usd is -0.5: usage cannot be negative"),
        (
            {"usage": {"prompt_tokens": 2**63 - 1}},
            "usage.prompt_tokens is an integer of 19 digits, more than the 1e+09 tokens",
        ),
        ({"usage": {"cost_usd": float("nan")}}, "usage.cost_usd is nan"),
        # a float, but the run's sums of such scores overflow to infinity (a best score of inf, inf against inf)
        ({"reward_info": {"outcome_reward": 1e308}}, "reward_info.outcome_reward is 1e+308, beyond 1e+100"),
        ({"reward_info": None, "reward": -(10**200)}, "reward is -1e+200, beyond 1e+100"),
        ({"objective_scores": [{"objective": "x", "value": 1e101}]}, "objective 'x' is 1e+101, beyond 1e+100"),
    ],
)
def test_numbers_no_float_or_ledger_can_hold_are_task_failures(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(ContainerContractError) as caught:
        validate_rollout_reply(rollout_reply(**overrides), "r-1", url=URL, route="/rollout")
    assert named in caught.value.message


def test_scores_up_to_the_bound_are_kept() -> None:
    reply = validate_rollout_reply(rollout_reply(reward_info={"outcome_reward": -1e100}), "r-1", url=URL, route="/r")
    assert reply.reward == -1e100


@pytest.mark.anyio
async def test_a_query_in_the_container_url_is_kept_on_every_route() -> None:
    seen: list[str] = []

    def handle(incoming: httpx.Request) -> httpx.Response:
        seen.append(f"{incoming.url.path}?{incoming.url.query.decode()}")
        return httpx.Response(200, json={"status": "ok", **rollout_reply()})

    async with ContainerClient(f"{URL}/base/?code=abc", transport=httpx.MockTransport(handle)) as client:
        await client.health()
        await client.rollout(request())
    assert seen == ["/base/health?code=abc", "/base/rollout?code=abc"]
    assert "abc" not in client.url
