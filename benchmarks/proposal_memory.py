"""What proposal memory buys: synth_opt ``sync_serial`` with ``[gepa] proposal_memory`` off and on, at equal budget.

Purpose: with memory, the reflection request carries the edits already rejected for the same parent and module, and
a proposed text already in the pool or already rejected for that parent is not rolled out (a ``duplicate``
decision). Whether that helps depends on whether the proposer repeats itself when it is not told what failed. The
offline proposer rules of ``vs_gepa.py`` never repeat a rejected edit (on the word task every edit is accepted), so
this benchmark extends them the way a model repeats itself (``ForgetfulRule``):

- asked to improve a text it has not been told failed, the proposer first makes a vague edit: it appends one
  general advice sentence (``VAGUE``) that fixes no row, and so is rejected; it does so on half of its calls, chosen
  by a hash of the parent's text and the minibatch's row ids (a pure function of the request, the same on every run);
- once the request lists that vague text among the rejected edits (memory on, same parent), it makes the rule's real
  edit instead.

Without memory the vague edit is rolled out and rejected again every time it comes up; with memory it is made at
most once per parent, and a repeat of it is a ``duplicate`` at no rollout cost. The tasks are ``vs_gepa.py``'s,
with their frozen parameters (words: 100 minibatch rows, 20 pareto rows, minibatch 3, budget 600, ``pareto``;
Banking77: 600 minibatch rows, 30 pareto rows, minibatch 5, budget 1,000, ``current_best``), one standing
container per task at 5 ms per rollout, the proposer at 0 ms, evaluation reuse on (the default), seeds 0-4.

    bash benchmarks/setup_bench_env.sh      # once: .venv-bench with synth_opt editable
    .venv-bench/bin/python benchmarks/proposal_memory.py
    .venv-bench/bin/python benchmarks/proposal_memory.py --tasks words --seeds 0     # smoke test

Per task and seed, both runs to their end: ``props`` proposals, ``acc`` accepted (and the acceptance rate), ``vague``
how many proposals were the vague edit rolled out, ``dup`` duplicate decisions, ``best`` the best pareto score,
``live`` live train rollouts; then the means.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

import vs_gepa
from _common import LatencyProposer, Rule, standing_container, task_config
from synth_opt import GepaRun, load_config
from synth_opt.config import GepaSection
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import AcceptanceDecided, ProposalCreated

VAGUE = "Think carefully and double-check every answer."
TASKS = ("words", "banking77")


class ForgetfulRule:
    """A proposer rule that repeats a vague edit until it is told the edit was rejected (see the module)."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    def __call__(self, request: Mapping[str, Any]) -> str:
        current = str(request["current_text"])
        vague = f"{current}\n{VAGUE}" if current else VAGUE
        told = any(edit.get("text") == vague for edit in request.get("rejected_edits") or ())
        rows = ",".join(sorted(str(record["task_id"]) for record in request["records"]))
        coin = hashlib.sha256(f"{current}\x1f{rows}".encode()).digest()[0] % 2 == 0
        if coin and not told and VAGUE not in current:
            return vague
        return self.rule(request)


@dataclass(frozen=True, slots=True)
class Run:
    memory: bool
    proposals: int
    accepted: int
    vague: int
    duplicates: int
    best: float
    live: int
    seconds: float


def task_args(task: str, seed: int, args: argparse.Namespace) -> argparse.Namespace:
    return vs_gepa.task_namespace(task, seed, proposer_ms=0.0, latency_ms=args.latency_ms)


def write_config(folder: Path, name: str, *, url: str, task: argparse.Namespace, ids: list[str], memory: bool) -> Path:
    return task_config(
        folder,
        name,
        url=url,
        seed=task.seed,
        minibatch_ids=ids[: task.train_rows],
        pareto_ids=ids[task.train_rows :],
        gepa={
            "max_train_rollouts": task.budget,
            "minibatch_size": task.minibatch_size,
            "candidate_selector": task.selector,
            "acceptance": "strict_improvement",
            "skip_perfect_score": False,
            "use_merge": False,
            "proposal_memory": memory,
        },
        pipeline={"mode": "sync_serial"},
    )


