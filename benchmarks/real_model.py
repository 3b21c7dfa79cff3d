"""Banking77 with a real model: ``sync_serial`` against ``async_pipelined`` at an equal rollout budget, side by side.

The bundled local model (SmolLM2-135M-Instruct behind llama.cpp's ``llama-server``, ``make local-model``; see
``synth_opt.testing.local_model``) is both the policy (the cookbook's ``llm`` policy, ``max_tokens = 16``) and the
``openai_compatible`` proposer. One server (``LocalModelServer``, started once, two slots) serves both runs; its
proxy records the usage the server reported for every call, which the run's own accounting is checked against.

Each run is ``cookbooks/banking77/gepa.toml`` as shipped, reduced so that both runs take a few minutes (train and
pareto rows, heldout rows, budgets and minibatch from the flags), with the short seed prompt below, the proposer
priced at the policy's nominal prices, and its endpoint, model and backend given by the ``SYNTH_OPTIMIZERS_*``
environment overrides, as a user pointing the cookbook at a local server would (the config names no local
endpoint). Both runs use the same seed and the same rows; ``async_pipelined`` keeps the cookbook's pipeline settings.
The proposer samples at temperature 0.8 with the run seed as llama.cpp's sampling seed, and the runs absorb any
number of failed proposals (``max_consecutive_failures = 100``, ``failure_tolerance = 1.0``): with the defaults
(3 in a row) a 135M proposer can fail a run before its budget is spent, and the two modes would not be compared
at an equal budget.

With one 2-core server behind both the policy and the proposer, the server is the limit: ``async_pipelined`` is
expected near 1x ``sync_serial`` here (the machine, not the pipeline). A 135M model writes poor prompts; expect
proposals that fail to parse or score no better than the seed.

    .venv/bin/python benchmarks/real_model.py
    .venv/bin/python benchmarks/real_model.py --memory     # proposal_memory off against on, sync_serial

With ``--memory`` the two runs are ``sync_serial`` with ``gepa.proposal_memory`` off and on, and each reports how
often the proposer repeated an edit already rejected for the same parent: rolled out again (memory off, or a
repeat made before the rejection committed), or caught as a ``duplicate`` (memory on).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from synth_opt import GepaRun, load_config
from synth_opt.result import GepaResult
from synth_opt.testing.local_model import LocalModelServer, ServedCall

COOKBOOK = Path(__file__).resolve().parents[1] / "cookbooks" / "banking77"
KEY_ENV = "SYNTH_OPT_LOCAL_MODEL_KEY"
MODES = ("sync_serial", "async_pipelined")

# The cookbook's nominal policy prices (gepa.toml's policy.config), used for the proposer too.
PRICE_IN, PRICE_OUT = 0.40, 1.60

SEED = (
    "Classify the online-banking customer's message into one intent label. Reply with the label only, for example "
    "card_arrival, lost_or_stolen_card or exchange_rate."
)


def write_config(folder: Path, *, mode: str, args: argparse.Namespace, memory: bool | None = None) -> Path:
    text = (COOKBOOK / "gepa.toml").read_text()
    heldout_budget = 2 * args.heldout
    replacements = {
        'output_dir = "../../runs"': f"output_dir = {json.dumps(str(folder / 'runs'))}",
        "seed = 0": f"seed = {args.seed}",
        '"./container.py"': json.dumps(str(COOKBOOK / "container.py")),
        'cwd = "."': f"cwd = {json.dumps(str(COOKBOOK))}",
        "train_ids = { count = 600 }": f"train_ids = {{ count = {args.train} }}",
        "pareto_ids = { count = 100 }": f"pareto_ids = {{ count = {args.pareto} }}",
        "heldout_ids = { count = 500 }": f"heldout_ids = {{ count = {args.heldout} }}",
        "timeout_seconds = 300": (
            f"timeout_seconds = 300\nconfig = {{ max_tokens = {args.proposer_max_tokens}, temperature = 0.8, seed = "
            f"{args.seed} }}\nmax_consecutive_failures = 100\nfailure_tolerance = 1.0"
        ),
        "cost_per_million_input_tokens = 1.25": f"cost_per_million_input_tokens = {PRICE_IN}",
        "cost_per_million_output_tokens = 10.0": f"cost_per_million_output_tokens = {PRICE_OUT}",
        "max_train_rollouts = 2400": f"max_train_rollouts = {args.train_budget}",
        "max_heldout_rollouts = 1000": f"max_heldout_rollouts = {heldout_budget}",
        "max_total_rollouts = 3400": f"max_total_rollouts = {args.train_budget + heldout_budget}",
        "minibatch_size = 10": f"minibatch_size = {args.minibatch}",
        'mode = "async_pipelined"': f'mode = "{mode}"',
        'mode = "readwrite"': 'mode = "off"',
    }
    for old, new in replacements.items():
        if old not in text:
            raise SystemExit(f"{COOKBOOK / 'gepa.toml'} no longer holds {old!r}; update this benchmark")
        text = text.replace(old, new, 1)
    if memory is not None:
        text = text.replace("[gepa]\n", f"[gepa]\nproposal_memory = {str(memory).lower()}\n", 1)
    text += f"\n[seed_candidate]\nsystem_prompt = {json.dumps(SEED)}\n"
    path = folder / f"{mode}{'' if memory is None else f'-memory-{memory}'}.toml"
    path.write_text(text)
    return path


def local_env(server: LocalModelServer) -> dict[str, str]:
    """The overrides that point the cookbook's policy and proposer at ``server`` (key in :data:`KEY_ENV`)."""
    return {
        KEY_ENV: server.api_key,
        "SYNTH_OPTIMIZERS_POLICY_BASE_URL": server.base_url,
        "SYNTH_OPTIMIZERS_POLICY_MODEL": server.model,
        "SYNTH_OPTIMIZERS_POLICY_API_KEY_ENV": KEY_ENV,
        "SYNTH_OPTIMIZERS_PROPOSER_BACKEND": "openai_compatible",
        "SYNTH_OPTIMIZERS_PROPOSER_BASE_URL": server.base_url,
        "SYNTH_OPTIMIZERS_PROPOSER_MODEL": server.model,
        "SYNTH_OPTIMIZERS_PROPOSER_API_KEY_ENV": KEY_ENV,
    }


