"""The propose actor: one reflection request in, proposals (or the proposer's error) out.

A proposer call ends in one of three ways:

- proposals: the texts go to the supervisor;
- a reply that was served but is unusable (:class:`~synth_opt.errors.ProposerReplyError`): handed to the
  supervisor, which commits it as a failed proposal in proposal order (its usage is charged);
- nothing served (:class:`~synth_opt.errors.ProposerUnavailableError`: refused, reset, 429/5xx after the client's
  retries, no message in time): an outage, never an outcome. The call waits and is made again, with a growing
  pause (the probe), until it is served; if nothing is served within ``proposer.outage_timeout_seconds`` of the
  first failure, the run fails with a ProposerError. Nothing is committed from an outage, so the run makes the
  decisions of an uninterrupted one. If the run's time limit (``gepa.max_time_seconds``) passes first, the call
  is given up (``time_limit``): the supervisor decides the proposal ``time_limit``, nothing adopted, and stops the
  search there, as the time limit stops it anywhere else.

What the proposer saw and said is kept whatever the cache mode: with ``calls_dir`` set, each call's rendered
prompt and raw reply are written to ``p<index>.prompt.md`` and ``p<index>.reply.txt`` there (the run directory's
``proposer_calls/``; a proposal asked again writes ``p<index>.2.prompt.md`` and ``p<index>.2.reply.txt``), and the
events carry their names, sizes and digests, with a bounded excerpt of the reply
(the workspace keeps every event).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import anyio

from synth_opt.actors.messages import ProposeDone, ProposeJob
from synth_opt.errors import ProposerError, ProposerReplyError, ProposerUnavailableError, RunFailedError
from synth_opt.events import EventBus
from synth_opt.events.types import ProposerCalled, ProposerFailed, ProposerOutage, ReflectionRequested
from synth_opt.proposers.base import Proposer, ProposerResult
from synth_opt.proposers.reflection import render_prompt
from synth_opt.usage import Usage

__all__ = ["OUTAGE_PROBE_DELAYS_SECONDS", "propose_handler"]

OUTAGE_PROBE_DELAYS_SECONDS: Final = (1.0, 2.0, 4.0, 8.0, 15.0)
_REPLY_EXCERPT_CHARS: Final = 2000


def propose_handler(
    proposer: Proposer,
    *,
    bus: EventBus,
    outage_timeout_seconds: float = 120.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    calls_dir: Path | None = None,
    time_left: Callable[[], float | None] = lambda: None,
) -> Callable[[ProposeJob], Awaitable[ProposeDone]]:
    """``time_left``: the seconds left of the run's time limit (None without one); an outage is not waited out
    past it."""

    async def handle(job: ProposeJob) -> ProposeDone:
        request = job.request
        stem = f"p{job.proposal_index:05d}" + ("" if job.attempt == 1 else f".{job.attempt}")
        again: dict[str, Any] = {} if job.attempt == 1 else {"attempt": job.attempt}
        bus.emit(
            ReflectionRequested(
                proposal_index=job.proposal_index,
                candidate_id=request.candidate_id,
                module=request.target_module,
                records=tuple(
                    {"task_id": r.task_id, "reward": r.reward, "feedback": r.feedback}
                    | ({"cut": r.cut} if r.cut else {})
                    for r in request.records
                ),
                omitted_records=request.omitted_records,
                **_kept(calls_dir, f"{stem}.prompt.md", render_prompt(request), "prompt"),
                **again,
            ),
            f"proposal {job.proposal_index}: reflect on {len(request.records)} rows of {request.candidate_id}",
            lane="propose",
        )
        try:
            result = await _served(proposer, job, bus, outage_timeout_seconds, clock, sleep, time_left)
        except _TimeLimitPassed:
            return ProposeDone(job.proposal_index, None, None, time_limit=True)
        except ProposerError as exc:
            usage = exc.usage if isinstance(exc, ProposerReplyError) and isinstance(exc.usage, Usage) else None
            bus.emit(
                ProposerFailed(
                    proposal_index=job.proposal_index,
                    backend=proposer.backend,
                    model=getattr(proposer, "model", None),
                    outcome="unusable_reply" if isinstance(exc, ProposerReplyError) else "error",
                    error=exc.message,
                    usage=None if usage is None else usage.to_dict(),
                    **(
                        _kept(calls_dir, f"{stem}.reply.txt", exc.raw_reply, "reply")
                        if isinstance(exc, ProposerReplyError)
                        else {}
                    ),
                    **again,
                ),
                f"proposal {job.proposal_index}: {exc.message}",
                lane="propose",
            )
            return ProposeDone(job.proposal_index, None, exc)
        bus.emit(
            ProposerCalled(
                proposal_index=job.proposal_index,
                backend=proposer.backend,
                model=getattr(proposer, "model", None),
                outcome="ok",
                texts=len(result.texts),
                duration_seconds=round(result.duration_seconds, 6),
                usage=result.usage.to_dict(),
                **_kept(calls_dir, f"{stem}.reply.txt", result.raw_text, "reply"),
                **again,
            ),
            f"proposal {job.proposal_index}: {len(result.texts)} text(s)",
            lane="propose",
        )
        return ProposeDone(job.proposal_index, result, None)

    return handle


class _TimeLimitPassed(Exception):
    """The run's time limit passed during an outage: the call is given up."""


