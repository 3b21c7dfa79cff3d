"""Texts from outside the run: lone surrogates replaced, long texts cut with a marker naming the whole length."""

from __future__ import annotations

import json

from synth_opt.texts import cut_text, without_lone_surrogates


def decoded(raw: bytes) -> object:
    return without_lone_surrogates(json.loads(raw), raw)


def test_a_lone_surrogate_becomes_a_replacement_character_in_texts_and_keys_at_any_depth() -> None:
    raw = b'{"feedback": "cut \\ud83d here", "a\\uDC00": [{"b": ["\\udfff"]}], "n": 1.5}'
    assert decoded(raw) == {"feedback": "cut \ufffd here", "a\ufffd": [{"b": ["\ufffd"]}], "n": 1.5}
    assert json.dumps(decoded(raw), ensure_ascii=False).encode("utf-8")  # now writable as UTF-8
    # the raw bytes of a surrogate (which json.loads lets through) too
    assert decoded(b'["\xed\xa0\xbd"]') == ["\ufffd"]


def test_a_whole_pair_and_plain_text_are_left_as_they_are() -> None:
    assert decoded(b'{"emoji": "\\ud83d\\ude00", "e": "\xc3\xa9"}') == {"emoji": "\U0001f600", "e": "\u00e9"}
    plain = json.loads(b'{"a": ["b"]}')
    assert without_lone_surrogates(plain, b'{"a": ["b"]}') is plain  # nothing to do: the value itself


def test_a_cut_names_the_whole_length() -> None:
    assert cut_text("abcdef", 6) == "abcdef"
    assert cut_text("abcdef", 2) == "ab [... cut: 2 of 6 characters shown]"
    assert cut_text("ab [... cut: 2 of 600 characters shown]", 1, total=600) == "a [... cut: 1 of 600 characters shown]"
