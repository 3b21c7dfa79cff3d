"""What evaluation reuse saves: synth_opt ``sync_serial`` with ``[gepa] reuse_evaluations`` off and on.

Purpose: within a run, reuse (on by default) does not roll out again a (candidate, row) already evaluated; the
budgets count live rollouts only (``result.rollouts_used``), and ``result.rollouts_reused`` counts the others. This
script measures how many live train rollouts that saves at equal decisions, and what the saved rollouts buy at an
equal live budget.

The layout is the one GEPA users get when they pass no valset (gepa then uses the trainset as valset): the pareto
rows ARE the minibatch rows, so a parent's minibatch rows (the parent is in the pool: scored on every pareto row)
and an accepted child's minibatch rows (its pareto scoring covers them) are rows already scored. Two of
``vs_gepa.py``'s tasks, built as it builds them: one standing container per task (``latency_container.py``, 5 ms
per rollout), the same proposer rule (``_common.LatencyProposer`` with ``vs_gepa.task_rule``; 0 ms per call by
default, ``--proposer-ms``, since only rollouts and scores matter here), ``vs_gepa.py``'s minibatch size and parent
selection per task, strict-improvement acceptance, no merge, no perfect-score skip, request cache off:

- ``words``: the word task (40 answer words, ``first`` edit); its 100 minibatch rows are the pareto rows too;
  minibatch 3, ``pareto`` parent selection; train budget 3,000 (1,500 gave 13 proposals on seed 0: nearly every
  word edit is accepted, and an accepted child costs its 100 pareto rollouts).
- ``banking77``: the Banking77 cookbook container and offline proposer rule; the first 120 train rows as both
  minibatch and pareto rows; minibatch 5, ``current_best``; train budget 3,000.

``--rows`` and ``--budget`` override a task's rows and budget (``N`` for every task, or ``TASK=N``). The budgets
are chosen so that a run makes 15-40 proposals, and are kept fixed once chosen.

For each task and seed (``--seeds``, 0-4 by default) two runs at the same train budget (``max_train_rollouts``),
one with ``reuse_evaluations = false`` and one with ``true``, every other setting the same. Decisions do not depend
on timing and the container is deterministic, so each configuration runs once.

    bash benchmarks/setup_bench_env.sh      # once: .venv-bench with synth_opt editable
    .venv-bench/bin/python benchmarks/reuse_savings.py
    .venv-bench/bin/python benchmarks/reuse_savings.py --tasks words --seeds 0     # smoke test

How to read it (one pair of tables per task, then the means over the seeds):

1. At equal decisions. N = the commits of the run without reuse (one ``budget.updated`` event per commit). The
   decision events of the reuse run's first N commits (``seed.scored``, ``proposal.planned``, ``proposal.created``,
   ``proposal.failed``, ``candidate.scored``, ``acceptance.decided``, ``frontier.updated``, fields without timing)
   must equal the other run's: ``decisions equal: yes`` (reuse changes which rollouts run, never a decision; a
   ``no`` is a bug, and the first difference is printed). ``live off`` / ``live on`` are the live train rollouts
   after N commits (``fields.used.train_rollouts`` of the N-th ``budget.updated``, the seed's pareto scoring
   included), ``saved`` = 1 - on / off: the share of the train rollouts that reuse makes unnecessary for the same
   search.
2. At equal live budget. Each run to its end: ``props`` proposals, ``acc`` accepted, ``best`` the best pareto score
   (``result.best_train_score``; here the mean over the minibatch rows too, which are the pareto rows), ``reused``
   ``rollouts_reused["train"]``, ``live`` ``rollouts_used["train"]``, ``stop`` the stop reason. The reuse run spends
   its savings on more proposals; whether they raise ``best`` depends on the task. A proposal is planned only when
   the budget left covers its worst case, reuse not counted (minibatch rows for parent and child, then every pareto
   row), so the reuse run may stop with nearly one proposal's rollouts unspent even when the live cost of one more
   (its reused rows left out) would fit.

What to expect: with pareto rows = minibatch rows, reuse saves the parent's minibatch rollouts on every proposal
and an accepted child's minibatch rows in its pareto scoring, so about 2 x minibatch / (2 x minibatch + pareto
rows) of a proposal that is accepted, and half of one that is not (the seed's scoring saves nothing).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

import vs_gepa
from _common import LatencyProposer, standing_container, task_config
from synth_opt import GepaRun, load_config
from synth_opt.config import GepaSection
from synth_opt.events.model import Event
from synth_opt.events.normalize import normalize_events, read_feed

# per task: rows (the minibatch rows, which are the pareto rows too), train budget
TASK_DEFAULTS = {"words": (100, 3000), "banking77": (120, 3000)}
COMPARED = frozenset(
    {
        "seed.scored",
        "proposal.planned",
        "proposal.created",
        "proposal.failed",
        "candidate.scored",
        "acceptance.decided",
        "frontier.updated",
    }
)
"""The decision events compared at equal decisions (the run-level ones, ``run.config`` and ``search.stopped``
among them, differ by construction)."""


@dataclass(frozen=True, slots=True)
class Run:
    reuse: bool
    seconds: float
    proposals: int
    accepted: int
    best: float
    live: int
    reused: int
    stop_reason: str
    commits: list[tuple[int, list[dict[str, Any]]]]
    """Per commit (``budget.updated``, in feed order): the live train rollouts after it, and the compared decision
    events since the previous commit (the first commit's include the seed's)."""


@dataclass(frozen=True, slots=True)
class Pair:
    seed: int
    off: Run
    on: Run
    n: int
    equal: bool
    difference: str
    live_off: int
    live_on: int | None

    @property
    def saved(self) -> float | None:
        return None if self.live_on is None or not self.live_off else 1 - self.live_on / self.live_off


def task_args(task: str, seed: int, args: argparse.Namespace) -> argparse.Namespace:
    """What ``vs_gepa``'s functions read, with this benchmark's rows, budget and proposer latency."""
    rows = args.rows[task]
    return vs_gepa.task_namespace(
        task,
        seed,
        rows=rows,
        train_rows=rows,
        pareto_rows=0,
        budget=args.budget[task],
        proposer_ms=args.proposer_ms,
        latency_ms=args.latency_ms,
    )


def write_config(folder: Path, name: str, *, url: str, task: argparse.Namespace, ids: list[str], reuse: bool) -> Path:
    """A ``sync_serial`` config whose minibatch rows are its pareto rows; the task's settings, reuse as given."""
    return task_config(
        folder,
        name,
        url=url,
        seed=task.seed,
        minibatch_ids=ids,
        pareto_ids=ids,
        gepa={
            "max_train_rollouts": task.budget,
            "minibatch_size": task.minibatch_size,
            "candidate_selector": task.selector,
            "acceptance": "strict_improvement",
            "skip_perfect_score": False,
            "use_merge": False,
            "reuse_evaluations": reuse,
        },
        pipeline={"mode": "sync_serial"},
    )


