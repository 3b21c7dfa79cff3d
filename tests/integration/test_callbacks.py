"""``GepaRun(callbacks=[...])``: Python observers of a real run (the README's fruit task, launched by ``[container]
task``, with the offline proposer), fed the typed events in order from a thread of their own; one that raises or
blocks changes nothing about the run."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from synth_opt import GepaCallback, GepaRun, load_config
from synth_opt.events import Event
from synth_opt.events.types import AcceptanceDecided, BudgetUpdated, FrontierUpdated, ProposalFailed, RunFinished
from synth_opt.run import callbacks as callbacks_module
from tests.integration.test_python_task import readme_example


def fruit(folder: Path) -> Path:
    source, config, _ = readme_example()
    (folder / "fruit.py").write_text(source)
    (folder / "fruit.toml").write_text(config)
    return folder / "fruit.toml"


class Recorder(GepaCallback):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.thread_names: set[str] = set()

    def on_proposal_decided(self, decision: AcceptanceDecided | ProposalFailed) -> None:
        self.calls.append(("decided", decision))

    def on_frontier_updated(self, frontier: FrontierUpdated) -> None:
        self.calls.append(("frontier", frontier))

    def on_budget_updated(self, budget: BudgetUpdated) -> None:
        self.calls.append(("budget", budget))

    def on_run_finished(self, finished: RunFinished) -> None:
        self.calls.append(("finished", finished))

    def on_event(self, event: Event) -> None:
        self.thread_names.add(threading.current_thread().name)

    def of(self, kind: str) -> list[Any]:
        return [payload for name, payload in self.calls if name == kind]


class OnlyFinished:  # not a GepaCallback: any object with some of the methods
    def __init__(self) -> None:
        self.finished: list[RunFinished] = []

    def on_run_finished(self, finished: RunFinished) -> None:
        self.finished.append(finished)


def test_callbacks_see_the_typed_decisions_frontiers_budgets_and_the_end_in_order(tmp_path: Path) -> None:
    recorder, partial = Recorder(), OnlyFinished()
    result = GepaRun(load_config(fruit(tmp_path)), callbacks=[recorder, partial]).execute()
    decided = recorder.of("decided")
    assert [d.proposal_index for d in decided] == list(range(result.proposals))
    assert sum(d.accepted for d in decided) == result.accepted > 0
    assert len(recorder.of("frontier")) == 1 + result.accepted  # the seed's, then one per candidate that joined
    budgets = recorder.of("budget")
    assert [b.proposal_index for b in budgets] == list(range(result.proposals))
    assert budgets[-1].used["train_rollouts"] == result.rollouts_used["train"]
    assert recorder.calls[-1][0] == "finished" and len(recorder.of("finished")) == 1
    finished = recorder.of("finished")[0]
    assert finished.best_train_score == result.best_train_score == 1.0 and finished.stop_reason == "score_threshold"
    assert partial.finished == [finished]
    assert recorder.thread_names == {"synth-opt-callbacks"}  # never on the run's own thread


def test_a_callback_that_raises_changes_nothing(tmp_path: Path) -> None:
    class Broken(GepaCallback):
        def on_budget_updated(self, budget: BudgetUpdated) -> None:
            raise RuntimeError("tracker down")

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = GepaRun(load_config(fruit(tmp_path / "a"))).execute()
    recorder = Recorder()
    with capture_logs() as logs:
        broken = GepaRun(load_config(fruit(tmp_path / "b")), callbacks=[Broken(), recorder]).execute()
    assert (broken.best_candidate, broken.proposals, broken.rollouts_used) == (
        plain.best_candidate,
        plain.proposals,
        plain.rollouts_used,
    )
    raised = [line for line in logs if line["event"].startswith("a callback raised")]
    assert raised[0]["method"] == "on_budget_updated" and "tracker down" in raised[0]["error"]
    assert raised[-1]["times"] == broken.proposals  # every call failed, every call was made
    assert len(recorder.of("finished")) == 1  # the others still got everything


def test_a_callback_that_blocks_never_stalls_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(callbacks_module, "DRAIN_SECONDS", 0.2)
    monkeypatch.setattr(callbacks_module, "QUEUE_SIZE", 5)
    release = threading.Event()

    class Stuck(GepaCallback):
        def on_event(self, event: Event) -> None:
            release.wait(60)

    try:
        with capture_logs() as logs:
            result = GepaRun(load_config(fruit(tmp_path)), callbacks=[Stuck()]).execute()
        assert not release.is_set()  # execute() returned while the callback was still blocked
        assert result.best_train_score == 1.0
        events = {line["event"] for line in logs}
        assert "callbacks still busy at the end of the run; not waiting for them" in events
        assert "callbacks were too slow: events dropped for them" in events
    finally:
        release.set()


def test_a_callback_that_exits_or_changes_what_it_is_given_changes_nothing(tmp_path: Path) -> None:
    class Exits(GepaCallback):
        def on_budget_updated(self, budget: BudgetUpdated) -> None:
            raise SystemExit(3)  # a sys.exit in a callback: the others still get everything

    class Vandal(GepaCallback):
        def on_event(self, event: Event) -> None:
            event.fields.clear()

        def on_result(self, result: Any) -> None:
            result.best_candidate["fruit_prompt"] = "HACKED"
            result.rollouts_used["total"] = -1

    recorder = Recorder()
    with capture_logs() as logs:
        result = GepaRun(load_config(fruit(tmp_path)), callbacks=[Exits(), Vandal(), recorder]).execute()
    assert len(recorder.of("finished")) == 1 and len(recorder.of("budget")) == result.proposals
    assert any(line["event"].startswith("a callback raised") and line["callback"] == "Exits" for line in logs)
    assert "HACKED" not in result.best_candidate.values() and result.rollouts_used["total"] > 0
    assert json.loads(Path(result.manifest_path).read_text())["rollouts_used"] == result.rollouts_used
    feed = [json.loads(line) for line in Path(result.event_feed_path).read_text().splitlines()]
    with sqlite3.connect(Path(result.event_feed_path).with_name("workspace.sqlite")) as db:
        stored = dict(db.execute("SELECT sequence_number, fields_json FROM event_stream_events").fetchall())
    for line in feed:  # what the run stored of each event is what it emitted, whatever a callback did to its copy
        kept = {key: value for key, value in json.loads(stored[line["sequence_number"]]).items() if key != "payload"}
        assert kept == {key: value for key, value in line["fields"].items() if key != "payload"}, line


@pytest.mark.parametrize("given", [Recorder, print, "on_event"], ids=["a-class", "a-function", "a-string"])
def test_what_is_no_callback_is_refused_when_the_run_is_made(tmp_path: Path, given: object) -> None:
    with pytest.raises(TypeError, match="callbacks: "):
        GepaRun(load_config(fruit(tmp_path)), callbacks=[given])