async def one_run(path: Path, task: argparse.Namespace, memory: bool) -> Run:
    proposer = LatencyProposer(0.0, rule=ForgetfulRule(vs_gepa.task_rule(task)))
    started = time.perf_counter()
    result = await GepaRun(load_config(path), fresh=True, proposer=proposer).execute_async()
    seconds = time.perf_counter() - started
    events = list(read_feed(Path(result.event_feed_path)))
    registry = json.loads(Path(result.candidate_registry_path).read_text())["candidates"]
    created = [e.data for e in events if isinstance(e.data, ProposalCreated)]
    vague = sum(VAGUE in str(registry.get(p.candidate_id, {}).get("payload", {})) for p in created)
    duplicates = sum(1 for e in events if isinstance(e.data, AcceptanceDecided) and e.data.reason == "duplicate")
    assert result.best_train_score is not None
    return Run(
        memory,
        result.proposals,
        result.accepted,
        vague,
        duplicates,
        result.best_train_score,
        result.rollouts_used["train"],
        seconds,
    )


async def run_task(task: str, args: argparse.Namespace, folder: Path) -> list[tuple[int, Run, Run]]:
    folder.mkdir(parents=True, exist_ok=True)
    results: list[tuple[int, Run, Run]] = []
    async with standing_container(args.latency_ms, vocabulary=40, task=task) as url:
        base = task_args(task, args.seeds[0], args)
        _, _, ids = await vs_gepa.fetch_data(url, base)
        print(f"\n{vs_gepa.task_name(base)}, budget {base.budget}, {base.selector} parent selection", flush=True)
        for seed in args.seeds:
            seeded = task_args(task, seed, args)
            runs = {}
            for memory in (False, True):
                path = write_config(
                    folder, f"memory-{task}-s{seed}-{memory}", url=url, task=seeded, ids=ids, memory=memory
                )
                runs[memory] = await one_run(path, seeded, memory)
                run = runs[memory]
                print(
                    f"  seed {seed} memory {'on ' if memory else 'off'} proposals {run.proposals}, accepted "
                    f"{run.accepted}, vague {run.vague}, duplicates {run.duplicates}, best {run.best:.4f}, live "
                    f"{run.live} ({run.seconds:.1f} s)",
                    flush=True,
                )
            results.append((seed, runs[False], runs[True]))
    return results


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def report(task: str, results: list[tuple[int, Run, Run]]) -> None:
    print(f"\n{task}")
    header = f"{'seed':<5} {'memory':<7} {'props':>6} {'acc':>4} {'rate':>6} {'vague':>6} {'dup':>4} {'best':>7}"
    header += f" {'live':>6}"
    print(header)
    print("-" * len(header))
    for seed, *pair in results:
        for run in pair:
            rate = run.accepted / run.proposals if run.proposals else 0.0
            print(
                f"{seed:<5} {'on' if run.memory else 'off':<7} {run.proposals:>6} {run.accepted:>4} {rate:>6.1%} "
                f"{run.vague:>6} {run.duplicates:>4} {run.best:>7.4f} {run.live:>6}"
            )
    for memory in (False, True):
        runs = [pair[2] if memory else pair[1] for pair in results]
        rates = [r.accepted / r.proposals if r.proposals else 0.0 for r in runs]
        print(
            f"{'mean':<5} {'on' if memory else 'off':<7} {mean([float(r.proposals) for r in runs]):>6.1f} "
            f"{mean([float(r.accepted) for r in runs]):>4.1f} {mean(rates):>6.1%} "
            f"{mean([float(r.vague) for r in runs]):>6.1f} {mean([float(r.duplicates) for r in runs]):>4.1f} "
            f"{mean([r.best for r in runs]):>7.4f} {mean([float(r.live) for r in runs]):>6.1f}"
        )
    off = [pair[1].best for pair in results]
    on = [pair[2].best for pair in results]
    higher = sum(b > a + 1e-9 for a, b in zip(off, on, strict=True))
    lower = sum(b < a - 1e-9 for a, b in zip(off, on, strict=True))
    print(
        f"best with memory - without: {mean(on) - mean(off):+.4f} on the means; higher on {higher}, lower on "
        f"{lower}, equal on {len(results) - higher - lower} of {len(results)} seeds"
    )


async def main(args: argparse.Namespace) -> None:
    if "proposal_memory" not in GepaSection.model_fields:
        raise SystemExit("this synth_opt has no [gepa] proposal_memory: nothing to measure")
    print(
        f"synth_opt sync_serial, proposal_memory false vs true at the same budget; the forgetful proposer rule "
        f"(vague edit {VAGUE!r} on half of its calls until told it failed); seeds {' '.join(map(str, args.seeds))}; "
        f"container {args.latency_ms:g} ms per rollout"
    )
    started = time.perf_counter()
    tables = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            tables[task] = await run_task(task, args, Path(tmp) / task)
    for task, results in tables.items():
        report(task, results)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="run seeds")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="container latency per rollout")
    return parser.parse_args()


if __name__ == "__main__":
    anyio.run(main, parse_args())