def served(calls: list[ServedCall]) -> dict[str, int]:
    """What the server reported: successful POSTs and their token totals."""
    totals = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    for call in calls:
        if call.method != "POST" or call.usage is None:
            continue
        totals["calls"] += 1
        totals["prompt_tokens"] += int(call.usage.get("prompt_tokens", call.usage.get("input_tokens", 0)))
        totals["completion_tokens"] += int(call.usage.get("completion_tokens", call.usage.get("output_tokens", 0)))
    return totals


def accounted(result: GepaResult) -> dict[str, int]:
    """What the run accounts for: the proposer's and the rollouts' usage and the usage of discarded work."""
    parts: list[Mapping[str, Any]] = [
        result.usage["proposer"],
        result.usage["rollout"],
        result.usage["discarded"]["total"],
    ]
    return {key: sum(int(part.get(key, 0)) for part in parts) for key in ("prompt_tokens", "completion_tokens")}


def failure_messages(result: GepaResult) -> list[str]:
    feed = [json.loads(line) for line in Path(result.event_feed_path).read_text().splitlines()]
    return [str(event.get("message", "")) for event in feed if event["type"] == "proposal.failed"]


def score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def repeats(result: GepaResult) -> tuple[int, int]:
    """(proposals that rolled out a text already rejected for their parent, ``duplicate`` decisions): how often the
    proposer repeated a rejected edit, without memory and with it."""
    rejected: dict[str, set[str]] = {}
    parent_of: dict[int, str] = {}
    rolled = caught = 0
    for line in Path(result.event_feed_path).read_text().splitlines():
        event = json.loads(line)
        fields = event["fields"]
        if event["type"] == "proposal.created":
            parent = str(fields["parent_id"])
            parent_of[int(fields["proposal_index"])] = parent
            rolled += any(cid in rejected.get(parent, set()) for cid in fields.get("candidate_ids") or ())
        elif event["type"] == "acceptance.decided":
            if fields["reason"] == "duplicate":
                caught += 1
            elif not fields["accepted"]:
                parent = parent_of.get(int(fields["proposal_index"]), "")
                rejected.setdefault(parent, set()).add(str(fields["candidate_id"]))
    return rolled, caught


async def memory_main(args: argparse.Namespace) -> None:
    """``--memory``: sync_serial with proposal_memory off, then on, with the local model as the proposer."""
    print(
        f"Banking77 with {args.train} train rows, {args.pareto} pareto, {args.heldout} heldout, minibatch "
        f"{args.minibatch}, train budget {args.train_budget}, seed {args.seed}; sync_serial, proposal_memory off "
        "then on; policy and proposer: the local model"
    )
    with tempfile.TemporaryDirectory() as tmp, LocalModelServer(parallel=args.parallel) as server:
        print(f"model: {server.model}")
        os.environ.update(local_env(server))
        for memory in (False, True):
            folder = Path(tmp) / f"memory-{memory}"
            folder.mkdir()
            config = load_config(write_config(folder, mode="sync_serial", args=args, memory=memory))
            started = time.perf_counter()
            result = await GepaRun(config, fresh=True).execute_async()
            rolled, caught = repeats(result)
            print(
                f"memory {'on ' if memory else 'off'}: {time.perf_counter() - started:.0f} s, {result.proposals} "
                f"proposals ({result.proposals_failed} failed to parse), {result.accepted} accepted; a rejected edit "
                f"repeated: {rolled} rolled out again, {caught} caught as duplicates; best pareto "
                f"{score(result.best_train_score)} (seed {score(result.seed_train_score)}); stop {result.stop_reason}"
            )


