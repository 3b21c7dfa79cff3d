"""What a run keeps of a long rollout reply (``synth_opt.container.kept``): the start of its feedback and
trace, with their whole length and digest, so that its feed and workspace stay bounded while the proposer is shown
exactly what the whole reply would have shown it."""

from __future__ import annotations

import hashlib
import json

import pytest

from synth_opt.actors.evaluations import EvaluationStore
from synth_opt.actors.messages import BatchDone, RolloutDone, RolloutJob
from synth_opt.container.kept import STORED_CHARS, kept_chars, kept_reply, shortened, trace_digest
from synth_opt.container.replies import validate_rollout_reply
from synth_opt.container.wire import RolloutReply
from synth_opt.proposers.reflection import ReflectionRequest, ReflectiveRecord, bound_records, fit_request
from synth_opt.usage import Usage

LIMIT = 1_000


def reply(feedback: str | None, trace: object) -> RolloutReply:
    return RolloutReply(
        rollout_id="ro-1",
        status="completed",
        reward=0.5,
        objectives={"outcome_reward": 0.5},
        usage=Usage(total_tokens=12),
        trace=trace,
        feedback=feedback,
        raw={
            "rollout_id": "ro-1",
            "status": "completed",
            "reward_info": {"outcome_reward": 0.5, "feedback": feedback},
            "trace": trace,
        },
    )


def record(source: RolloutReply) -> ReflectiveRecord:
    """The record a proposal's request holds for the reply (as actors.reflection builds it)."""
    return ReflectiveRecord("t1", {"q": "x"}, source.trace, source.reward, source.feedback, cut=dict(source.cut))


def test_a_short_reply_is_kept_whole() -> None:
    whole = reply("short feedback", {"steps": [1, 2, 3]})
    assert kept_reply(whole, LIMIT) is whole


def test_a_long_feedback_and_trace_are_cut_with_their_whole_length_and_digest() -> None:
    feedback = "expected w3. " + "verbose " * 5_000
    trace = {"turns": [{"said": "word " * 50, "i": i} for i in range(100)]}
    kept = kept_reply(reply(feedback, trace), LIMIT)
    assert kept.feedback is not None and kept.feedback.startswith(feedback[:LIMIT])
    assert kept.feedback.endswith(f"[... cut: {LIMIT} of {len(feedback)} characters shown]")
    shown = json.dumps(trace, sort_keys=True, ensure_ascii=False)
    assert kept.trace == f"{shown[:LIMIT]} [... cut: {LIMIT} of {len(shown)} characters shown]"
    assert kept.cut == {
        "feedback": {"chars": len(feedback), "sha256": hashlib.sha256(feedback.encode()).hexdigest()},
        "output": {"chars": len(shown), "sha256": hashlib.sha256(shown.encode()).hexdigest()},
    }
    assert (kept.reward, kept.objectives, kept.usage, kept.status) == (
        0.5,
        {"outcome_reward": 0.5},
        Usage(total_tokens=12),
        "completed",
    )
    # the raw reply keeps what was kept, so validated again (a cached reply) it gives the kept reply back
    again = validate_rollout_reply(kept.raw, "ro-1", url="http://container.test", route="/rollout")
    assert (again.feedback, again.trace, again.reward) == (kept.feedback, kept.trace, kept.reward)
    assert kept.whole_trace_digest == trace_digest(trace) and len(json.dumps(kept.raw)) < 3 * LIMIT


def test_a_reply_kept_before_is_left_as_it_is() -> None:
    """A cached reply comes back kept, ``cut`` set: keeping it again changes nothing."""
    kept = kept_reply(reply("verbose " * 5_000, ["step"] * 2_000), LIMIT)
    assert kept_reply(kept, LIMIT) is kept


@pytest.mark.parametrize("shown_chars", [50, 999, LIMIT])
def test_the_proposer_is_shown_what_the_whole_reply_would_show_it(shown_chars: int) -> None:
    """For any ``max_feedback_chars`` up to what was kept, and when a prompt too long for ``max_prompt_tokens`` is
    cut further, the records and prompts from the kept reply equal those from the whole reply."""
    whole = reply("expected w3. " + "verbose " * 5_000, {"turns": ["step " * 40] * 60})
    kept = kept_reply(whole, LIMIT)
    assert bound_records((record(kept),), shown_chars) == bound_records((record(whole),), shown_chars)

    def request(source: RolloutReply) -> ReflectionRequest:
        return ReflectionRequest("c", {"p": "text " * 30}, "p", (record(source),) * 6)

    for tokens in (1_200, 3_000, 16_000):  # the prompt fitted by cutting rows further, or not at all
        fitted = [
            fit_request(request(source), max_feedback_chars=shown_chars, max_prompt_tokens=tokens)
            for source in (kept, whole)
        ]
        assert fitted[0] == fitted[1] and fitted[0].records
        assert f"of {len(whole.feedback or '')} characters shown" in json.dumps(fitted[0].to_json())


def test_a_run_keeps_at_least_what_its_proposer_may_be_shown() -> None:
    """``STORED_CHARS``, or ``max_feedback_chars`` when larger, but never more than a whole prompt holds."""
    assert kept_chars(4_000, 64_000) == STORED_CHARS
    assert kept_chars(200_000, 16_000 * 4) == STORED_CHARS
    assert kept_chars(200_000, 100_000 * 4) == 200_000
    assert kept_chars(10**9, 100_000 * 4) == 400_000


@pytest.mark.parametrize("shown_chars", [50, 999])
def test_an_evaluation_kept_for_what_the_proposer_is_shown_shows_it_the_same(shown_chars: int) -> None:
    """The evaluation store keeps of a reply only what a proposer may be shown (``max_feedback_chars``): cut
    from the reply kept on receipt or from the whole one, a row is shown the same, with its whole length named."""
    whole = reply("expected w3. " + "verbose " * 5_000, {"turns": ["step " * 40] * 60})
    kept = kept_reply(whole, LIMIT)
    stored = shortened(kept, shown_chars)
    assert stored.cut == kept.cut and stored.raw == {} and len(stored.feedback or "") < shown_chars + 60
    for limit in (shown_chars, shown_chars // 2, 20):  # as the prompt is fitted, rows are cut shorter
        assert bound_records((record(stored),), limit) == bound_records((record(whole),), limit)
    short = reply("short", {"a": 1})
    assert shortened(short, shown_chars).feedback == "short" and shortened(short, shown_chars).trace == {"a": 1}


def test_a_store_rebuilt_from_the_feed_keeps_at_most_what_the_proposer_is_shown() -> None:
    store = EvaluationStore()
    kept = kept_reply(reply("verbose " * 5_000, ["step"] * 2_000), LIMIT)
    done = RolloutDone(RolloutJob(0, 1, 0, "ro-1", "seed.pareto", "c", {"p": "x"}, "t1", {}), kept, None, 0.0)
    store.add(BatchDone(0, (done,)), visible_from=0)
    assert store.get("c", "t1") is not None and len(store.get("c", "t1").feedback or "") > LIMIT  # type: ignore[union-attr]
    store.keep_at_most(100)
    again = store.get("c", "t1")
    assert again is not None and len(again.feedback or "") < 160 and again.cut == kept.cut