def commits_of(events: list[Event]) -> list[tuple[int, list[dict[str, Any]]]]:
    """Per ``budget.updated``: the live train rollouts it reports and the compared decisions since the last one."""
    commits: list[tuple[int, list[dict[str, Any]]]] = []
    pending: list[Event] = []
    for event in events:
        if event.type == "budget.updated":
            decisions = [{"type": line["type"], "fields": line["fields"]} for line in normalize_events(pending)]
            commits.append((int(event.fields["used"]["train_rollouts"]), decisions))
            pending = []
        elif event.type in COMPARED:
            pending.append(event)
    return commits


async def synth_opt_run(path: Path, task: argparse.Namespace, reuse: bool) -> Run:
    proposer = LatencyProposer(task.proposer_ms / 1000, rule=vs_gepa.task_rule(task))
    run = GepaRun(load_config(path), fresh=True, proposer=proposer)
    started = time.perf_counter()
    result = await run.execute_async()
    seconds = time.perf_counter() - started
    assert result.best_train_score is not None
    events = list(read_feed(Path(result.event_feed_path)))
    return Run(
        reuse,
        seconds,
        result.proposals,
        result.accepted,
        result.best_train_score,
        result.rollouts_used["train"],
        result.rollouts_reused["train"],
        result.stop_reason,
        commits_of(events),
    )


