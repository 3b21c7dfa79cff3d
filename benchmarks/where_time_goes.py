"""Where a run's wall time went, read from its ``events.jsonl`` (every event carries its time, to the millisecond).

    .venv/bin/python benchmarks/where_time_goes.py runs/<run_id>/events.jsonl [more feeds ...]

For each feed: the phases (start-up up to the seed's first rollout, the seed's pareto scoring, the search, and what
follows the search: heldout evaluation and artifacts), how busy the proposer was during the search (the sum of
its calls' durations over the search time and the propose workers), how long proposals took from plan to commit,
and, per proposal, what it waited on: its proposer call, its rollouts (parent minibatch, child minibatch, pareto
scoring: first rollout sent to last rollout back, read from the rollouts' completion times and durations), and
the time between its decision and its commit (the reorder buffer, and with ``rebase`` the pareto scoring held back
until every earlier proposal has committed). A pipelined run that keeps its proposer busy is as fast as its
proposer allows; time outside the proposer's calls is what pipelining can still remove.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any


def _seconds(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _proposal(stage: str | None) -> tuple[int | None, str]:
    if not stage or not stage.startswith("p") or "." not in stage:
        return None, stage or ""
    head, step = stage.split(".", 1)
    return (int(head[1:]), step) if head[1:].isdigit() else (None, stage)


def analyse(feed: Path) -> dict[str, Any]:
    events = [json.loads(line) for line in feed.read_text(encoding="utf-8").splitlines() if line.strip()]
    first = _seconds(events[0]["ts"])
    at: dict[str, float] = {}
    workers = {"propose": 1}
    planned: dict[int, float] = {}
    decided: dict[int, float] = {}
    committed: dict[int, float] = {}
    proposer: dict[int, float] = {}
    rollouts: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    seed_rollouts: list[tuple[float, float]] = []
    for event in events:
        t, kind, fields = _seconds(event["ts"]) - first, event["type"], event["fields"]
        if kind == "run.state":
            at.setdefault(str(fields.get("state")), t)
        elif kind == "search.stopped":
            at.setdefault("search.stopped", t)
        elif kind == "run.finished":
            at.setdefault("run.finished", t)
        elif kind == "proposal.planned":
            planned[int(fields["index"])] = t
        elif kind == "acceptance.decided" or kind == "proposal.failed":
            decided[int(fields["proposal_index"])] = t
        elif kind == "budget.updated":
            committed[int(fields["proposal_index"])] = t
        elif kind in ("proposer.called", "proposer.failed"):
            proposer[int(fields["proposal_index"])] = float(fields.get("duration_seconds") or 0.0)
        elif kind in ("rollout.completed", "rollout.degraded"):
            done, took = t, float(fields.get("duration_seconds") or 0.0)
            index, step = _proposal(fields.get("stage"))
            if index is None:
                if step == "seed.pareto":
                    seed_rollouts.append((done - took, done))
                continue
            rollouts[(index, step)].append((done - took, done))
    manifest = feed.with_name("result_manifest.json")  # the lanes the run had (the feed does not say)
    if manifest.exists():
        workers["propose"] = int((json.loads(manifest.read_text()).get("pipeline") or {}).get("propose") or 1)
    end = at.get("run.finished", _seconds(events[-1]["ts"]) - first)
    seed_start = min((s for s, _ in seed_rollouts), default=at.get("scoring_seed", 0.0))
    seed_end = max((e for _, e in seed_rollouts), default=seed_start)
    search_start = at.get("searching", seed_end)
    search_end = at.get("search.stopped", end)
    search = max(search_end - search_start, 1e-9)
    steps: dict[str, list[float]] = defaultdict(list)
    for (_, step), spans in rollouts.items():
        steps[step].append(max(e for _, e in spans) - min(s for s, _ in spans))
    held = [committed[i] - decided[i] for i in committed if i in decided]
    return {
        "feed": str(feed),
        "wall": end,
        "start-up": seed_start,
        "seed scoring": seed_end - seed_start,
        "search": search,
        "after the search": end - search_end,
        "proposals": len(committed),
        "propose workers": workers["propose"],
        "proposer busy": sum(proposer.values()) / (search * workers["propose"]),
        "proposer call mean": statistics.fmean(proposer.values()) if proposer else 0.0,
        "plan -> commit mean": statistics.fmean(committed[i] - planned[i] for i in committed if i in planned)
        if committed
        else 0.0,
        "decide -> commit mean": statistics.fmean(held) if held else 0.0,
        **{f"{step} batch mean": statistics.fmean(spans) for step, spans in sorted(steps.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("feeds", nargs="+", type=Path, help="events.jsonl files")
    args = parser.parse_args()
    for feed in args.feeds:
        report = analyse(feed)
        print(report.pop("feed"))
        for key, value in report.items():
            shown = (
                f"{value:.0%}" if key == "proposer busy" else (f"{value:.3f} s" if isinstance(value, float) else value)
            )
            print(f"  {key:<24} {shown}")


if __name__ == "__main__":
    main()
