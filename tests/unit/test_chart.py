"""The per-run score chart: SVG drawn from a synthetic event feed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from synth_opt.run.score_chart import read_events, render_score_chart, write_score_chart

SVG = "{http://www.w3.org/2000/svg}"
SEED = "cand-seed0000"


class Feed:
    """A small run feed: rollouts, a seed, proposals (accepted or rejected), frontier updates, heldout."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.proposals = 0
        self.event("run.state", state="created", run_id="gepa-test1234")

    def event(self, event_type: str, /, **fields: Any) -> None:
        n = len(self.events) + 1
        self.events.append(
            {"sequence_number": n, "ts": "t", "type": event_type, "message": event_type, "fields": fields}
        )

    def rollouts(self, count: int, stage: str = "p.child") -> None:
        for _ in range(count):
            self.event("rollout.completed", stage=stage, reward=1.0)

    def seed(self, score: float) -> None:
        self.rollouts(20, "seed.pareto")
        self.event("seed.scored", candidate_id=SEED, scores={}, mean_score=score)
        self.event("frontier.updated", members=[SEED], best_candidate_id=SEED, best_mean_score=score)

    def propose(self, cid: str, parents: list[str], *, accepted: bool, pareto: float = 0.0) -> None:
        index, self.proposals = self.proposals, self.proposals + 1
        kind = "merge" if len(parents) > 1 else "reflection"
        self.rollouts(10 + (20 if accepted else 0))
        self.event(
            "proposal.created",
            proposal_index=index,
            candidate_id=cid,
            parent_id=parents[0],
            parent_ids=parents,
            kind=kind,
        )
        self.event("candidate.scored", candidate_id=cid, stage=f"p{index}.child", scores={}, mean_score=0.9)
        reason = "improved" if accepted else "not_improved"
        self.event(
            "acceptance.decided",
            proposal_index=index,
            candidate_id=cid,
            accepted=accepted,
            reason=reason,
            parent_sum=2.0,
            child_sum=4.0,
        )
        if accepted:
            self.event("candidate.scored", candidate_id=cid, stage=f"p{index}.pareto", scores={}, mean_score=pareto)
            self.event("candidate.status", candidate_id=cid, status="accepted", parent_ids=parents, mean_score=pareto)
        else:
            self.event("candidate.status", candidate_id=cid, status="rejected", parent_ids=parents)

    def frontier(self, members: list[str], best: str, score: float) -> None:
        self.event("frontier.updated", members=members, best_candidate_id=best, best_mean_score=score)


def full_feed(heldout: bool = True) -> Feed:
    feed = Feed()
    feed.seed(0.30)
    feed.propose("cand-a", [SEED], accepted=True, pareto=0.40)
    feed.frontier([SEED, "cand-a"], "cand-a", 0.40)
    feed.propose("cand-x", ["cand-a"], accepted=False)
    feed.propose("cand-b", [SEED], accepted=True, pareto=0.35)
    feed.frontier([SEED, "cand-a", "cand-b"], "cand-a", 0.40)
    feed.event("mystery.event", anything=[1, 2])
    feed.propose("cand-y", ["cand-b"], accepted=False)
    feed.propose("cand-m", ["cand-a", "cand-b"], accepted=True, pareto=0.55)
    feed.frontier(["cand-a", "cand-m"], "cand-m", 0.55)
    if heldout:
        feed.rollouts(40, "heldout")
        feed.event("heldout.scored", candidate_id=SEED, scores={}, mean_score=0.304)
        feed.event("heldout.scored", candidate_id="cand-m", scores={}, mean_score=0.642)
    feed.event("run.finished", stop_reason="max_train_rollouts", best_candidate_id="cand-m", seed_candidate_id=SEED)
    return feed


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg.encode())
    assert root.tag == f"{SVG}svg" and root.get("version") == "1.1"
    return root


def with_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in root.iter() if name in (el.get("class") or "").split()]


def tooltip(el: ET.Element) -> str:
    title = el.find(f"{SVG}title")
    return "" if title is None else title.text or ""


def text_of(el: ET.Element) -> str:
    return "".join(el.itertext())


def test_the_chart_marks_every_candidate_link_and_the_frontier() -> None:
    root = parse(render_score_chart(full_feed().events, title="banking77"))
    accepted = with_class(root, "accepted")
    assert sorted(tooltip(el).split()[1].rstrip(":") for el in accepted) == ["cand-a", "cand-b", "cand-m"]
    assert [el for el in accepted if "merge" in (el.get("class") or "").split()] != []
    assert len(with_class(root, "seed")) == 1
    assert len(with_class(root, "rejected")) == 2
    links = sorted(tooltip(el) for el in with_class(root, "lineage"))
    assert links == sorted([f"{SEED} → cand-a", f"{SEED} → cand-b", "cand-a → cand-m", "cand-b → cand-m"])
    assert len(with_class(root, "frontier")) == 2
    assert len(with_class(root, "best-so-far")) == 1


