"""Shared pieces of the benchmark scripts: configs, an in-process proposer with latency, a standing container."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from synth_opt.container.launch import launched_container
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.usage import Usage

HERE = Path(__file__).resolve().parent
COOKBOOKS = HERE.parent / "cookbooks"

# A proposer rule: the reflection request as JSON (``current_text``, ``records`` with ``task``, ``reward``, ...; what
# ``ReflectionRequest.to_json()`` gives and what the offline cookbook proposers read) to the new text.
Rule = Callable[[Mapping[str, Any]], str]


def edited_words(words: list[str], failures: list[tuple[float, str]], edit: str) -> list[str]:
    """The word task's edit: append the expected answer of the first failed record the text lacks
    (``edit = "first"``), or of every such record (``"all"``, a proposer that fixes every failure it is shown)."""
    out = list(words)
    for reward, answer in failures:
        if reward < 1.0 and answer and answer not in out:
            out.append(answer)
            if edit == "first":
                break
    return out


def words_rule(edit: str = "first") -> Rule:
    """The proposer rule of ``latency_container.py``'s word task (see :func:`edited_words`)."""

    def rule(request: Mapping[str, Any]) -> str:
        failures = [(float(r["reward"]), str((r.get("task") or {}).get("answer", ""))) for r in request["records"]]
        words = str(request["current_text"]).split()
        # words other proposals in flight already add (a request asked again lists them) count as present
        taken = {word for edit in request.get("concurrent_edits") or () for word in str(edit["text"]).split()}
        edited = edited_words(words + sorted(taken - set(words)), failures, edit)
        return " ".join(words + [word for word in edited[len(words) :] if word not in taken])

    return rule


def import_cookbooks() -> None:
    """Make the cookbooks importable as packages (``banking77``, ...), as their own scripts do."""
    if str(COOKBOOKS) not in sys.path:
        sys.path.insert(0, str(COOKBOOKS))


def banking77_rule() -> Rule:
    """The offline Banking77 cookbook proposer's rule (``cookbooks/banking77/offline_proposer.py``), its first
    proposal."""
    import_cookbooks()
    from banking77.offline_proposer import propose

    return lambda request: propose(request)[0]


def code_review_rule() -> Rule:
    """The offline code_review cookbook proposer's rule (``cookbooks/code_review/offline_proposer.py``: drop or
    fence the patterns that fired on clean lines, add a pattern for each missed defect line), its first proposal
    (the current text when the minibatch gives nothing to change)."""
    import_cookbooks()
    from code_review.offline_proposer import propose

    return lambda request: propose(request)[0]


class LatencyProposer:
    """Applies a :data:`Rule` to the reflection request after a fixed delay: a pure function of the request.

    It plugs into ``GepaRun(proposer=...)``, the seam that replaces the configured proposer."""

    backend = "benchmark"

    def __init__(self, latency_seconds: float, *, rule: Rule | None = None) -> None:
        self.latency_seconds = latency_seconds
        self.rule = rule if rule is not None else words_rule()

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        started = time.perf_counter()
        await anyio.sleep(self.latency_seconds)
        return ProposerResult(
            texts=(self.rule(request.to_json()),),
            usage=Usage(calls=1, cost_usd=None),
            duration_seconds=time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        return None


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return str(value)


def _table(name: str, keys: Mapping[str, object]) -> str:
    return f"[{name}]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in keys.items() if value is not None)


def task_config(
    folder: Path,
    name: str,
    *,
    url: str,
    seed: int,
    minibatch_ids: list[str],
    pareto_ids: list[str],
    gepa: Mapping[str, object],
    pipeline: Mapping[str, object],
    workers: Mapping[str, object] | None = None,
) -> Path:
    """A synth_opt config for one run of a ``vs_gepa.py`` task against a standing container: its minibatch and
    pareto rows (no heldout rows), the proposer the run is given (``GepaRun(proposer=...)``), the cache off, and the
    ``[gepa]``, ``[gepa.pipeline]`` and ``[gepa.pipeline.workers]`` keys given (a key given as None is left to its
    default)."""
    train_ids = list(dict.fromkeys([*minibatch_ids, *pareto_ids]))
    sections = [
        _table("run", {"run_id": name, "output_dir": str(folder / "runs"), "seed": seed}),
        _table("container", {"url": url}),
        _table("dataset", {"train_ids": train_ids, "minibatch_ids": minibatch_ids, "pareto_ids": pareto_ids})
        + "heldout_ids = []\n",
        _table("proposer", {"backend": "codex_app_server"}),
        _table("gepa", gepa),
        _table("gepa.pipeline", pipeline),
        *([_table("gepa.pipeline.workers", workers)] if workers else []),
        _table("cache", {"mode": "off"}),
    ]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(sections))
    return path


def write_config(
    folder: Path,
    name: str,
    *,
    url: str,
    mode: str,
    rollout_workers: int,
    in_flight: int,
    train_budget: int,
    pareto: int = 20,
    propose_workers: int = 4,
    heldout: int = 0,
    urls: list[str] | None = None,
) -> Path:
    """``urls``: standing replicas (``[container] urls``) instead of ``url``."""
    path = folder / f"{name}.toml"
    heldout_ids = f"{{count = {heldout}}}" if heldout else "[]"
    where = f'url = "{url}"' if urls is None else f"urls = {_toml(urls)}"
    path.write_text(
        f"""
[run]
run_id = "{name}"
output_dir = "{folder / "runs"}"

[container]
{where}

[dataset]
train_ids = {{count = 200}}
pareto_ids = {{count = {pareto}}}
heldout_ids = {heldout_ids}

[proposer]
backend = "codex_app_server"

[gepa]
max_train_rollouts = {train_budget}
{f"max_heldout_rollouts = {2 * heldout}" if heldout else ""}
minibatch_size = 3

[gepa.pipeline]
mode = "{mode}"
max_in_flight_candidates = {in_flight}

[gepa.pipeline.workers]
propose = {propose_workers}
rollout = {rollout_workers}

[cache]
mode = "off"
"""
    )
    return path


@asynccontextmanager
async def standing_container(
    latency_ms: float, *, vocabulary: int = 40, task: str = "words", concurrency: int = 0, pad_kb: int = 0
) -> AsyncIterator[str]:
    """``latency_container.py`` in its own process: the word task (``vocabulary`` answer words, ``pad_kb`` kB more
    of feedback and trace a rollout) or, with ``task = "banking77"`` or ``"code_review"``, that cookbook's
    container, each one waiting ``latency_ms`` per rollout and serving at most ``concurrency`` at once (0: no
    limit)."""
    command = [sys.executable, str(HERE / "latency_container.py"), "--port", "{port}", "--latency-ms", str(latency_ms)]
    command += ["--vocabulary", str(vocabulary), "--task", task, "--concurrency", str(concurrency)]
    command += ["--pad-kb", str(pad_kb)]
    async with launched_container(command, cwd=HERE, env={}, startup_timeout_seconds=30) as launched:
        yield launched.url


async def served(url: str) -> int:
    """Distinct rollouts the standing container has served (``GET /stats``)."""
    async with httpx.AsyncClient() as client:
        return int((await client.get(f"{url}/stats")).json()["served"])
