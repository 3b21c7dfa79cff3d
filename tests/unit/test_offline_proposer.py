"""The ``offline`` proposer backend: the feedback-notes rule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from synth_opt.proposers.offline import FeedbackNotesProposer, feedback_notes
from synth_opt.proposers.reflection import ConcurrentEdit, ReflectionRequest, ReflectiveRecord


def request(text: str, *records: tuple[float, str | None], proposals: int = 1) -> ReflectionRequest:
    return ReflectionRequest(
        candidate_id="cand-x",
        candidate={"prompt": text, "other": "untouched"},
        target_module="prompt",
        records=tuple(
            ReflectiveRecord(task_id=str(i), task={}, output=None, reward=reward, feedback=feedback)
            for i, (reward, feedback) in enumerate(records)
        ),
        proposals=proposals,
    )


def test_failed_rows_feedback_becomes_notes_once_each_in_row_order() -> None:
    asked = request("Name fruit.", (0.0, "Name pear.\nmore detail"), (1.0, "Name fig."), (0.5, "Name kiwi."))
    assert feedback_notes(asked) == ["Name fruit.\n- Name pear.\n- Name kiwi."]
    again = request("Name fruit.\n- Name pear.", (0.0, "Name pear."), (0.0, None), (0.0, "Name pear."))
    assert feedback_notes(again) == ["Name fruit.\n- Name pear."]  # nothing new: the text unchanged


def test_asked_again_it_leaves_out_the_notes_proposals_in_flight_already_add() -> None:
    asked = request("Name fruit.", (0.0, "Name pear."), (0.0, "Name kiwi."))
    in_flight = replace(asked, concurrent_edits=(ConcurrentEdit(3, "Name fruit.\n- Name pear."),))
    assert feedback_notes(in_flight) == ["Name fruit.\n- Name kiwi."]
    taken = replace(asked, concurrent_edits=(ConcurrentEdit(3, "Name fruit.\n- Name pear.\n- Name kiwi."),))
    assert feedback_notes(taken) == ["Name fruit."]  # nothing left to add


def test_several_proposals_carry_one_more_note_each() -> None:
    asked = request("x", (0.0, "a"), (0.0, "b"), (0.0, "c"), proposals=2)
    assert feedback_notes(asked) == ["x\n- a", "x\n- a\n- b"]


@pytest.mark.anyio
async def test_the_proposer_is_free_and_names_its_reply() -> None:
    result = await FeedbackNotesProposer().propose(request("x", (0.0, "a")))
    assert result.texts == ("x\n- a",) and result.usage.cost_usd == 0.0 and result.usage.total_tokens == 0
    assert '"proposals"' in result.raw_text
