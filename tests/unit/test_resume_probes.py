"""Served outage probes (canaries) are spend that is never done again: a resume keeps their lines as they are, even
after the checkpoint it starts from, and counts their usage as discarded; work after the checkpoint is replaced
by ``event.discarded`` lines as before."""

from __future__ import annotations

import json
from pathlib import Path

from synth_opt.events.model import Event
from synth_opt.run.resume import Discarded, prepare_resume

USAGE = {"calls": 1, "prompt_tokens": 70, "completion_tokens": 5, "total_tokens": 75, "cost_usd": 0.0001}


def line(number: int, kind: str, **fields: object) -> str:
    event = Event(number, "2026-12-06T00:00:00Z", kind, kind, dict(fields), "rollout")
    return json.dumps(event.to_json()) + "\n"


def test_a_resume_keeps_served_probes_and_counts_them_as_discarded(tmp_path: Path) -> None:
    feed = tmp_path / "events.jsonl"
    feed.write_text(
        line(1, "run.config")
        + line(2, "container.outage", state="canary_served", rollout_id="r1-probe-1", usage=USAGE)
        + line(3, "checkpoint.written")
        + line(4, "container.outage", state="canary_served", rollout_id="r2-probe-2", usage=USAGE)
        + line(5, "rollout.completed", rollout_id="r3", usage=USAGE)
        + line(6, "container.outage", state="closed")
    )
    point = prepare_resume(tmp_path, {"sequence_number": 3, "commits": 0, "state": {"pool_ids": []}}, paid_again=True)
    kinds = [json.loads(text)["type"] for text in feed.read_text().splitlines()]
    assert kinds == [
        "run.config",
        "container.outage",
        "checkpoint.written",
        "container.outage",  # the probe after the checkpoint was paid for and is never sent again: kept
        "event.discarded",
        "event.discarded",
    ]
    assert point.discarded.probes == 2 and point.discarded.probe.total_tokens == 150
    assert point.discarded.rollouts == 1 and point.discarded.rollout.total_tokens == 75
    assert point.discarded.to_json()["total"]["total_tokens"] == 225
    again = prepare_resume(tmp_path, {"sequence_number": 3, "commits": 0, "state": {"pool_ids": []}}, paid_again=True)
    assert again.discarded == point.discarded  # a second resume counts the same lines once each
    assert Discarded.of_line(Event(9, "t", "container.outage", "m", {"state": "opened"}, "rollout")) == Discarded()
