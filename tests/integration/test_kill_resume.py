"""Kill and resume: a run SIGKILLed from outside at seeded points, resumed each time, ends exactly where an
uninterrupted run of the same config ends.

Each cell of the matrix (pipeline mode x staleness policy x cache mode; evaluation reuse on in all but one cell,
and one cell whose container writes every reply a feedback longer than a run keeps)
runs the config once without interruption, then runs it again in another output directory under a chain of ten
SIGKILLs: the killer watches ``events.jsonl`` and kills the process when the file reaches the next of ten line
counts drawn by a seeded generator over the uninterrupted run's length; the next start resumes (and may itself be
killed, so later kills land in resumed runs). One more start finishes the run. Its normalized feed, candidate
registry, usage, rollouts (used and reused) and best candidate must equal the uninterrupted run's, and its workspace
must pass its invariant report.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from synth_opt import workspace_status
from synth_opt.container.kept import STORED_CHARS
from synth_opt.events.compare import compare_feeds

DRIVER = Path(__file__).with_name("kill_driver.py")
KILLS_PER_CELL = 10

CELLS = [
    ("sync_serial", "full", "off", "reuse"),
    ("sync_serial", "full", "readwrite", "reuse"),
    ("sync_serial", "full", "off", "no-reuse"),
    *(
        ("async_pipelined", policy, cache, "reuse")
        for policy in ("full", "guarded", "rebase")
        for cache in ("off", "readwrite")
    ),
    ("async_pipelined", "rebase", "readwrite", "long-replies"),
]


def write_config(folder: Path, mode: str, policy: str, cache: str, variant: str = "reuse") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gepa.toml"
    path.write_text(
        f"""
[run]
run_id = "kill"
output_dir = "runs"
seed = 5

[container]
url = "http://fake-container.test"

[dataset]
train_ids = {{count = 12}}
heldout_ids = {{count = 6}}
pareto_ids = {{count = 8}}

[proposer]
backend = "codex_app_server"
max_consecutive_failures = 20
failure_tolerance = 1.0

[gepa]
max_train_rollouts = 150
minibatch_size = 3
reuse_evaluations = {"false" if variant == "no-reuse" else "true"}

[gepa.pipeline]
mode = "{mode}"
staleness_policy = "{policy}"
delta_max = 1
max_in_flight_candidates = 4

[gepa.pipeline.workers]
rollout = 8
propose = 2

