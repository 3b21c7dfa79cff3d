"""A proposer that serves nothing is waited out for ``proposer.outage_timeout_seconds`` counted from the start of
the first call that failed, its own duration included (a call that spends minutes in retries before it gives up
is part of the outage), and never past the run's time limit (``gepa.max_time_seconds``), on an injected clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth_opt.actors.messages import ProposeDone, ProposeJob
from synth_opt.actors.proposer import propose_handler
from synth_opt.errors import ProposerError, ProposerUnavailableError
from synth_opt.events import EventBus
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest, ReflectiveRecord

CALL_SECONDS = 50.0  # each failing call takes this long (its retries and their waits)
REQUEST = ReflectionRequest(
    candidate_id="cand-0",
    candidate={"p": "x"},
    target_module="p",
    records=(ReflectiveRecord(task_id="t1", task={}, output=None, reward=0.0, feedback=None),),
)


class SlowlyDown:
    backend = "test"

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.calls = 0

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        self.calls += 1
        self.clock[0] += CALL_SECONDS
        raise ProposerUnavailableError("HTTP 503 after the retries")

    async def aclose(self) -> None:
        return None


async def served_down(
    tmp_path: Path, start: float, *, outage_timeout_seconds: float, time_left: float | None = None
) -> tuple[SlowlyDown, ProposeDone]:
    """One proposer call against :class:`SlowlyDown` on a clock that starts at ``start`` and that every pause
    advances; ``time_left``: the run's time limit, counted from 0."""
    now = [start]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    proposer = SlowlyDown(now)
    bus = EventBus(tmp_path / "events.jsonl")
    handle = propose_handler(
        proposer,
        bus=bus,
        outage_timeout_seconds=outage_timeout_seconds,
        clock=lambda: now[0],
        sleep=sleep,
        time_left=(lambda: None) if time_left is None else (lambda: time_left - now[0]),
    )
    done = await handle(ProposeJob(0, REQUEST))
    bus.close()
    return proposer, done


@pytest.mark.anyio
async def test_the_outage_is_counted_from_the_start_of_the_first_failed_call(tmp_path: Path) -> None:
    proposer, done = await served_down(tmp_path, 1000.0, outage_timeout_seconds=120)
    # calls end at 50, 101 (after a 1 s pause) and 153 (after 2 s): 153 s since the first call began, past 120
    assert proposer.calls == 3
    assert isinstance(done.error, ProposerError)
    assert "served nothing for 153 s" in done.error.message, done.error.message


@pytest.mark.anyio
async def test_an_outage_is_not_waited_out_past_the_run_s_time_limit(tmp_path: Path) -> None:
    proposer, done = await served_down(tmp_path, 0.0, outage_timeout_seconds=600, time_left=70.0)
    # calls end at 50 and 101 (after a 1 s pause, cut to what was left): past 70 the call is given up, long before
    # 600 s, and the proposal is handed back as cut by the time limit, not as an error that would fail the run
    assert proposer.calls == 2
    assert done.time_limit and done.error is None and done.result is None
