"""Tests for rebasing stale proposals (synth_opt.gepa.rebase): the three-way text merge and the rebase target."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from synth_opt.gepa.candidates import CandidateRecord
from synth_opt.gepa.rebase import (
    REGION_TOKENS,
    descends_from,
    merge_text,
    rebase_payload,
    rebase_target,
    repeats_edit,
)
from synth_opt.gepa.state import GepaState, SearchSettings

# -- merge_text ----------------------------------------------------------------------------------------------


def test_an_unchanged_side_takes_the_other() -> None:
    assert merge_text("a b", "a b", "a b c") == "a b c"
    assert merge_text("a b", "a x b", "a b") == "a x b"
    assert merge_text("a b", "a x", "a x") == "a x"


def test_edits_at_different_places_both_apply() -> None:
    base = "Classify the query.\nUse one label.\nBe brief."
    ours = "Classify the banking query.\nUse one label.\nBe brief."
    theirs = "Classify the query.\nUse one label.\nBe brief and exact."
    assert merge_text(base, ours, theirs) == "Classify the banking query.\nUse one label.\nBe brief and exact."


def test_two_insertions_at_one_place_keep_both_the_targets_first() -> None:
    assert merge_text("answer w0", "answer w0 w9", "answer w0 w5 w7") == "answer w0 w5 w7 w9"
    rules = "Rules:\n- be brief"
    merged = merge_text(rules, rules + "\n- cite the label", rules + "\n- never guess")
    assert merged == "Rules:\n- be brief\n- never guess\n- cite the label"


def test_an_insertion_the_other_side_already_holds_is_not_repeated() -> None:
    assert merge_text("answer w0", "answer w0 w9", "answer w0 w5 w9") == "answer w0 w5 w9"
    assert merge_text("answer w0", "answer w0 w5 w9", "answer w0 w9") == "answer w0 w5 w9"


def test_items_appended_to_one_list_line_keep_both() -> None:
    """Punctuation is a token of its own: appending ", c" to a list edits no word of it."""
    base = "card_arrival: card, arrive\nrefund: refund"
    ours = "card_arrival: card, arrive, delivered\nrefund: refund"
    theirs = "card_arrival: card, arrive, post, mail\nrefund: refund, money"
    merged = "card_arrival: card, arrive, post, mail, delivered\nrefund: refund, money"
    assert merge_text(base, ours, theirs) == merged


def test_both_sides_editing_many_lines_merge_line_by_line() -> None:
    labels = [f"label_{i}" for i in range(40)]

    def prompt(extra: dict[str, list[str]]) -> str:
        return "\n".join(f"{label}: " + ", ".join(["card", "pay", *extra.get(label, [])]) for label in labels)

    theirs = {label: [f"t{k}" for k in range(i % 5)] for i, label in enumerate(labels)}  # most lines
    ours = {label: [f"o{i}"] for i, label in enumerate(labels) if i % 3 == 0}
    both = {label: theirs.get(label, []) + ours.get(label, []) for label in labels}
    assert merge_text(prompt({}), prompt(ours), prompt(theirs)) == prompt(both)


def test_a_long_region_both_sides_changed_is_a_conflict() -> None:
    """Past ``REGION_TOKENS`` a region is not diffed word by word (that would be quadratic in repeated tokens)."""
    line = " ".join(f"w{i % 7}," for i in range(REGION_TOKENS))
    assert merge_text(line, line + " x", line + " y") is None
    short = " ".join(f"w{i % 7}," for i in range(20))
    assert merge_text(short, short + " x", short + " y") == short + " y x"


def test_different_edits_of_the_same_words_conflict() -> None:
    assert merge_text("Be brief.", "Be concise.", "Be short.") is None
    assert merge_text("one two three", "one TWO three", "one three") is None


def test_a_rewrite_is_not_carried_over() -> None:
    """Replacing most of the parent's words is a rewrite: merging it with the target's edits would interleave
    two texts, so it is a conflict (the proposal is then scored as proposed)."""
    base = "Classify the customer query into one banking label."
    rewrite = "Read the message and pick the single best intent label."
    theirs = base + " Never guess."
    assert merge_text(base, rewrite, theirs) is None
    assert merge_text(base, base.replace("customer", "client"), theirs) == theirs.replace("customer", "client")
    assert merge_text(base, rewrite, base) == rewrite  # nothing newer to merge with: the rewrite stands


def test_whitespace_and_newlines_are_kept() -> None:
    base = "first\nsecond"
    assert merge_text(base, "first\nsecond\nthird", "zeroth first\nsecond") == "zeroth first\nsecond\nthird"
    assert merge_text("a  b\n", "a  b c\n", "x a  b\n") == "x a  b c\n"


words = st.lists(st.sampled_from([f"w{i}" for i in range(30)]), min_size=1, max_size=12, unique=True)


@settings(max_examples=200, deadline=None)
@given(words, st.data())
def test_insertions_at_two_distinct_places_both_survive_in_order(base_words: list[str], data: st.DataObject) -> None:
    """Each side inserts a word of its own somewhere in the base: the merge holds the base in order and both."""
    i = data.draw(st.integers(0, len(base_words)))
    j = data.draw(st.integers(0, len(base_words)))
    ours_words = [*base_words[:i], "OURS", *base_words[i:]]
    theirs_words = [*base_words[:j], "THEIRS", *base_words[j:]]
    merged = merge_text(" ".join(base_words), " ".join(ours_words), " ".join(theirs_words))
    assert merged is not None
    out = merged.split()
    assert sorted(out) == sorted([*base_words, "OURS", "THEIRS"])
    assert [w for w in out if w not in ("OURS", "THEIRS")] == base_words
    if i != j:
        assert (out.index("OURS") < out.index("THEIRS")) == (i < j)
    assert merge_text(" ".join(base_words), " ".join(ours_words), " ".join(base_words)) == " ".join(ours_words)


def test_rebase_payload_merges_module_by_module() -> None:
    base = {"system": "Be brief.", "user": "Q: {q}"}
    ours = {"system": "Be brief. Cite the label.", "user": "Q: {q}"}
    theirs = {"system": "Be brief.", "user": "Question: {q}"}
    assert rebase_payload(base, ours, theirs) == {"system": "Be brief. Cite the label.", "user": "Question: {q}"}
    assert rebase_payload(base, {**base, "user": "Query: {q}"}, theirs) is None


# -- the rebase target ------------------------------------------------------------------------------------------

ROWS = ("p0", "p1", "p2", "p3")


def record(cid: str, parents: tuple[str, ...], index: int, mean: float) -> CandidateRecord:
    return CandidateRecord(
        candidate_id=cid,
        payload={"m": cid},
        parent_ids=parents,
        pool_index=index,
        module_changed="m",
        proposal_index=index - 1 if index else None,
        scores=dict.fromkeys(ROWS, mean),
    )


def pool(*records: CandidateRecord) -> dict[str, CandidateRecord]:
    return {r.candidate_id: r for r in records}


def test_the_target_is_the_best_newer_descendant_ties_to_the_newer() -> None:
    seed = record("s", (), 0, 0.2)
    a = record("a", ("s",), 1, 0.5)  # planned after a: not newer than the plan
    b = record("b", ("a",), 2, 0.6)
    c = record("c", ("s",), 3, 0.9)  # not a descendant of a
    d = record("d", ("b",), 4, 0.6)  # ties b, newer
    by_id = pool(seed, a, b, c, d)
    assert rebase_target(a, [b, c, d], by_id) is d
    assert rebase_target(a, [b, c], by_id) is b
    assert rebase_target(seed, [b, c, d], by_id) is c
    assert rebase_target(c, [d], by_id) is c  # nothing newer descends from c


def test_a_worse_descendant_is_no_target() -> None:
    seed = record("s", (), 0, 0.5)
    worse = record("w", ("s",), 1, 0.25)
    assert rebase_target(seed, [worse], pool(seed, worse)) is seed


def test_descent_follows_every_parent_of_a_merge() -> None:
    seed = record("s", (), 0, 0.2)
    a = record("a", ("s",), 1, 0.3)
    b = record("b", ("s",), 2, 0.3)
    merged = record("m", ("a", "b"), 3, 0.4)
    by_id = pool(seed, a, b, merged)
    assert descends_from(merged, "b", by_id) and descends_from(merged, "s", by_id)
    assert not descends_from(a, "b", by_id)
    assert rebase_target(b, [merged], by_id) is merged


def test_the_state_looks_only_at_candidates_added_after_the_plan() -> None:
    state = GepaState(SearchSettings(seed=0, modules=("m",)), ROWS, [f"t{i}" for i in range(9)])
    seed = state.add_seed({"m": "s"}, dict.fromkeys(ROWS, 0.0))
    early = state.plan()
    first = state.commit(early, {"m": "s a"}, dict.fromkeys(ROWS, 0.5))
    assert first is not None
    stale = state.plan()  # planned from the pool {seed, first}
    assert stale.pool_version == 1
    assert state.rebase_target(stale).candidate_id == stale.parent_id  # nothing newer yet
    later = state.plan()
    second = state.commit(later, {"m": "s a b"}, dict.fromkeys(ROWS, 0.75), parents=(first.candidate_id,))
    assert second is not None and second.parent_ids == (first.candidate_id,)
    assert first.parent_ids == (seed.candidate_id,)
    assert state.rebase_target(stale) is second  # descends from whichever parent was chosen, newer and better
    after = state.plan()
    assert state.rebase_target(after).candidate_id == after.parent_id  # planned after ``second``: nothing newer


def test_an_edit_another_version_already_makes_repeats_it() -> None:
    parent = {"instruction": "Answer with one word.", "format": "plain"}
    other = {"instruction": "Answer with one word. Mention pear.", "format": "plain"}
    assert repeats_edit(parent, other, other)  # the same text
    assert repeats_edit(parent, {"instruction": "Answer with one word. Mention", "format": "plain"}, other)
    more = {"instruction": "Answer with one word. Mention pear. Mention fig.", "format": "plain"}
    assert not repeats_edit(parent, more, other)  # it adds a word the other lacks
    assert not repeats_edit(parent, {"instruction": "Answer with one word.", "format": "json"}, other)
    assert not repeats_edit(parent, {"instruction": "Answer in one word.", "format": "plain"}, other)


def test_no_edit_is_repeated_by_a_version_without_one() -> None:
    parent = {"instruction": "Answer with one word."}
    assert not repeats_edit(parent, {"instruction": "Answer with one word. Mention pear."}, parent)