[cache]
mode = "{cache}"
"""
    )
    (folder / "variant").write_text(variant)
    return path


def start(config: Path, *, stderr: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    variant = (config.parent / "variant").read_text()
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(config), variant],
        cwd=config.parent,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a torn last line
    return out


def line_count(path: Path) -> int:
    try:
        with path.open("rb") as feed:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: feed.read(1 << 16), b""))
    except FileNotFoundError:
        return 0


def has_state(feed: Path, state: str) -> bool:
    """Whether the feed has entered ``state`` (a byte search: cheap enough to poll every few milliseconds)."""
    try:
        return f'"state": "{state}"'.encode() in feed.read_bytes()
    except FileNotFoundError:
        return False


@dataclass
class Kill:
    at_line: int
    lines: int = 0
    state: str | None = None
    in_flight: int = 0
    resumed: bool = False
    finished: bool = False


@dataclass
class Chain:
    kills: list[Kill] = field(default_factory=list)


def kill_at(config: Path, point: int, *, after_state: str | None = None) -> Kill:
    """Start the run and SIGKILL it once its feed has ``point`` lines (or, with ``after_state``, as soon as it
    has entered that state: ``resumed`` or ``evaluating_heldout``)."""
    feed = config.parent / "runs" / "kill" / "events.jsonl"
    kill = Kill(point)
    process = start(config)
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if after_state is not None:
                if has_state(feed, after_state):
                    break
            elif line_count(feed) >= point:
                break
            time.sleep(0.002)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        else:
            kill.finished = True
        process.wait(timeout=30)
    events = lines(feed)
    assert_announced_writes_kept(config.parent / "runs" / "cache.sqlite", events)
    kill.lines = len(events)
    states = [e["fields"]["state"] for e in events if e["type"] == "run.state"]
    kill.state = states[-1] if states else None
    kill.resumed = "resumed" in states
    planned = sum(e["type"] == "proposal.planned" for e in events)
    decided = sum(e["type"] == "acceptance.decided" for e in events)
    kill.in_flight = planned - decided
    return kill


def assert_announced_writes_kept(cache: Path, events: list[dict[str, Any]]) -> None:
    """Every cache write the feed of a killed run announces is in the cache file: a resume is served again what
    the run had received (so ``usage.discarded`` rightly says nothing was paid twice)."""
    written = {
        (line["fields"]["boundary"], line["fields"]["key"])
        for line in events
        if line["type"] == "cache.access" and line["fields"]["action"] == "write"
    }
    if not cache.exists():
        assert not written
        return
    with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
        kept = set(db.execute("SELECT boundary, key FROM cache_entries").fetchall())
    assert written <= kept, f"{len(written - kept)} of {len(written)} announced writes are not in the cache"


def finish(config: Path) -> None:
    process = start(config, stderr=subprocess.PIPE)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()[-3000:]


def outcome(run_dir: Path) -> dict[str, Any]:
    manifest = json.loads((run_dir / "result_manifest.json").read_text())
    usage = {k: v for k, v in manifest["usage"].items() if k != "discarded"}
    return {
        "best_candidate_id": manifest["best_candidate_id"],
        "rollouts_used": manifest["rollouts_used"],
        "rollouts_reused": manifest["rollouts_reused"],
        "usage": usage,
        "stop_reason": manifest["stop_reason"],
        "status": manifest["status"],
        "registry": json.loads((run_dir / "candidate_registry.json").read_text())["candidates"],
    }


def assert_replies_kept(run_dir: Path) -> None:
    """Every rollout of the run came back with a feedback longer than a run keeps: the feed names each cut, and no
    line of the feed or row of the cache holds a whole one."""
    completed = [line for line in lines(run_dir / "events.jsonl") if line["type"] == "rollout.completed"]
    assert completed and all("feedback" in line["fields"]["cut"] for line in completed), completed[:1]
    whole = {line["fields"]["cut"]["feedback"]["chars"] for line in completed}
    assert min(whole) > STORED_CHARS, whole
    longest = max(len(line) for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines())
    assert longest < STORED_CHARS + 4096, longest
    cache_bytes = sum(path.stat().st_size for path in run_dir.parent.glob("cache.sqlite*"))
    assert 0 < cache_bytes < len(completed) * 2 * STORED_CHARS, (cache_bytes, len(completed))


def check_cell(tmp_path: Path, mode: str, policy: str, cache: str, variant: str) -> list[Kill]:
    whole = write_config(tmp_path / "whole", mode, policy, cache, variant)
    finish(whole)
    whole_dir = whole.parent / "runs" / "kill"
    length = line_count(whole_dir / "events.jsonl")
    reused = json.loads((whole_dir / "result_manifest.json").read_text())["rollouts_reused"]["total"]
    assert (reused > 0) == (variant != "no-reuse"), reused  # the cell exercises what it names
    if variant == "long-replies":
        assert_replies_kept(whole_dir)

    parts = write_config(tmp_path / "parts", mode, policy, cache, variant)
    draw = random.Random(f"{mode}/{policy}/{cache}" + ("" if variant == "reuse" else f"/{variant}"))
    points = sorted(draw.sample(range(8, length), KILLS_PER_CELL - 2))
    kills = [kill_at(parts, point) for point in points[:3]]
    kills.append(kill_at(parts, 0, after_state="resumed"))  # a kill inside the resume itself
    assert kills[-1].resumed and not kills[-1].finished, kills
    kills.extend(kill_at(parts, point) for point in points[3:])
    kills.append(kill_at(parts, 0, after_state="evaluating_heldout"))  # a kill in the heldout phase
    finish(parts)
    parts_dir = parts.parent / "runs" / "kill"

    normalized = lines(whole_dir / "events.normalized.jsonl")
    assert any(line["type"] == "proposal.failed" for line in normalized)  # failed proposals are in the chain too
    asked_again = [line for line in normalized if line["type"] == "proposal.created" and "repeated" in line["fields"]]
    assert bool(asked_again) == (mode == "async_pipelined")  # so are proposals asked again (concurrent_edits)
    comparison = compare_feeds(whole_dir / "events.normalized.jsonl", parts_dir / "events.normalized.jsonl")
    assert comparison.equal, (comparison, kills)
    assert outcome(parts_dir) == outcome(whole_dir), kills
    status = workspace_status(parts_dir / "workspace.sqlite")["runs"][0]
    assert status["invariant_report"]["status"] == "ok", status["invariant_report"]
    discarded = json.loads((parts_dir / "result_manifest.json").read_text())["usage"]["discarded"]
    if cache == "off":  # the work after each checkpoint was paid for and then done again: it is on record
        assert discarded["rollouts"] > 0 and discarded["total"]["total_tokens"] > 0, discarded
        assert status["discarded_usage"] == discarded
    else:  # served again from the cache, so not paid twice
        assert discarded["rollouts"] == 0, discarded
    if variant == "long-replies":
        assert_replies_kept(parts_dir)
    registry = lines(parts.parent / "runs" / "run_registry.jsonl")
    resumed = [line for line in registry if line["status"] == "resumed"]
    assert resumed and all(line["commits"] > 0 for line in resumed), (registry, kills)
    return kills


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "policy", "cache", "variant"), CELLS, ids=["/".join(cell) for cell in CELLS])
def test_a_run_killed_at_ten_points_resumes_to_the_uninterrupted_result(
    tmp_path: Path, mode: str, policy: str, cache: str, variant: str
) -> None:
    kills = check_cell(tmp_path, mode, policy, cache, variant)
    assert sum(not kill.finished for kill in kills) >= KILLS_PER_CELL - 1, kills
    if mode == "async_pipelined":
        assert any(kill.in_flight >= 2 for kill in kills), kills
    assert any(kill.state == "evaluating_heldout" for kill in kills), kills
    assert sum(kill.resumed for kill in kills) >= KILLS_PER_CELL - 2, kills  # later kills land in resumed runs
