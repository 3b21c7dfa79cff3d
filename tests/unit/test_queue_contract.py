"""The run queue contract: every backend (SQLite, PostgreSQL) must pass this suite. Time comes from a fake clock,
so lease expiry is tested without sleeping. The PostgreSQL cases run against a real server (the ``postgres_url``
fixture: a new database on a throwaway cluster)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from synth_opt.errors import ConfigError, LeaseLostError
from synth_opt.service.errors import QueueConflictError, RunRequestNotFoundError
from synth_opt.service.queue import AsyncRunQueue, RequestStatus, RunQueue, RunRequest, Submission, open_queue
from synth_opt.service.queue.plans import MAX_EXPIRED_LEASES
from synth_opt.service.queue.schema import REQUEST_STATUSES

LEASE = 10.0


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeQueue = Callable[[], RunQueue]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "postgresql"])
def make_queue(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[MakeQueue]:
    """A factory of queue handles on ONE store (several handles = several workers)."""
    opened: list[RunQueue] = []
    location = (
        f"sqlite:///{tmp_path / 'service.sqlite'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )

    def make() -> RunQueue:
        queue = open_queue(location, clock=clock, lease_seconds=LEASE)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        queue.close()


@pytest.fixture
def queue(make_queue: MakeQueue) -> RunQueue:
    return make_queue()


def submission(queue: RunQueue, run_id: str, **fields: Any) -> Submission:
    return queue.submit(run_id=run_id, config_path=f"/configs/{run_id}.toml", **fields)


def submit(queue: RunQueue, run_id: str, **fields: Any) -> RunRequest:
    return submission(queue, run_id, **fields).request


def test_the_backend_satisfies_the_protocol(queue: RunQueue) -> None:
    assert isinstance(queue, RunQueue)


def test_a_submitted_request_is_queued_with_what_it_was_given(queue: RunQueue, clock: FakeClock) -> None:
    submitted = submission(
        queue, "r1", container_url="http://c:1", cache_namespace="ns", priority=3, run_dir="/runs/r1"
    )
    request = submitted.request
    assert request.status is RequestStatus.QUEUED and submitted.deduplicated is False
    assert request.request_id.startswith("req-")
    stored = queue.get(request.request_id)
    assert {
        k: getattr(stored, k) for k in ("run_id", "config_path", "container_url", "cache_namespace", "priority")
    } == {
        "run_id": "r1",
        "config_path": "/configs/r1.toml",
        "container_url": "http://c:1",
        "cache_namespace": "ns",
        "priority": 3,
    }
    assert stored.submitted_at == clock.now and stored.attempts == 0 and stored.lease_token is None


def test_claims_follow_priority_then_submission_order(queue: RunQueue, clock: FakeClock) -> None:
    order = [("low-old", 0), ("high-new", 5), ("low-new", 0), ("high-newer", 5), ("mid", 2)]
    for run_id, priority in order:
        submit(queue, run_id, priority=priority)
        clock.advance(1)
    claimed = []
    while (request := queue.claim("w")) is not None:
        claimed.append(request.run_id)
    assert claimed == ["high-new", "high-newer", "mid", "low-old", "low-new"]


def test_a_claim_takes_a_lease_with_owner_expiry_and_token(queue: RunQueue, clock: FakeClock) -> None:
    submit(queue, "r1")
    claimed = queue.claim("worker-a")
    assert claimed is not None
    assert claimed.status == "leased" and claimed.lease_owner == "worker-a"
    assert claimed.lease_expires_at == clock.now + LEASE and claimed.attempts == 1
    assert isinstance(claimed.lease_token, str) and len(claimed.lease_token) >= 16
    assert queue.claim("worker-b") is None


def test_concurrent_workers_never_claim_one_request_twice(make_queue: MakeQueue) -> None:
    first = make_queue()
    for i in range(60):
        submit(first, f"r{i}", container_url=f"http://c:{i}")
    claims: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker(name: str) -> None:
        queue = make_queue()
        mine: list[str] = []
        try:
            barrier.wait()
            while (request := queue.claim(name)) is not None:
                mine.append(request.request_id)
                queue.complete(request.request_id, lease_token=request.lease_token)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        claims[name] = mine

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    every = [rid for mine in claims.values() for rid in mine]
    assert len(every) == 60 and len(set(every)) == 60
    assert {r.status for r in first.list_requests(limit=100)} == {"completed"}


def test_a_worker_whose_lease_was_reclaimed_cannot_write(queue: RunQueue, clock: FakeClock) -> None:
    submit(queue, "r1")
    old = queue.claim("worker-a")
    assert old is not None
    queue.start(old.request_id, old.lease_token)
    clock.advance(LEASE + 1)
    assert queue.recover().requeued == (old.request_id,)
    new = queue.claim("worker-b")
    assert new is not None and new.request_id == old.request_id and new.attempts == 2
    late_writes: list[Callable[[], object]] = [
        lambda: queue.heartbeat(old.request_id, old.lease_token),
        lambda: queue.start(old.request_id, old.lease_token),
        lambda: queue.complete(old.request_id, result={"best_candidate_id": "late"}, lease_token=old.lease_token),
    ]
    for late_write in late_writes:
        with pytest.raises(LeaseLostError) as caught:
            late_write()
        assert caught.value.detail["lease_owner"] == "worker-b"
    queue.start(new.request_id, new.lease_token)
    done = queue.complete(new.request_id, result={"best_candidate_id": "c1"}, lease_token=new.lease_token)
    assert done.status == "completed" and done.best_candidate_id == "c1" and done.attempts == 2


def test_a_heartbeat_extends_the_lease(queue: RunQueue, clock: FakeClock) -> None:
    submit(queue, "r1")
    claimed = queue.claim("w")
    assert claimed is not None
    clock.advance(LEASE - 2)
    beat = queue.heartbeat(claimed.request_id, claimed.lease_token)
    assert beat.lease_expires_at == clock.now + LEASE and beat.cancel_requested is False
    clock.advance(LEASE - 2)  # past the first expiry, within the extended one
    assert queue.recover().recovered == 0
    clock.advance(3)
    assert queue.recover().requeued == (claimed.request_id,)


def test_recover_requeues_only_expired_leases(queue: RunQueue, clock: FakeClock) -> None:
    a, b = submit(queue, "a"), submit(queue, "b")
    first = queue.claim("w1")
    assert first is not None and first.request_id == a.request_id
    queue.start(first.request_id, first.lease_token)
    clock.advance(LEASE / 2)
    second = queue.claim("w2")
    assert second is not None and second.request_id == b.request_id
    clock.advance(LEASE / 2 + 0.1)
    result = queue.recover()
    assert result.requeued == (a.request_id,) and result.cancelled == ()
    requeued = queue.get(a.request_id)
    assert requeued.status == "queued" and requeued.lease_owner is None and requeued.lease_token is None
    assert requeued.attempts == 1
    assert queue.get(b.request_id).status == "leased"


def test_a_request_whose_lease_keeps_expiring_is_failed_after_three_attempts(queue: RunQueue, clock: FakeClock) -> None:
    """A run that kills every worker taking it (the lease expires each time) is given up, not requeued forever,
    and then no longer holds its container URL."""
    poison = submit(queue, "poison", container_url="http://c:1")
    for attempt in range(1, MAX_EXPIRED_LEASES + 1):
        claimed = queue.claim(f"w{attempt}")
        assert claimed is not None and claimed.request_id == poison.request_id and claimed.attempts == attempt
        queue.start(claimed.request_id, claimed.lease_token)
        clock.advance(LEASE + 1)
        recovery = queue.recover()
        if attempt < MAX_EXPIRED_LEASES:
            assert recovery.requeued == (poison.request_id,) and recovery.failed == ()
    assert recovery.requeued == () and recovery.failed == (poison.request_id,)
    assert recovery.to_dict()["failed"] == [poison.request_id] and recovery.recovered == 1
    given_up = queue.get(poison.request_id)
    assert given_up.status == "failed" and given_up.lease_token is None and given_up.finished_at is not None
    assert given_up.error is not None and given_up.error["code"] == "run_failed"
    assert f"given up after {MAX_EXPIRED_LEASES} attempts" in given_up.error["message"]
    assert "w3" in given_up.error["message"] and given_up.error["detail"]["last_owner"] == "w3"
    with pytest.raises(LeaseLostError):  # the last worker, were it alive, can no longer write
        queue.complete(poison.request_id, result={}, lease_token=claimed.lease_token)
    assert queue.claim("w4") is None
    after = submit(queue, "after", container_url="http://c:1")  # the URL is free again
    next_up = queue.claim("w4")
    assert next_up is not None and next_up.request_id == after.request_id
    assert queue.recover().invariants["status"] == "ok"


def test_an_idempotency_key_returns_the_same_request(queue: RunQueue) -> None:
    first = submit(queue, "r1", idempotency_key="key-1")
    again = submission(queue, "r1", idempotency_key="key-1")
    assert again.request.request_id == first.request_id and again.deduplicated is True
    assert len(queue.list_requests()) == 1
    with pytest.raises(QueueConflictError):  # one key, another config
        submit(queue, "r2", idempotency_key="key-1")


def test_a_second_live_request_for_one_run_id_is_a_conflict(queue: RunQueue) -> None:
    first = submit(queue, "r1", idempotency_key="key-1")
    with pytest.raises(QueueConflictError) as caught:
        submit(queue, "r1")
    assert caught.value.error_code == "queue_conflict" and caught.value.detail["request_id"] == first.request_id
    with pytest.raises(QueueConflictError):
        submit(queue, "r1", idempotency_key="key-2")
    claimed = queue.claim("w")
    assert claimed is not None
    with pytest.raises(QueueConflictError):  # still live while leased
        submit(queue, "r1")
    queue.complete(claimed.request_id, lease_token=claimed.lease_token)
    assert submit(queue, "r1").status == "queued"  # a finished run id may be queued again


@pytest.mark.parametrize("shared", ["container_url", "cache_namespace"])
def test_a_held_container_url_or_cache_namespace_is_not_claimed(queue: RunQueue, clock: FakeClock, shared: str) -> None:
    first = submit(queue, "a", priority=9, **{shared: "shared-resource"})
    blocked = submit(queue, "b", priority=5, **{shared: "shared-resource"})
    free = submit(queue, "c", priority=0, container_url="http://other", cache_namespace="other")
    held = queue.claim("w1")
    assert held is not None and held.request_id == first.request_id
    nxt = queue.claim("w2")
    assert nxt is not None and nxt.request_id == free.request_id  # the blocked one is skipped
    assert queue.claim("w3") is None
    queue.complete(held.request_id, lease_token=held.lease_token)
    after = queue.claim("w3")
    assert after is not None and after.request_id == blocked.request_id


def test_requests_over_replica_sets_that_share_a_url_never_run_at_once(queue: RunQueue) -> None:
    first = submit(queue, "a", priority=9, container_urls=["http://r1", "http://r2"])
    overlapping = submit(queue, "b", priority=8, container_urls=["http://r2", "http://r3"])
    single = submit(queue, "c", priority=7, container_url="http://r1")  # one of the first set's replicas
    disjoint = submit(queue, "d", priority=6, container_urls=["http://r4", "http://r5"])
    assert first.container_url == "http://r1, http://r2"  # what the request shows
    held = queue.claim("w1")
    assert held is not None and held.request_id == first.request_id
    nxt = queue.claim("w2")
    assert nxt is not None and nxt.request_id == disjoint.request_id  # both others share a URL with the first
    assert queue.claim("w3") is None
    assert queue.recover().invariants["status"] == "ok"  # every held resource has its lease row
    queue.complete(held.request_id, lease_token=held.lease_token)
    after = queue.claim("w3")
    assert after is not None and after.request_id == overlapping.request_id
    last = queue.claim("w4")  # r1 is free again and the running sets hold r2, r3, r4, r5
    assert last is not None and last.request_id == single.request_id


def test_an_expired_holder_does_not_block_its_resource(queue: RunQueue, clock: FakeClock) -> None:
    submit(queue, "a", container_url="http://c")
    later = submit(queue, "b", container_url="http://c")
    assert queue.claim("w1") is not None
    assert queue.claim("w2") is None
    clock.advance(LEASE + 1)
    claimed = queue.claim("w2")
    assert claimed is not None and claimed.request_id == later.request_id


def test_cancelling_a_queued_request_cancels_it_at_once(queue: RunQueue) -> None:
    request = submit(queue, "r1")
    cancelled = queue.cancel(request.request_id, reason="not needed")
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert cancelled.cancel["reason"] == "not needed"
    assert queue.claim("w") is None
    assert queue.cancel(request.request_id).status == "cancelled"  # idempotent on a terminal request


def test_cancelling_a_running_request_asks_its_worker_to_stop(queue: RunQueue) -> None:
    submit(queue, "r1")
    claimed = queue.claim("w")
    assert claimed is not None
    rid, token = claimed.request_id, claimed.lease_token
    queue.start(rid, token)
    asked = queue.cancel(rid)
    assert asked.status == "running" and asked.cancel_requested is True
    assert queue.heartbeat(rid, token).cancel_requested is True
    error = {"code": "run_cancelled", "message": "run r1 was cancelled", "detail": {}}
    done = queue.complete(
        rid, error=error, result={"manifest_path": "/runs/r1/result_manifest.json"}, lease_token=token
    )
    assert done.status == "cancelled" and done.error == error
    assert done.manifest_path == "/runs/r1/result_manifest.json"


def test_an_expired_request_whose_cancel_was_asked_is_cancelled_by_recover(queue: RunQueue, clock: FakeClock) -> None:
    submit(queue, "r1")
    claimed = queue.claim("w")
    assert claimed is not None
    queue.cancel(claimed.request_id)
    clock.advance(LEASE + 1)
    assert queue.recover().cancelled == (claimed.request_id,)
    assert queue.get(claimed.request_id).status == "cancelled"


def test_complete_imports_the_run_summary_or_the_error(queue: RunQueue) -> None:
    submit(queue, "ok")
    submit(queue, "bad")
    ok, bad = queue.claim("w"), queue.claim("w")
    assert ok is not None and bad is not None
    result = {
        "workspace_db_path": "/runs/ok/workspace.sqlite",
        "manifest_path": "/runs/ok/result_manifest.json",
        "best_candidate_id": "cand-3",
        "cost_usd": 0.25,
        "usage": {"total": {"calls": 4}},
        "stop_reason": "max_train_rollouts",
    }
    done = queue.complete(ok.request_id, result=result, lease_token=ok.lease_token)
    assert done.status == "completed" and done.error is None
    assert (done.workspace_db_path, done.best_candidate_id, done.cost_usd) == (
        result["workspace_db_path"],
        "cand-3",
        0.25,
    )
    assert done.usage == {"total": {"calls": 4}} and done.result == result
    error = {"code": "container_contract", "message": "container died", "detail": {"url": "http://c"}}
    failed = queue.complete(bad.request_id, error=error, lease_token=bad.lease_token)
    assert failed.status == "failed" and failed.error == error and failed.result is None
    with pytest.raises(QueueConflictError):  # a terminal request cannot be completed again
        queue.complete(ok.request_id, lease_token=ok.lease_token)


def test_unfenced_writes_follow_the_state_machine(queue: RunQueue) -> None:
    request = submit(queue, "r1")
    with pytest.raises(QueueConflictError):
        queue.start(request.request_id)  # not claimed yet
    claimed = queue.claim("w")
    assert claimed is not None
    with pytest.raises(LeaseLostError):
        queue.start(request.request_id, "not-the-token")
    assert queue.start(request.request_id).status == "running"
    assert queue.complete(request.request_id).status == "completed"


def test_release_puts_the_request_back_in_the_queue(queue: RunQueue) -> None:
    submit(queue, "r1")
    claimed = queue.claim("w1")
    assert claimed is not None
    released = queue.release(claimed.request_id, claimed.lease_token, reason="worker shutting down")
    assert released.status == "queued" and released.lease_token is None
    again = queue.claim("w2")
    assert again is not None and again.attempts == 2
    with pytest.raises(LeaseLostError):
        queue.release(claimed.request_id, claimed.lease_token, reason="late")


def test_an_unknown_request_is_not_found(queue: RunQueue) -> None:
    calls: list[Callable[[], object]] = [
        lambda: queue.get("req-nope"),
        lambda: queue.cancel("req-nope"),
        lambda: queue.start("req-nope"),
        lambda: queue.heartbeat("req-nope", "token"),
        lambda: queue.complete("req-nope", lease_token="token"),
    ]
    for call in calls:
        with pytest.raises(RunRequestNotFoundError):
            call()


# -- the typed records ------------------------------------------------------------------------------------------


def test_a_request_is_a_typed_frozen_record_whose_dict_is_the_api_shape(queue: RunQueue) -> None:
    request = submit(queue, "r1", container_url="http://c:1", cache_namespace="ns", priority=2, fresh=True)
    assert isinstance(request, RunRequest) and request.status is RequestStatus.QUEUED and request.fresh is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.status = RequestStatus.RUNNING  # type: ignore[misc]
    data = request.to_dict()
    assert data["status"] == "queued" and type(data["status"]) is str and data["cancel_requested"] is False
    assert list(data) == [f.name for f in dataclasses.fields(RunRequest)]
    assert RunRequest(**{**data, "status": RequestStatus(data["status"])}) == request  # the dict round-trips
    assert queue.get(request.request_id) == request  # and so does the row
    claimed = queue.claim("w")
    assert claimed is not None and claimed.lease_token
    error = {"code": "run_failed", "message": "boom", "detail": {"k": [1, 2]}}
    failed = queue.complete(claimed.request_id, error=error, result={"cost_usd": 0.5}, lease_token=claimed.lease_token)
    assert failed.error == error and failed.cost_usd == 0.5 and failed.status.terminal
    assert queue.get(failed.request_id).to_dict() == failed.to_dict()
    recovery = queue.recover()
    assert recovery.to_dict()["recovered"] == 0 and recovery.to_dict()["requeued"] == []


def test_the_status_enum_values_are_the_strings_the_database_stores(queue: RunQueue) -> None:
    assert [status.value for status in RequestStatus] == list(REQUEST_STATUSES)
    assert {s for s in RequestStatus if s.live} == {RequestStatus.QUEUED, RequestStatus.LEASED, RequestStatus.RUNNING}
    assert {s for s in RequestStatus if s.terminal} == {
        RequestStatus.COMPLETED,
        RequestStatus.FAILED,
        RequestStatus.CANCELLED,
    }
    request = submit(queue, "r1")
    assert queue.list_requests(status="queued") == [request]
    assert queue.list_requests(status=RequestStatus.QUEUED) == [request]
    with pytest.raises(ConfigError, match="unknown request status 'done'; use one of queued, leased"):
        queue.list_requests(status="done")


@pytest.mark.anyio
async def test_the_async_queue_shares_the_store_and_the_rules(queue: RunQueue, clock: FakeClock) -> None:
    first = submit(queue, "r1", idempotency_key="k1")
    async with queue.open_async() as aq:
        assert isinstance(aq, AsyncRunQueue)
        assert await aq.get(first.request_id) == first  # what the sync queue wrote
        again = await aq.submit(run_id="r1", config_path="/configs/r1.toml", idempotency_key="k1")
        assert again.deduplicated and again.request == first
        with pytest.raises(QueueConflictError):
            await aq.submit(run_id="r1", config_path="/configs/r1.toml")
        second = (await aq.submit(run_id="r2", config_path="/configs/r2.toml", container_url="http://c")).request
        assert queue.get(second.request_id) == second  # and the sync queue sees what it wrote
        assert {r.request_id for r in await aq.list_requests()} == {first.request_id, second.request_id}
        claimed = queue.claim("w")  # a worker's write, seen at once
        assert claimed is not None and claimed.lease_token is not None
        assert (await aq.get(claimed.request_id)).status is RequestStatus.LEASED
        assert [r.request_id for r in await aq.list_requests(status="leased")] == [claimed.request_id]
        asked = await aq.cancel(claimed.request_id, reason="through the API")
        assert asked.status is RequestStatus.LEASED and asked.cancel_requested
        clock.advance(LEASE + 1)
        recovery = await aq.recover()
        assert recovery.cancelled == (claimed.request_id,) and recovery.invariants["status"] == "ok"
        with pytest.raises(LeaseLostError):  # fenced, and the refusal is audited, as in the sync queue
            await aq.heartbeat(claimed.request_id, claimed.lease_token)
        with pytest.raises(RunRequestNotFoundError):
            await aq.get("req-nope")
        with pytest.raises(ConfigError, match="unknown request status"):
            await aq.list_requests(status="done")
        other = await aq.claim("w2")
        assert other is not None and other.request_id == (second if other.run_id == "r2" else first).request_id
        assert other.lease_token is not None
        await aq.start(other.request_id, other.lease_token)
        done = await aq.complete(other.request_id, result={"cost_usd": 1.0}, lease_token=other.lease_token)
        assert done.status is RequestStatus.COMPLETED and done.cost_usd == 1.0
    assert queue.get(done.request_id) == done


def test_an_attempts_event_lines_are_appended_fenced_and_read_back_in_order(queue: RunQueue, clock: FakeClock) -> None:
    request = submit(queue, "r1")
    first = queue.claim("w")
    assert first is not None and first.lease_token is not None and first.attempts == 1
    queue.append_events(request.request_id, first.lease_token, 1, 0, ['{"n": 0}', '{"n": 1}'])
    queue.append_events(request.request_id, first.lease_token, 1, 2, ['{"n": 2}'])
    queue.append_events(request.request_id, first.lease_token, 1, 1, ['{"n": "again"}', '{"n": 2}'])  # a retry
    assert queue.events(request.request_id, 1) == [(0, '{"n": 0}'), (1, '{"n": 1}'), (2, '{"n": 2}')]
    assert queue.events(request.request_id, 1, after=0, limit=1) == [(1, '{"n": 1}')]
    with pytest.raises(LeaseLostError):  # another worker's token: nothing is written
        queue.append_events(request.request_id, "not-the-token", 1, 3, ['{"n": 3}'])
    clock.advance(LEASE + 1)
    queue.recover()
    with pytest.raises(LeaseLostError):  # the lease is gone: the old attempt's late lines are refused
        queue.append_events(request.request_id, first.lease_token, 1, 3, ['{"n": 3}'])
    second = queue.claim("w2")
    assert second is not None and second.lease_token is not None and second.attempts == 2
    queue.append_events(request.request_id, second.lease_token, 2, 0, ['{"attempt": 2}'])
    assert queue.events(request.request_id, 2) == [(0, '{"attempt": 2}')]  # each attempt its own stream
    assert len(queue.events(request.request_id, 1)) == 3
    with pytest.raises(RunRequestNotFoundError):
        queue.append_events("req-nope", second.lease_token, 1, 0, ["x"])
    many = [f'{{"n": {n}}}' for n in range(250)]  # more rows than one statement takes
    queue.append_events(request.request_id, second.lease_token, 2, 1, many)
    assert [number for number, _ in queue.events(request.request_id, 2, limit=1000)] == list(range(251))


def test_a_write_run_again_after_its_commit_finds_its_own_result(queue: RunQueue) -> None:
    """A driver runs an operation again when its connection was lost before the commit was acknowledged (a
    PostgreSQL restart); the second run must return what the first one did, not take a second lease, refuse the
    worker's own state change or report a conflict with its own submission."""
    from functools import partial

    from synth_opt.service.queue.plans import new_request_id
    from synth_opt.service.queue.surface import SyncQueueSurface

    assert isinstance(queue, SyncQueueSurface)
    again = queue._write  # each call below runs the same plan (same ids) a second time
    submit_plan = partial(
        queue._submit_plan,
        run_id="r1",
        config_path="/configs/r1.toml",
        run_dir=None,
        container_url="http://c",
        cache_namespace=None,
        priority=0,
        idempotency_key=None,
        fresh=False,
        request_id=new_request_id(),
    )
    first, second = again(submit_plan), again(submit_plan)
    assert second.request == first.request and not second.deduplicated
    claim_plan = partial(queue._claim_plan, "w", None, "the-token")
    claimed, reclaimed = again(claim_plan).value(), again(claim_plan).value()
    assert reclaimed == claimed and claimed.attempts == 1 and claimed.lease_token == "the-token"
    start_plan = partial(queue._start_plan, claimed.request_id, "the-token")
    complete_plan = partial(queue._complete_plan, claimed.request_id, {"ok": True}, None, "the-token")
    assert again(start_plan).value().status is RequestStatus.RUNNING
    with pytest.raises(QueueConflictError):  # called twice on purpose, a second start is a conflict ...
        again(start_plan)
    queue.rerun = True  # ... but run again by the driver (the first commit's ack lost), it finds its own result
    try:
        assert again(start_plan).value().status is RequestStatus.RUNNING
    finally:
        queue.rerun = False
    done = again(complete_plan).value()
    assert done.status is RequestStatus.COMPLETED and done.result == {"ok": True}
    with pytest.raises(QueueConflictError):
        again(complete_plan)
    queue.rerun = True
    try:
        assert again(complete_plan).value() == done
        with pytest.raises(LeaseLostError):  # another token still finds nothing of its own
            again(partial(queue._complete_plan, claimed.request_id, {"ok": True}, None, "another-token"))
    finally:
        queue.rerun = False
    assert [r.request_id for r in queue.list_requests()] == [first.request.request_id]