def test_the_title_names_the_run_and_the_best_is_labelled() -> None:
    root = parse(render_score_chart(full_feed().events, title="banking77"))
    assert text_of(with_class(root, "title")[0]) == "banking77 · gepa-test1234"
    labels = [text_of(el) for el in with_class(root, "best-label")]
    assert labels == ["best cand-m  0.550"]
    legend = text_of(with_class(root, "legend")[0])
    for entry in ("seed", "accepted (3)", "accepted merge", "on final frontier", "best so far", "rejected (2)"):
        assert entry in legend


def test_the_subtitle_gives_heldout_only_when_scored() -> None:
    with_heldout = text_of(with_class(parse(render_score_chart(full_feed().events, title="t")), "subtitle")[0])
    assert "heldout: seed 0.304 → best 0.642" in with_heldout
    without = text_of(with_class(parse(render_score_chart(full_feed(False).events, title="t")), "subtitle")[0])
    assert "heldout" not in without
    assert "train (pareto rows): seed 0.300 → best 0.550" in without


def test_x_is_train_rollouts_at_the_decision_and_heldout_rollouts_do_not_count() -> None:
    root = parse(render_score_chart(full_feed().events, title="t"))
    xs = {tooltip(el).split()[1].rstrip(":"): float(el.get("cx") or 0) for el in with_class(root, "accepted")}
    assert xs["cand-a"] < xs["cand-b"] < xs["cand-m"]
    # 20 seed rows, three accepted proposals of 30 rollouts and two rejected of 10; the 40 heldout ones are left out
    assert "after 130 train rollouts" in text_of(with_class(root, "footer")[0])


def test_a_seed_only_run_and_an_empty_feed_render() -> None:
    feed = Feed()
    feed.seed(0.25)
    root = parse(render_score_chart(feed.events, title="seed only"))
    assert len(with_class(root, "seed")) == 1 and with_class(root, "accepted") == []
    assert [text_of(el) for el in with_class(root, "best-label")] == [f"best {SEED}  0.250"]
    empty = parse(render_score_chart([], title="nothing yet"))
    assert "no scored candidates yet" in text_of(with_class(empty, "empty")[0])


def test_odd_events_are_skipped_and_text_is_escaped() -> None:
    feed = full_feed()
    odd: list[Any] = [
        "not an event",
        {"type": "acceptance.decided", "fields": "not a dict"},
        {"type": "seed.scored", "fields": {"candidate_id": 7, "mean_score": "high"}},
        {"type": "candidate.scored", "fields": {"candidate_id": "cand-a", "stage": "p9.pareto", "mean_score": None}},
        {"no": "type"},
    ]
    root = parse(render_score_chart(odd + feed.events, title='<run & "friends">'))
    assert text_of(with_class(root, "title")[0]).startswith('<run & "friends">')
    assert len(with_class(root, "accepted")) == 3


def test_write_score_chart_tolerates_a_torn_last_line(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    lines = [json.dumps(event) for event in full_feed().events]
    events.write_text("\n".join(lines) + "\n" + lines[-1][: len(lines[-1]) // 2], encoding="utf-8")
    out = write_score_chart(events, tmp_path / "charts" / "score_chart.svg", title="torn")
    assert out == tmp_path / "charts" / "score_chart.svg"
    root = parse(out.read_text(encoding="utf-8"))
    assert len(with_class(root, "accepted")) == 3
    assert len(list(read_events(events))) == len(lines)  # the torn copy of the last line is skipped
    for el in root.iter():
        assert el.tag.split("}")[1] not in ("script", "image", "foreignObject")
        assert not any(key.endswith("href") for key in el.attrib)


TYPES = ["seed.scored", "proposal.created", "acceptance.decided", "candidate.scored", "candidate.status"]
TYPES += ["frontier.updated", "heldout.scored", "run.finished", "rollout.completed", "run.state", "other"]
scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.sampled_from(["cand-a", SEED, "x"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
keys = st.sampled_from(
    ["candidate_id", "proposal_index", "parent_ids", "parent_id", "accepted", "mean_score", "members"]
)
fields = st.dictionaries(keys | st.sampled_from(["stage", "kind", "best_candidate_id", "run_id"]), values, max_size=6)
events = st.lists(st.fixed_dictionaries({"type": st.sampled_from(TYPES), "fields": fields | values}), max_size=25)


@settings(max_examples=150, deadline=None)
@given(events)
def test_any_feed_renders_to_valid_svg(feed: list[dict[str, Any]]) -> None:
    parse(render_score_chart(full_feed().events[:40] + feed, title="fuzz"))
