"""The proposer reply parser against a corpus of real-shaped replies (tests/unit/proposer_replies/): it reads what a
person would read as the proposal and adopts nothing else; every refusal is a ProposerReplyError that keeps the
reply and says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth_opt.errors import ProposerReplyError
from synth_opt.proposers.reflection import (
    REFLECTION_BLOCK_TAG,
    ReflectionRequest,
    ReflectiveRecord,
    parse_reply,
    render_prompt,
)
from synth_opt.proposers.stdio_app_server import extract_reflection_request

CORPUS = Path(__file__).parent / "proposer_replies"
EXPECTED: dict[str, dict[str, object]] = {
    name: value
    for name, value in json.loads((CORPUS / "expected.json").read_text(encoding="utf-8")).items()
    if not name.startswith("_")
}


def test_every_reply_file_has_an_expectation() -> None:
    assert sorted(path.name for path in CORPUS.glob("*.txt")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_reply(name: str) -> None:
    reply = (CORPUS / name).read_text(encoding="utf-8")
    expected = EXPECTED[name]
    if "texts" in expected:
        assert parse_reply(reply, wanted=2, module="system_prompt") == expected["texts"]
        return
    with pytest.raises(ProposerReplyError) as caught:
        parse_reply(reply, wanted=2, module="system_prompt")
    assert str(expected["error"]) in caught.value.message
    assert caught.value.raw_reply == reply


def _request(**changes: object) -> ReflectionRequest:
    fields: dict[str, object] = {
        "candidate_id": "cand-0",
        "candidate": {"system_prompt": "Answer briefly.", "footer": "Thanks."},
        "target_module": "system_prompt",
        "records": (ReflectiveRecord(task_id="t1", task={"q": "2+2"}, output="5", reward=0.0, feedback="wrong"),),
        "proposals": 2,
    }
    fields.update(changes)
    return ReflectionRequest(**fields)  # type: ignore[arg-type]


def test_the_prompt_ends_with_the_reply_instructions_and_an_example_reply() -> None:
    prompt = render_prompt(_request())
    tail = prompt[prompt.rindex("```") :]  # after the last fence: instructions and the example, nothing to copy
    assert '{"proposals": [' in tail
    assert "candidate" not in tail
    assert prompt.rstrip().endswith("]}")
    example = prompt[prompt.rindex('{"proposals": [') :]
    assert isinstance(json.loads(example)["proposals"], list)


def test_the_machine_readable_block_keeps_what_offline_proposers_read_but_no_candidate_object() -> None:
    prompt = render_prompt(_request())
    block = extract_reflection_request(prompt)
    assert block["current_text"] == "Answer briefly."
    assert block["proposals"] == 2 and block["records"][0]["feedback"] == "wrong"
    assert "candidate" not in block  # the shape models copied instead of answering {"proposals": [...]}
    assert block["other_modules"] == {"footer": "Thanks."}
    assert prompt.index(f"```json {REFLECTION_BLOCK_TAG}") < prompt.index("## Your reply")
