"""The reference gepa (0.1.4) against synth_opt on the same standing container, with the same proposer.

One standing container in its own process (``latency_container.py``, 5 ms per rollout) serves every run; one
process runs, one after the other: gepa sequential, gepa with 16 evaluation threads, synth_opt ``sync_serial`` and
synth_opt ``async_pipelined`` (16 rollout workers, as many as gepa's threads; 4 propose workers; 8 candidates in
flight) once per ``--staleness`` policy (``rebase`` and ``full`` by default; ``defaults`` is a run with synth_opt's
own pipeline defaults, only the mode written). Same data for all: gepa's trainset
(minibatches) is synth_opt's ``minibatch_ids`` (the first ``--train-rows`` train rows), gepa's valset is synth_opt's
``pareto_ids`` (the next ``--pareto-rows``, disjoint), gepa's ``max_metric_calls`` is synth_opt's
``max_train_rollouts``, no heldout rows. Both proposers wait 200 ms and then apply the same deterministic rule to
the same reflection request (the parent's text and its minibatch records: task row, reward, feedback). gepa's
proposer is its adapter's ``propose_new_texts`` reading the reflective dataset built from the container's replies;
synth_opt's is ``_common.LatencyProposer`` through ``GepaRun(proposer=...)``. The task's parent selection (below)
on both sides, strict-improvement acceptance, no merge, the same seed on both sides.

Three tasks (``--task``), each with its frozen defaults (minibatch rows, valset/pareto rows, minibatch size,
budget, parent selection; every one can be overridden by its flag):

- ``banking77`` (default): the Banking77 cookbook's container (real data, the offline keyword policy) and its
  offline proposer's rule (for each failed query, add its most telling words to the expected label's line); 600
  minibatch rows, 30 valset/pareto rows, minibatch 5, budget 1,000, ``current_best`` (the cookbook's).
- ``code_review``: the code_review cookbook's container (its 41 train diffs with known defects, several findings
  per diff, reward = F1 of the findings; the offline ``checklist`` policy) and its offline proposer's rule (drop or
  fence with ``unless`` a pattern that fired on a clean line, add a pattern for each missed defect line); 25
  minibatch rows (``train-01..train-25``), 16 valset/pareto rows (``train-26..train-41``; the seed checklist scores
  0.25 on them), minibatch 5, budget 500, ``current_best`` (the cookbook's).
- ``words``: a word task built to show what staleness costs. A row scores 1 when the instruction contains its
  answer word (40 words); the proposer appends the answer of the first failed record (``--edit all``: of every
  failed record). Every edit is one word, so two concurrent proposals often make the same edit. 100 minibatch rows,
  20 valset/pareto rows, minibatch 3, budget 600, ``pareto``.

Reuse of evaluations (``--reuse``, ``on`` by default): with ``on``, gepa runs with ``cache_evaluation=True`` and
synth_opt with ``[gepa] reuse_evaluations = true`` (a (candidate, row) already evaluated in the run is not rolled
out again; the synth_opt rows then show the reused count); with ``off``, neither. The key is written only when the
installed synth_opt knows it (older ones reject it; the header says so). gepa's cache keys a result by (candidate,
data id), and a list passed as trainset or valset has ids 0, 1, ...: with both as lists, a valset row would be
served the cached score of the trainset row with the same index. So the valset goes to gepa as a loader whose ids
follow the trainset's (``OffsetRows``: valset row i has id ``len(trainset) + i``), on and off alike. (With two
lists and the cache on, gepa reported 0.625 instead of 0.5 on ``code_review`` seed 0.) gepa 0.1.4 looks its cache
up only when it scores the valset (and in merges); minibatch evaluations always run, so with a valset disjoint
from the trainset its cache saves little.

gepa.optimize() has no option for parallel evaluation: it calls ``adapter.evaluate`` (or ``batch_evaluate``) and
leaves concurrency to the adapter. The "16 evaluation threads" variant is this adapter's ``evaluate`` mapping the
batch over a ``concurrent.futures.ThreadPoolExecutor(16)``.

Wall time: gepa's ``optimize()`` call; synth_opt's whole ``execute_async()`` (what ``execute()`` runs: connect,
fetch rows, search, write every artifact). Served = distinct rollouts the container reports (``GET /stats``)
before and after each run. ``--repeats N`` runs every configuration N times and reports the run with the median
wall time (the decisions, so calls and scores, are the same in every repeat). ``--seeds A B ...`` runs everything
once per seed (both sides) and ends with the means over the seeds: the score depends on which rows the sampled
minibatches happen to show, so one seed says little about a score difference.

    bash benchmarks/setup_bench_env.sh
    .venv-bench/bin/python benchmarks/vs_gepa.py
    .venv-bench/bin/python benchmarks/vs_gepa.py --task code_review --seeds 0 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx

from _common import (
    LatencyProposer,
    Rule,
    banking77_rule,
    code_review_rule,
    served,
    standing_container,
    task_config,
    words_rule,
)
from synth_opt import GepaRun, load_config
from synth_opt.config import GepaSection, PipelineSection

try:
    import gepa
    from gepa.core.adapter import EvaluationBatch
except ImportError:  # the project environment has no gepa; the benchmark environment has
    gepa = None

GEPA_VERSION = "0.1.4"
NO_GEPA = (
    "vs_gepa.py needs the reference gepa==0.1.4, which only the benchmark environment has. Create it with\n"
    "    bash benchmarks/setup_bench_env.sh\n"
    "and run\n"
    "    .venv-bench/bin/python benchmarks/vs_gepa.py"
)


@dataclass(frozen=True, slots=True)
class Row:
    system: str
    mode: str
    workers: str
    seconds: float
    metric_calls: int
    served: int
    proposer_calls: int
    proposals: str
    best_score: float
    added_words: int
    reused: int | None = None
    """synth_opt's ``rollouts_reused["total"]`` (evaluations served from the run's earlier ones), when it reports it."""


# -- gepa ------------------------------------------------------------------------------------------------------


class QuietLogger:
    """gepa logs every iteration to stdout by default; the benchmark prints only its table."""

    def log(self, message: str) -> None:
        return None


class OffsetRows:
    """A gepa ``DataLoader`` over a list whose ids start at ``first_id`` (a list passed as is has ids 0, 1, ...).

    gepa's evaluation cache keys a result by (candidate, data id) in one table for trainset and valset alike; the
    valset's ids start after the trainset's so a valset row is never served a trainset row's cached score."""

    def __init__(self, items: Sequence[dict[str, Any]], first_id: int) -> None:
        self.items = list(items)
        self.first_id = first_id

    def all_ids(self) -> list[int]:
        return list(range(self.first_id, self.first_id + len(self.items)))

    def fetch(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        return [self.items[data_id - self.first_id] for data_id in ids]

    def __len__(self) -> int:
        return len(self.items)


class ContainerAdapter:
    """A ``GEPAAdapter`` over the standing container: one POST /rollout (sync submission) per example.

    ``threads`` > 1 evaluates a batch on a thread pool of that size (gepa has no parallel evaluation of its own);
    ``propose_new_texts`` is the 200 ms proposer applying the same rule as ``LatencyProposer``."""

    def __init__(self, url: str, *, threads: int, proposer_seconds: float, label: str, rule: Rule) -> None:
        self.label = label
        self.rule = rule
        self.proposer_seconds = proposer_seconds
        connections = max(threads, 1) + 4
        self.client = httpx.Client(
            base_url=url,
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix=f"gepa-eval-{label}") if threads > 1 else None
        self.metric_calls = 0
        self.proposer_calls = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        self.client.close()

    def _rollout(self, row: dict[str, Any], candidate: dict[str, str]) -> dict[str, Any]:
        rollout_id = f"gepa-{self.label}-{uuid.uuid4().hex}"
        body = {
            "rollout_id": rollout_id,
            "submission_mode": "sync",
            "task_id": row["task_id"],
            "candidate_id": "gepa",
            "candidate": candidate,
            "policy": {},
            "task": row,
            "metadata": {},
        }
        response = self.client.post("/rollout", json=body)
        response.raise_for_status()
        reply = response.json()
        with self._lock:
            self.metric_calls += 1
        side_info = reply.get("actionable_side_info") or {}
        return {
            "task": row,
            "reward": float(reply["reward_info"]["outcome_reward"]),
            "trace": reply.get("trace") or {},
            "feedback": side_info.get("feedback"),
        }

    def evaluate(self, batch: list[dict[str, Any]], candidate: dict[str, str], capture_traces: bool = False) -> Any:
        if self.pool is not None and len(batch) > 1:
            replies = list(self.pool.map(lambda row: self._rollout(row, candidate), batch))
        else:
            replies = [self._rollout(row, candidate) for row in batch]
        return EvaluationBatch(
            outputs=[reply["trace"] for reply in replies],
            scores=[reply["reward"] for reply in replies],
            trajectories=replies if capture_traces else None,
        )

    def make_reflective_dataset(
        self, candidate: dict[str, str], eval_batch: Any, components_to_update: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        records = [
            {
                "task_id": reply["task"]["task_id"],
                "task": reply["task"],
                "output": reply["trace"],
                "reward": reply["reward"],
                "feedback": reply["feedback"],
            }
            for reply in eval_batch.trajectories or []
        ]
        return {name: records for name in components_to_update}

    def propose_new_texts(
        self,
        candidate: dict[str, str],
        reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
        components_to_update: list[str],
    ) -> dict[str, str]:
        """After the delay, the rule's text for the reflection request synth_opt would send (the parent's text and
        its minibatch records). An unchanged text is no new text (gepa then skips the child, as synth_opt skips an
        unchanged proposal)."""
        time.sleep(self.proposer_seconds)
        self.proposer_calls += 1
        texts: dict[str, str] = {}
        for name in components_to_update:
            records = list(reflective_dataset.get(name, []))
            text = self.rule({"current_text": candidate[name], "records": records, "proposals": 1})
            if text != candidate[name]:
                texts[name] = text
        return texts


def run_gepa(
    url: str,
    *,
    label: str,
    threads: int,
    seed_candidate: dict[str, str],
    trainset: list[dict[str, Any]],
    valset: list[dict[str, Any]],
    args: argparse.Namespace,
) -> tuple[float, int, int, float, int, int]:
    """Seconds of ``optimize()``, metric calls, proposer calls, best valset score, candidates, added words."""
    adapter = ContainerAdapter(
        url, threads=threads, proposer_seconds=args.proposer_ms / 1000, label=label, rule=task_rule(args)
    )
    try:
        started = time.perf_counter()
        result = gepa.optimize(
            seed_candidate=dict(seed_candidate),
            trainset=trainset,
            valset=OffsetRows(valset, first_id=len(trainset)),
            adapter=adapter,
            candidate_selection_strategy=args.selector,
            frontier_type="instance",
            max_metric_calls=args.budget,
            reflection_minibatch_size=args.minibatch_size,
            perfect_score=1.0,
            skip_perfect_score=args.skip_perfect,
            acceptance_criterion="strict_improvement",
            use_merge=args.merge > 0,
            max_merge_invocations=max(args.merge, 1),
            seed=args.seed,
            logger=QuietLogger(),
            track_best_outputs=False,
            display_progress_bar=False,
            raise_on_exception=True,
            cache_evaluation=args.reuse == "on",
        )
        seconds = time.perf_counter() - started
    finally:
        adapter.close()
    metric_calls = result.total_metric_calls if result.total_metric_calls is not None else adapter.metric_calls
    best = float(result.val_aggregate_scores[result.best_idx])
    return (
        seconds,
        metric_calls,
        adapter.proposer_calls,
        best,
        result.num_candidates,
        added_words(seed_candidate, result.best_candidate),
    )


def added_words(seed: dict[str, str], best: Any) -> int:
    """Words the best candidate has beyond the seed (on the word task, the depth of its lineage: every accepted edit
    adds one)."""
    return sum(len(str(best[name]).split()) - len(text.split()) for name, text in seed.items())


# -- synth_opt -------------------------------------------------------------------------------------------------


def write_config(
    folder: Path,
    name: str,
    *,
    url: str,
    mode: str,
    minibatch_ids: list[str],
    pareto_ids: list[str],
    args: argparse.Namespace,
) -> Path:
    return task_config(
        folder,
        name,
        url=url,
        seed=args.seed,
        minibatch_ids=minibatch_ids,
        pareto_ids=pareto_ids,
        gepa={
            "max_train_rollouts": synth_budget(args),
            "minibatch_size": args.minibatch_size,
            "candidate_selector": args.selector,
            "acceptance": "strict_improvement",
            "skip_perfect_score": args.skip_perfect,
            "use_merge": args.merge > 0,
            "max_merge_invocations": args.merge,
            "reuse_evaluations": (args.reuse == "on") if synth_opt_reuses() else None,
        },
        pipeline=(
            {"mode": mode}  # synth_opt's own pipeline defaults
            if args.staleness == "defaults"
            else {
                "mode": mode,
                "max_in_flight_candidates": args.in_flight,
                "staleness_policy": args.staleness,
                "delta_max": args.delta_max,
            }
        ),
        workers=None
        if args.staleness == "defaults"
        else {"propose": args.propose_workers, "rollout": args.rollout_workers},
    )


def synth_opt_reuses() -> bool:
    """Whether the installed synth_opt has ``[gepa] reuse_evaluations`` (an older one rejects the unknown key)."""
    return "reuse_evaluations" in GepaSection.model_fields


# -- the benchmark ---------------------------------------------------------------------------------------------


async def fetch_data(url: str, args: argparse.Namespace) -> tuple[dict[str, str], list[dict[str, Any]], list[str]]:
    async with httpx.AsyncClient(base_url=url) as client:
        program = (await client.get("/program")).json()
        ids = list((await client.get("/taskset")).json()["splits"]["train"]["task_ids"])
        wanted = ids[: args.train_rows + args.pareto_rows]
        if len(wanted) < args.train_rows + args.pareto_rows:
            raise SystemExit(f"the container lists {len(ids)} train rows; asked for {len(wanted)}")
        rows = (await client.post("/taskset/tasks", json={"split": "train", "task_ids": wanted})).json()["tasks"]
    return dict(program["seed_candidate"]), list(rows), wanted


async def gepa_row(url: str, label: str, threads: int, data: dict[str, Any], args: argparse.Namespace) -> Row:
    before = await served(url)
    seconds, calls, proposer_calls, best, candidates, depth = await anyio.to_thread.run_sync(
        lambda: run_gepa(url, label=label, threads=threads, args=args, **data)
    )
    count = await served(url) - before
    workers = "1 thread" if threads == 1 else f"{threads} eval threads"
    return Row("gepa", label, workers, seconds, calls, count, proposer_calls, f"{candidates} cands", best, depth)


async def synth_opt_row(
    url: str, path: Path, mode: str, workers: str, seed: dict[str, str], args: argparse.Namespace
) -> Row:
    proposer = LatencyProposer(args.proposer_ms / 1000, rule=task_rule(args))
    run = GepaRun(load_config(path), fresh=True, proposer=proposer)
    before = await served(url)
    started = time.perf_counter()
    result = await run.execute_async()
    seconds = time.perf_counter() - started
    count = await served(url) - before
    assert result.best_train_score is not None
    reused = getattr(result, "rollouts_reused", None)
    return Row(
        "synth_opt",
        mode,
        workers,
        seconds,
        result.rollouts_used["train"],
        count,
        int(result.usage["proposer"]["calls"]),
        f"{result.proposals} prop / {result.accepted} acc",
        result.best_train_score,
        added_words(seed, result.best_candidate),
        int(reused["total"]) if isinstance(reused, Mapping) and "total" in reused else None,
    )


def synth_opt_modes(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(mode, staleness policy, workers) of every synth_opt configuration: sync_serial, then async_pipelined with
    each staleness policy asked for."""
    workers = f"{args.rollout_workers} rollout / {args.propose_workers} propose / {args.in_flight} in flight"
    pipeline = PipelineSection()
    defaults = (
        f"defaults: {pipeline.workers.rollout} rollout / {pipeline.workers.propose} propose / "
        f"{pipeline.max_in_flight_candidates} in flight, {pipeline.staleness_policy}"
    )
    return [("sync_serial", "full", "1 / 1 / 1 in flight")] + [
        ("async_pipelined", policy, defaults if policy == "defaults" else f"{workers}, {policy}")
        for policy in args.staleness
    ]


async def main(args: argparse.Namespace) -> None:
    try:
        installed = version("gepa")
    except PackageNotFoundError:
        installed = "?"
    seeds = " ".join(str(seed) for seed in args.seeds)
    train = "as many" if args.synth_budget == "gepa" else str(synth_budget(args))
    print(
        f"gepa {installed} against synth_opt; {task_name(args)}; container latency {args.latency_ms:g} ms per rollout "
        f"(standing process), proposer {args.proposer_ms:g} ms; {args.train_rows} minibatch rows, "
        f"{args.pareto_rows} valset/pareto rows, budget {args.budget} metric calls / "
        f"{train} train rollouts{' as gepa used' if train == 'as many' else ''}, minibatch "
        f"{args.minibatch_size}, {args.selector} parent selection, seeds {seeds}; skip_perfect_score="
        f"{args.skip_perfect} on both sides; wall = median of {args.repeats}"
    )
    print(f"reuse {args.reuse}: {reuse_note(args)}")
    if installed != GEPA_VERSION:
        print(f"warning: gepa {installed} is installed; this benchmark was written against {GEPA_VERSION}")
    by_seed: dict[int, list[Row]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.runs_dir) if args.runs_dir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        async with standing_container(args.latency_ms, vocabulary=args.vocabulary, task=args.task) as url:
            seed_candidate, rows, ids = await fetch_data(url, args)
            minibatch_ids, pareto_ids = ids[: args.train_rows], ids[args.train_rows :]
            data = {
                "seed_candidate": seed_candidate,
                "trainset": rows[: args.train_rows],
                "valset": rows[args.train_rows :],
            }
            print(
                f"trainset {minibatch_ids[0]}..{minibatch_ids[-1]}, valset {pareto_ids[0]}..{pareto_ids[-1]}; "
                f"seed candidate {shown(seed_candidate)}"
            )
            for seed in args.seeds:
                runs: dict[tuple[str, str], list[Row]] = {}
                for repeat in range(args.repeats):
                    seeded = argparse.Namespace(**{**vars(args), "seed": seed})
                    for label, threads in (("sequential", 1), ("threads", args.gepa_threads)):
                        row = await gepa_row(url, label, threads, data, seeded)
                        runs.setdefault(("gepa", label), []).append(row)
                    if args.synth_budget == "gepa":  # the metric calls gepa really used (the same in both modes)
                        seeded.synth_budget = max(row.metric_calls for row in runs[("gepa", "threads")])
                    for index, (mode, policy, workers) in enumerate(synth_opt_modes(args)):
                        name = f"vs-gepa-s{seed}-{index}-{mode}-{policy}-r{repeat}"
                        run_args = argparse.Namespace(**{**vars(seeded), "staleness": policy})
                        path = write_config(
                            folder,
                            name,
                            url=url,
                            mode=mode,
                            minibatch_ids=minibatch_ids,
                            pareto_ids=pareto_ids,
                            args=run_args,
                        )
                        row = await synth_opt_row(url, path, mode, workers, seed_candidate, run_args)
                        runs.setdefault(("synth_opt", workers), []).append(row)
                by_seed[seed] = [median_row(repeats) for repeats in runs.values()]
                print(f"\nseed {seed}")
                report(by_seed[seed])
    if len(by_seed) > 1:
        summary(by_seed)


def median_row(repeats: list[Row]) -> Row:
    """The run with the median wall time; every repeat makes the same decisions, so only the time varies."""
    ordered = sorted(repeats, key=lambda row: row.seconds)
    differing = {(row.metric_calls, row.best_score, row.added_words) for row in repeats}
    if len(differing) > 1:
        print(f"note: {ordered[0].system} {ordered[0].mode}: repeats differ in calls/score/depth: {sorted(differing)}")
    if len(repeats) > 1:
        times = ", ".join(f"{row.seconds:.2f}" for row in repeats)
        print(f"{ordered[0].system} {ordered[0].workers} wall seconds per repeat: {times}")
    return ordered[(len(ordered) - 1) // 2]


def report(rows: list[Row]) -> None:
    gepa_rows = [row for row in rows if row.system == "gepa"]
    fastest = min(gepa_rows, key=lambda row: row.seconds)
    best_score = max(row.best_score for row in gepa_rows)
    header = (
        f"{'system':<10} {'mode':<16} {'workers':<44} {'wall s':>7} {'calls':>6} {'served':>6} {'reused':>6} "
        f"{'props':>5} {'candidates':<18} {'best val':>8} {'+words':>6} {'x gepa best':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.system:<10} {row.mode:<16} {row.workers:<44} {row.seconds:>7.2f} {row.metric_calls:>6} "
            f"{row.served:>6} {'-' if row.reused is None else row.reused:>6} {row.proposer_calls:>5} "
            f"{row.proposals:<18} {row.best_score:>8.4f} {row.added_words:>6} {row.seconds / fastest.seconds:>11.2f}"
        )
    print(
        "calls = metric calls (gepa's own count) or train rollouts (synth_opt's); served = rollouts the container "
        "served (its GET /stats); reused = evaluations synth_opt served from the run's earlier ones (- when not "
        "reported; gepa reports no count); props = proposer calls; best val = best mean score on the valset / "
        "pareto rows; +words = words the best candidate added to the seed"
    )
    for row in rows:
        if row.mode == "async_pipelined":
            verdict(row.workers, row.seconds, fastest.mode, fastest.seconds, row.best_score, best_score)


def verdict(label: str, seconds: float, gepa_mode: str, gepa_seconds: float, score: float, gepa_score: float) -> None:
    ratio = seconds / gepa_seconds
    print(
        f"synth_opt async_pipelined ({label}) wall / gepa best wall ({gepa_mode}, {gepa_seconds:.2f} s) = "
        f"{ratio:.2f} (target <= 0.40: {'met' if ratio <= 0.4 else 'MISSED'}); best pareto score {score:.4f} vs "
        f"gepa best valset score {gepa_score:.4f} (target >=: {'met' if score >= gepa_score else 'MISSED'})"
    )


def summary(by_seed: dict[int, list[Row]]) -> None:
    """Means over the seeds of every configuration's wall time and best score, with the targets checked on
    the means (gepa's best: its faster mode's mean wall, its higher mean score)."""
    configs: dict[tuple[str, str, str], list[Row]] = {}
    for rows in by_seed.values():
        for row in rows:
            configs.setdefault((row.system, row.mode, row.workers), []).append(row)
    print(f"\nmeans over {len(by_seed)} seeds ({', '.join(str(seed) for seed in by_seed)})")
    header = f"{'system':<10} {'mode':<16} {'workers':<44} {'wall s':>7} {'best val':>8}  best val per seed"
    print(header)
    print("-" * len(header))
    means: dict[tuple[str, str, str], tuple[float, float]] = {}
    for key, rows in configs.items():
        wall = sum(row.seconds for row in rows) / len(rows)
        score = sum(row.best_score for row in rows) / len(rows)
        means[key] = (wall, score)
        per_seed = " ".join(f"{row.best_score:.2f}" for row in rows)
        print(f"{key[0]:<10} {key[1]:<16} {key[2]:<44} {wall:>7.2f} {score:>8.4f}  {per_seed}")
    gepa_keys = [key for key in means if key[0] == "gepa"]
    fastest_key = min(gepa_keys, key=lambda key: means[key][0])
    gepa_score = max(means[key][1] for key in gepa_keys)
    gepa_seed_scores = {seed: max(r.best_score for r in rows if r.system == "gepa") for seed, rows in by_seed.items()}
    for key, (wall, score) in means.items():
        if key[1] != "async_pipelined":
            continue
        verdict(f"{key[2]}, means", wall, fastest_key[1], means[fastest_key][0], score, gepa_score)
        at_least = sum(
            next(r.best_score for r in rows if r.workers == key[2]) >= gepa_seed_scores[seed]
            for seed, rows in by_seed.items()
        )
        print(f"    at least gepa's best score on {at_least} of {len(by_seed)} seeds")


def shown(candidate: dict[str, str], width: int = 100) -> str:
    """A candidate for the header: each text's start, with its line count when it has several lines."""
    parts = []
    for name, text in candidate.items():
        lines = text.count("\n") + 1
        start = text if len(text) <= width else text[:width] + "..."
        parts.append(f"{name}: {start!r}" + (f" ({lines} lines)" if lines > 1 else ""))
    return "; ".join(parts)


def synth_budget(args: argparse.Namespace) -> int:
    """synth_opt's max_train_rollouts: ``--synth-budget`` (a number, or what gepa used) or else ``--budget``."""
    return int(args.synth_budget) if args.synth_budget not in (None, "gepa") else int(args.budget)


def task_rule(args: argparse.Namespace) -> Rule:
    if args.task == "banking77":
        return banking77_rule()
    if args.task == "code_review":
        return code_review_rule()
    return words_rule(args.edit)


def task_name(args: argparse.Namespace) -> str:
    if args.task == "banking77":
        return "task banking77 (cookbook container, keyword policy, offline proposer rule)"
    if args.task == "code_review":
        return "task code_review (cookbook container, checklist policy, F1 reward, offline proposer rule)"
    return f"task words ({args.vocabulary} answer words, {args.edit} edit)"


def reuse_note(args: argparse.Namespace) -> str:
    """What ``--reuse`` set on each side, for the header."""
    if args.reuse == "off":
        synth = (
            "reuse_evaluations = false" if synth_opt_reuses() else "no reuse_evaluations key (not in this synth_opt)"
        )
        return f"gepa without its evaluation cache; synth_opt {synth}"
    synth = (
        "reuse_evaluations = true"
        if synth_opt_reuses()
        else "this synth_opt has no [gepa] reuse_evaluations: key not written, nothing reused"
    )
    return f"gepa cache_evaluation=True; synth_opt {synth}"


# per task (frozen: see the module docstring): minibatch rows, pareto rows, minibatch size, budget, parent selector
TASK_DEFAULTS = {
    "banking77": (600, 30, 5, 1000, "current_best"),
    "code_review": (25, 16, 5, 500, "current_best"),
    "words": (100, 20, 3, 600, "pareto"),
}


def task_namespace(task: str, seed: int, **overrides: Any) -> argparse.Namespace:
    """What this module's functions read for ``task`` run on ``seed`` by another benchmark: the task's frozen
    parameters (:data:`TASK_DEFAULTS`), this script's defaults for the rest (the word task's 40 words and ``first``
    edit, no perfect-score skip, no merge, reuse as synth_opt's default), then ``overrides``."""
    train_rows, pareto_rows, minibatch_size, budget, selector = TASK_DEFAULTS[task]
    fields: dict[str, Any] = {
        "task": task,
        "seed": seed,
        "train_rows": train_rows,
        "pareto_rows": pareto_rows,
        "minibatch_size": minibatch_size,
        "budget": budget,
        "selector": selector,
        "edit": "first",
        "vocabulary": 40,
        "skip_perfect": False,
        "merge": 0,
        "reuse": "on" if GepaSection().reuse_evaluations else "off",
    }
    return argparse.Namespace(**{**fields, **overrides})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=5.0, help="container latency per rollout")
    parser.add_argument("--proposer-ms", type=float, default=200.0, help="proposer latency per call")
    parser.add_argument("--task", choices=tuple(TASK_DEFAULTS), default="banking77", help="the task (see above)")
    parser.add_argument(
        "--budget", type=int, help="gepa max_metric_calls = synth_opt max_train_rollouts (default: the task's)"
    )
    parser.add_argument(
        "--synth-budget",
        help="synth_opt's max_train_rollouts when it should differ from --budget: a number, or 'gepa' for the metric "
        "calls gepa really used on the same seed (gepa checks its budget only when an iteration starts)",
    )
    parser.add_argument("--train-rows", type=int, help="minibatch rows: the first N train rows (default: the task's)")
    parser.add_argument(
        "--pareto-rows", type=int, help="valset / pareto rows: the next N train rows (default: the task's)"
    )
    parser.add_argument("--minibatch-size", type=int, help="minibatch size (default: the task's)")
    parser.add_argument(
        "--selector",
        choices=("pareto", "current_best"),
        help="parent selection on both sides (gepa's candidate_selection_strategy; default: the task's)",
    )
    parser.add_argument(
        "--edit",
        choices=("first", "all"),
        default="first",
        help="the word task's edit: add the first failed record's answer, or every failed record's",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="run seeds (both sides); several: means")
    parser.add_argument("--gepa-threads", type=int, default=16, help="evaluation threads of gepa's threaded run")
    parser.add_argument(
        "--skip-perfect",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="skip the proposer when the parent is perfect on the minibatch (gepa's skip_perfect_score and "
        "synth_opt's gepa.skip_perfect_score)",
    )
    parser.add_argument(
        "--merge", type=int, default=0, help="merge invocations on both sides (gepa's and synth_opt's; 0 = no merge)"
    )
    parser.add_argument("--rollout-workers", type=int, default=16, help="synth_opt async rollout workers")
    parser.add_argument("--propose-workers", type=int, default=4, help="synth_opt async propose workers")
    parser.add_argument("--in-flight", type=int, default=8, help="synth_opt async candidates in flight")
    parser.add_argument("--vocabulary", type=int, default=40, help="distinct answer words of the word task's rows")
    parser.add_argument(
        "--staleness",
        choices=("full", "guarded", "rebase", "defaults"),
        nargs="+",
        default=["rebase", "full"],
        help="synth_opt staleness_policy of the async_pipelined runs (one run per policy); 'defaults': a run with "
        "synth_opt's own pipeline defaults (only the mode written: --in-flight and the worker counts do not apply)",
    )
    parser.add_argument("--delta-max", type=int, default=2, help="synth_opt delta_max (guarded staleness)")
    parser.add_argument("--repeats", type=int, default=1, help="run every configuration N times; median wall")
    parser.add_argument(
        "--reuse",
        choices=("on", "off"),
        default="on",
        help="reuse evaluations within a run: gepa's cache_evaluation and synth_opt's gepa.reuse_evaluations (the "
        "key is written only when the installed synth_opt has it)",
    )
    parser.add_argument("--runs-dir", help="keep synth_opt's configs and run directories here (default: a temp dir)")
    args = parser.parse_args()
    defaults = TASK_DEFAULTS[args.task]
    names = ("train_rows", "pareto_rows", "minibatch_size", "budget", "selector")
    for name, default in zip(names, defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if gepa is None:
        print(NO_GEPA, file=sys.stderr)
        sys.exit(2)
    anyio.run(main, arguments)