async def _served(
    proposer: Proposer,
    job: ProposeJob,
    bus: EventBus,
    outage_timeout_seconds: float,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    time_left: Callable[[], float | None],
) -> ProposerResult:
    """The call's result once something was served: an outage is waited out (or fails the run), never past the
    run's time limit (:class:`_TimeLimitPassed`: the call is given up)."""
    first_failure: float | None = None
    attempt = 0
    while True:
        started = clock()
        try:
            result = await proposer.propose(job.request)
        except ProposerUnavailableError as exc:
            now = clock()
            first_failure = started if first_failure is None else first_failure  # the failed call's time counts
            waited = now - first_failure
            left = time_left()
            if left is not None and left <= 0:
                bus.emit(
                    ProposerOutage("time_limit", job.proposal_index, error=exc.message),
                    f"proposal {job.proposal_index}: gepa.max_time_seconds passed while the proposer "
                    f"({proposer.backend}) served nothing (for {waited:.0f} s): given up, the search stops",
                    lane="propose",
                )
                raise _TimeLimitPassed from None
            if waited >= outage_timeout_seconds:
                bus.emit(
                    ProposerOutage("failed", job.proposal_index, error=exc.message),
                    f"proposer served nothing for {waited:.0f} s: failing the run",
                    lane="propose",
                )
                raise ProposerError(
                    f"the proposer ({proposer.backend}) served nothing for {waited:.0f} s "
                    f"(proposer.outage_timeout_seconds = {outage_timeout_seconds:g}); last error: {exc.message}. "
                    "Check that its server is up and reachable, then re-run the same config to resume (what the "
                    "run committed is kept)",
                    backend=proposer.backend,
                ) from None
            delay = OUTAGE_PROBE_DELAYS_SECONDS[min(attempt, len(OUTAGE_PROBE_DELAYS_SECONDS) - 1)]
            delay = min(delay, max(0.0, first_failure + outage_timeout_seconds - now))
            if left is not None:
                delay = min(delay, max(0.0, left))
            bus.emit(
                ProposerOutage("waiting", job.proposal_index, attempt=attempt + 1, error=exc.message),
                f"proposal {job.proposal_index}: proposer unavailable ({exc.message}); trying again in {delay:g} s",
                lane="propose",
            )
            attempt += 1
            await sleep(delay)
            continue
        if attempt:
            bus.emit(
                ProposerOutage("closed", job.proposal_index),
                f"proposal {job.proposal_index}: proposer served again after {attempt} failed attempt(s)",
                lane="propose",
            )
        return result


def _kept(calls_dir: Path | None, name: str, text: str, kind: str) -> dict[str, Any]:
    """Write ``text`` to ``calls_dir/name`` and describe it for an event: its file, size, digest and, for a
    reply, a bounded excerpt."""
    fields: dict[str, Any] = {
        f"{kind}_chars": len(text),
        f"{kind}_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    if kind == "reply":
        fields["reply"] = text[:_REPLY_EXCERPT_CHARS]
    if calls_dir is not None:
        path = calls_dir / name
        try:
            calls_dir.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as error:
            raise RunFailedError(
                f"could not write {path}: {error.strerror or error}; free space (or fix permissions) and re-run the "
                "same config to resume from its last checkpoint",
                path=str(path),
            ) from None
        fields[f"{kind}_file"] = f"{calls_dir.name}/{name}"
    return fields