def compare(seed: int, off: Run, on: Run) -> Pair:
    """The two runs at the N commits of the run without reuse."""
    n = len(off.commits)
    live_off = off.commits[-1][0] if n else 0
    live_on = on.commits[n - 1][0] if 0 < n <= len(on.commits) else None
    difference = ""
    if len(on.commits) < n:
        difference = f"the reuse run made {len(on.commits)} commits, fewer than {n}"
    for index, ((_, mine), (_, theirs)) in enumerate(zip(off.commits, on.commits, strict=False)):
        if difference:
            break
        for position in range(max(len(mine), len(theirs))):
            a = mine[position] if position < len(mine) else None
            b = theirs[position] if position < len(theirs) else None
            if a != b:
                difference = f"commit {index + 1}, decision {position + 1}: without reuse {a}; with reuse {b}"
                break
    return Pair(seed, off, on, n, not difference, difference, live_off, live_on)


def progress(task: str, seed: int, run: Run) -> None:
    print(
        f"  {task} seed {seed} reuse {'on ' if run.reuse else 'off'} {run.seconds:6.2f} s  proposals "
        f"{run.proposals}, accepted {run.accepted}, best {run.best:.4f}, live train {run.live}, reused train "
        f"{run.reused}, commits {len(run.commits)}, stop {run.stop_reason}",
        flush=True,
    )


