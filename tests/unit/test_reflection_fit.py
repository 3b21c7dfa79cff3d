"""The reflection request cut to its prompt limit: what goes first."""

from __future__ import annotations

from synth_opt.proposers.reflection import (
    ConcurrentEdit,
    ReflectionRequest,
    ReflectiveRecord,
    RejectedEdit,
    fit_request,
)


def test_a_prompt_over_its_limit_drops_the_rejected_edits_before_the_examples_and_the_text() -> None:
    long_edits = tuple(RejectedEdit(i, "x" * 3000, 0.1, "not_improved") for i in range(5))
    rows = tuple(
        ReflectiveRecord(task_id=str(i), task={"q": "y" * 200}, output=None, reward=0.0, feedback="f") for i in range(4)
    )
    asked = ReflectionRequest(
        candidate_id="c", candidate={"prompt": "keep me whole"}, target_module="prompt", records=rows,
        rejected_edits=long_edits,
    )  # fmt: skip
    fitted = fit_request(asked, max_prompt_tokens=2500)  # 10,000 characters: room for the rows and two edits
    assert fitted.records == rows and fitted.candidate == {"prompt": "keep me whole"}
    assert [edit.proposal_index for edit in fitted.rejected_edits] == [3, 4]  # the oldest went first


def test_the_edits_of_proposals_in_flight_go_after_the_rejected_ones_and_before_the_examples() -> None:
    rows = tuple(
        ReflectiveRecord(task_id=str(i), task={"q": "y" * 200}, output=None, reward=0.0, feedback="f") for i in range(4)
    )
    asked = ReflectionRequest(
        candidate_id="c", candidate={"prompt": "keep me whole"}, target_module="prompt", records=rows,
        rejected_edits=(RejectedEdit(0, "r" * 3000, 0.1, "not_improved"),),
        concurrent_edits=tuple(ConcurrentEdit(i, "x" * 3000) for i in range(1, 4)),
    )  # fmt: skip
    fitted = fit_request(asked, max_prompt_tokens=2500)  # room for the rows and two edits
    assert fitted.records == rows and fitted.candidate == {"prompt": "keep me whole"}
    assert fitted.rejected_edits == ()
    assert [edit.proposal_index for edit in fitted.concurrent_edits] == [2, 3]  # the oldest went first