async def main(args: argparse.Namespace) -> None:
    print(
        f"Banking77 with {args.train} train rows, {args.pareto} pareto, {args.heldout} heldout, minibatch "
        f"{args.minibatch}, train budget {args.train_budget}, heldout budget {2 * args.heldout}, seed {args.seed}; "
        f"policy and proposer: the local model (one llama-server, {args.parallel} slots); nominal prices "
        f"${PRICE_IN:.2f}/${PRICE_OUT:.2f} per M tokens in/out for both"
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, LocalModelServer(parallel=args.parallel) as server:
        print(f"model: {server.model}")
        os.environ.update(local_env(server))
        for mode in MODES:
            folder = Path(tmp) / mode
            folder.mkdir()
            config = load_config(write_config(folder, mode=mode, args=args))
            mark = server.mark()
            started = time.perf_counter()
            result = await GepaRun(config, fresh=True).execute_async()
            seconds = time.perf_counter() - started
            rollouts = int(result.rollouts_used["total"])
            proposer = result.usage["proposer"]
            rows.append(
                {
                    "mode": mode,
                    "result": result,
                    "seconds": seconds,
                    "rollouts": rollouts,
                    "proposer_calls": int(proposer.get("calls", 0)),
                    "proposer_in": int(proposer.get("prompt_tokens", 0)),
                    "proposer_out": int(proposer.get("completion_tokens", 0)),
                    "run": accounted(result),
                    "server": served(server.calls(mark)),
                    "failures": failure_messages(result),
                }
            )
    header = (
        f"{'mode':<16} {'status':<9} {'wall s':>7} {'rollouts':>8} {'r/s':>5} {'props':>5} {'failed':>6} "
        f"{'acc':>3} {'prop in':>8} {'prop out':>8} {'run in':>8} {'run out':>8} {'srv in':>8} {'srv out':>8} "
        f"{'cost $':>9} {'pareto seed':>11} {'pareto best':>11} {'heldout seed':>12} {'heldout best':>12}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        result = row["result"]
        cost = "unknown" if result.cost_usd is None else f"{result.cost_usd:.6f}"
        print(
            f"{row['mode']:<16} {result.status:<9} {row['seconds']:>7.1f} {row['rollouts']:>8} "
            f"{row['rollouts'] / row['seconds']:>5.2f} {result.proposals:>5} {result.proposals_failed:>6} "
            f"{result.accepted:>3} {row['proposer_in']:>8} {row['proposer_out']:>8} {row['run']['prompt_tokens']:>8} "
            f"{row['run']['completion_tokens']:>8} {row['server']['prompt_tokens']:>8} "
            f"{row['server']['completion_tokens']:>8} {cost:>9} {score(result.seed_train_score):>11} "
            f"{score(result.best_train_score):>11} {score(result.seed_heldout_score):>12} "
            f"{score(result.best_heldout_score):>12}"
        )
    print()
    for row in rows:
        result = row["result"]
        calls = row["proposer_calls"]
        per_call = (
            f"{row['proposer_in'] / calls:.0f} in / {row['proposer_out'] / calls:.0f} out tokens per proposer call"
            if calls
            else "no proposer call"
        )
        matches = row["run"] == {k: row["server"][k] for k in ("prompt_tokens", "completion_tokens")}
        print(
            f"{row['mode']}: {calls} proposer calls, {per_call}; rollouts used {result.rollouts_used}; run tokens "
            f"{'equal' if matches else 'DIFFER FROM'} the server's ({row['server']['calls']} calls served); "
            f"stop: {result.stop_reason}"
        )
        for message in row["failures"][:3]:
            print(f"  proposal.failed: {message[:160]}")
    sync, pipelined = rows
    print(
        f"\nasync_pipelined / sync_serial wall time: {pipelined['seconds'] / sync['seconds']:.2f} (one 2-core server "
        "behind policy and proposer: expected near 1x here; the machine, not the pipeline, is the limit)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=8, help="train rows")
    parser.add_argument("--pareto", type=int, default=8, help="pareto rows (the first of the train rows)")
    parser.add_argument("--heldout", type=int, default=16, help="heldout rows (budget: twice this)")
    parser.add_argument("--train-budget", type=int, default=40, help="max_train_rollouts")
    parser.add_argument("--minibatch", type=int, default=2, help="minibatch_size")
    parser.add_argument("--proposer-max-tokens", type=int, default=256, help="the proposer's output limit")
    parser.add_argument("--parallel", type=int, default=2, help="llama-server slots")
    parser.add_argument("--seed", type=int, default=0, help="the run seed")
    parser.add_argument(
        "--memory", action="store_true", help="compare proposal_memory off and on (sync_serial) instead of the modes"
    )
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    anyio.run(memory_main if arguments.memory else main, arguments)