async def run_task(task: str, args: argparse.Namespace, folder: Path) -> list[Pair]:
    """Both runs of every seed of one task, against one standing container."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs: list[Pair] = []
    async with standing_container(args.latency_ms, vocabulary=40, task=task) as url:
        base = task_args(task, args.seeds[0], args)
        _, _, ids = await vs_gepa.fetch_data(url, base)
        print(
            f"\n{vs_gepa.task_name(base)}: {base.rows} rows ({ids[0]}..{ids[-1]}) as both minibatch and pareto rows, "
            f"minibatch {base.minibatch_size}, {base.selector} parent selection, train budget {base.budget}",
            flush=True,
        )
        for seed in args.seeds:
            seeded = task_args(task, seed, args)
            runs: dict[bool, Run] = {}
            for reuse in (False, True):
                name = f"reuse-{task}-s{seed}-{'on' if reuse else 'off'}"
                path = write_config(folder, name, url=url, task=seeded, ids=ids, reuse=reuse)
                runs[reuse] = await synth_opt_run(path, seeded, reuse)
                progress(task, seed, runs[reuse])
            pair = compare(seed, runs[False], runs[True])
            print(f"  {task} seed {seed} decisions equal: {'yes' if pair.equal else 'no'}", flush=True)
            if pair.difference:
                print(f"    first difference: {pair.difference}", flush=True)
            pairs.append(pair)
    return pairs


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def report(task: str, pairs: list[Pair]) -> None:
    seeds = ", ".join(str(pair.seed) for pair in pairs)
    print(f"\n{task}, seeds {seeds}")
    print("(1) at equal decisions: the first N commits (N = the commits of the run without reuse)")
    header = f"{'seed':<6} {'decisions equal':<16} {'N':>4} {'live off':>9} {'live on':>8} {'saved':>7}"
    print(header)
    print("-" * len(header))
    for pair in pairs:
        print(
            f"{pair.seed:<6} {'yes' if pair.equal else 'no':<16} {pair.n:>4} {pair.live_off:>9} "
            f"{'-' if pair.live_on is None else pair.live_on:>8} {_pct(pair.saved):>7}"
        )
    measured = [pair for pair in pairs if pair.live_on is not None]
    equal = sum(pair.equal for pair in pairs)
    print(
        f"{'mean':<6} {f'{equal}/{len(pairs)} yes':<16} {mean([float(p.n) for p in pairs]):>4.1f} "
        f"{mean([float(p.live_off) for p in measured]):>9.1f} "
        f"{mean([float(p.live_on or 0) for p in measured]):>8.1f} "
        f"{_pct(mean([p.saved for p in measured if p.saved is not None])):>7}"
    )
    print("(2) at equal live budget: each run to its end")
    header = (
        f"{'seed':<6} {'reuse':<5} {'props':>6} {'acc':>5} {'best':>7} {'reused':>7} {'live':>6}  {'stop':<20} "
        f"{'wall s':>6}"
    )
    print(header)
    print("-" * len(header))
    for pair in pairs:
        for run in (pair.off, pair.on):
            print(
                f"{pair.seed:<6} {'on' if run.reuse else 'off':<5} {run.proposals:>6} {run.accepted:>5} "
                f"{run.best:>7.4f} {run.reused:>7} {run.live:>6}  {run.stop_reason:<20} {run.seconds:>6.2f}"
            )
    for reuse in (False, True):
        runs = [pair.on if reuse else pair.off for pair in pairs]
        stops = sorted({run.stop_reason for run in runs})
        print(
            f"{'mean':<6} {'on' if reuse else 'off':<5} {mean([float(r.proposals) for r in runs]):>6.1f} "
            f"{mean([float(r.accepted) for r in runs]):>5.1f} {mean([r.best for r in runs]):>7.4f} "
            f"{mean([float(r.reused) for r in runs]):>7.1f} {mean([float(r.live) for r in runs]):>6.1f}  "
            f"{', '.join(stops):<20} {mean([r.seconds for r in runs]):>6.2f}"
        )
    off_best = [pair.off.best for pair in pairs]
    on_best = [pair.on.best for pair in pairs]
    higher = sum(b > a + 1e-9 for a, b in zip(off_best, on_best, strict=True))
    lower = sum(b < a - 1e-9 for a, b in zip(off_best, on_best, strict=True))
    print(
        f"best with reuse - without: {mean(on_best) - mean(off_best):+.4f} on the means; higher on {higher}, lower "
        f"on {lower}, equal on {len(pairs) - higher - lower} of {len(pairs)} seeds"
    )


def per_task(text: str) -> tuple[str | None, int]:
    """``N`` (every task) or ``TASK=N`` from the command line."""
    task, _, number = text.rpartition("=")
    if task and task not in TASK_DEFAULTS:
        raise argparse.ArgumentTypeError(f"{task!r}: not a task ({', '.join(TASK_DEFAULTS)})")
    try:
        value = int(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected N or TASK=N") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return (task or None), value


def resolved(given: list[tuple[str | None, int]] | None, index: int) -> dict[str, int]:
    """Each task's value: the task defaults' ``index``-th entry, then a given ``N``, then a given ``TASK=N``."""
    values = {task: defaults[index] for task, defaults in TASK_DEFAULTS.items()}
    for task, value in sorted(given or [], key=lambda item: item[0] is not None):
        for name in [task] if task else list(values):
            values[name] = value
    return values


async def main(args: argparse.Namespace) -> None:
    if "reuse_evaluations" not in GepaSection.model_fields:
        raise SystemExit("this synth_opt has no [gepa] reuse_evaluations: nothing to measure")
    settings = "; ".join(f"{task} {args.rows[task]} rows, budget {args.budget[task]}" for task in args.tasks)
    print(
        f"synth_opt sync_serial, reuse_evaluations false vs true at the same train budget; pareto rows = minibatch "
        f"rows; {settings}; seeds {' '.join(str(seed) for seed in args.seeds)}; container {args.latency_ms:g} ms per "
        f"rollout, proposer {args.proposer_ms:g} ms; request cache off"
    )
    started = time.perf_counter()
    tables: dict[str, list[Pair]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.runs_dir) if args.runs_dir else Path(tmp)
        for task in args.tasks:
            tables[task] = await run_task(task, args, folder / task)
    for task, pairs in tables.items():
        report(task, pairs)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=tuple(TASK_DEFAULTS), default=list(TASK_DEFAULTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="run seeds")
    parser.add_argument(
        "--budget",
        type=per_task,
        nargs="+",
        help="train budget (max_train_rollouts) of both runs: N or TASK=N (default: words 3000, banking77 3000)",
    )
    parser.add_argument(
        "--rows",
        type=per_task,
        nargs="+",
        help="the first N train rows, as minibatch and pareto rows: N or TASK=N (default: words 100, banking77 120)",
    )
    parser.add_argument("--latency-ms", type=float, default=5.0, help="container latency per rollout")
    parser.add_argument("--proposer-ms", type=float, default=0.0, help="proposer latency per call")
    parser.add_argument("--runs-dir", help="keep the configs and run directories here (default: a temp dir)")
    args = parser.parse_args()
    if len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds must not repeat a seed")
    args.tasks = list(dict.fromkeys(args.tasks))
    args.budget = resolved(args.budget, 1)
    args.rows = resolved(args.rows, 0)
    return args


if __name__ == "__main__":
    anyio.run(main, parse_args())
