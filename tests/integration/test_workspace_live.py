"""A live run writes its workspace as it goes: another process polling ``workspace_status`` sees candidates and
rollouts grow before ``result_manifest.json`` exists, and after the run the tables agree with their sources."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from synth_opt import GepaRun, load_config
from synth_opt.events import Event
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.run import RunView
from synth_opt.testing.fake_container import FakeContainer
from synth_opt.usage import Usage
from synth_opt.workspace import WriterStats, finalize_workspace, run_workspace_writer, workspace_status

from .test_pipeline_fake import keyword_score, rows

POLLER = """
import json, sys, time
from pathlib import Path
from synth_opt.workspace import workspace_status

db, out = Path(sys.argv[1]), Path(sys.argv[2])
manifest = db.parent / "result_manifest.json"
print("ready", flush=True)
deadline = time.monotonic() + 30
with out.open("w") as fh:
    while time.monotonic() < deadline:
        record = {"t": time.time()}
        if db.exists():
            try:
                runs = workspace_status(db)["runs"]
            except Exception as error:  # the writer may not have created the schema yet
                record["error"] = repr(error)
            else:
                run = runs[0] if runs else {}
                record.update(candidates=run.get("candidates"), rollouts=run.get("rollouts"))
        # checked after reading: a False here means the counts were read before the manifest existed
        record["manifest"] = manifest.exists()
        fh.write(json.dumps(record) + "\\n")
        fh.flush()
        if record["manifest"]:
            break
        time.sleep(0.05)
"""


class LearningProposer:
    """Adds the answer word of one failed record to the text, so candidates keep coming."""

    backend = "test"

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        words = request.candidate[request.target_module].split()
        for record in request.records:
            if record.reward < 1.0 and record.task["answer"] not in words:
                words.append(record.task["answer"])
                break
        return ProposerResult(texts=(" ".join(words),), usage=Usage(calls=1, total_tokens=5, cost_usd=None))

    async def aclose(self) -> None:
        return None


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "live.toml"
    path.write_text(
        """
[run]
run_id = "live"
output_dir = "runs"
seed = 5

[container]
url = "http://fake-container.test"

[dataset]
train_ids = {count = 12}
heldout_ids = {count = 10}
pareto_ids = {count = 8}

[proposer]
backend = "codex_app_server"

[gepa]
max_train_rollouts = 300
minibatch_size = 3
# the whole budget, for the reader to watch: with reuse the search would stop once it knows every word
reuse_evaluations = false

[gepa.pipeline]
mode = "sync_serial"

[cache]
mode = "off"
"""
    )
    return path


def one(db: Path, query: str) -> Any:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query).fetchone()[0]
    finally:
        conn.close()


@pytest.mark.anyio
async def test_a_reader_in_another_process_sees_the_workspace_grow_before_the_manifest(tmp_path: Path) -> None:
    fake = FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 10)},
        score=keyword_score,
        seed_candidate={"instruction": "answer w0"},
        latency_seconds=0.005,
    )
    run = GepaRun(
        load_config(write_config(tmp_path)), container_transport=fake.transport(), proposer=LearningProposer()
    )
    db = run.run_dir / "workspace.sqlite"
    stats = WriterStats()

    async def write_workspace(events: MemoryObjectReceiveStream[Event], view: RunView) -> None:
        await run_workspace_writer(db, events, run_id=view.run_id, stats=stats)

    run.observer = write_workspace
    polls = tmp_path / "polls.jsonl"
    async with await anyio.open_process(
        [sys.executable, "-c", POLLER, str(db), str(polls)], stdout=subprocess.PIPE, stderr=None
    ) as poller:
        try:
            assert poller.stdout is not None
            with anyio.fail_after(15):
                assert (await poller.stdout.receive()).strip() == b"ready"
            result = await run.execute_async()
            with anyio.fail_after(15):
                assert await poller.wait() == 0
        except BaseException:
            poller.kill()  # do not wait out the poller's own deadline
            raise

    records = [json.loads(line) for line in polls.read_text().splitlines()]
    live = [r for r in records if not r["manifest"] and r.get("rollouts")]
    assert len({r["rollouts"] for r in live}) >= 3, records
    assert live[-1]["rollouts"] > live[0]["rollouts"] and live[-1]["candidates"] >= 1
    assert [r["rollouts"] for r in live] == sorted(r["rollouts"] for r in live)
    assert records[-1]["manifest"]
    assert stats.process and stats.failed_batches == 0 and stats.events > 0

    # after the run, with the cache off, the sources agree
    manifest = json.loads(Path(result.manifest_path).read_text())
    feed = run.run_dir / "events.jsonl"
    finalize_workspace(db, feed, run_id=run.run_id, manifest=manifest)
    status = workspace_status(db)["runs"][0]
    assert status["invariant_report"]["status"] == "ok", status["invariant_report"]
    served = len(fake.rollout_ids_served)
    assert served == result.rollouts_used["total"] == status["rollouts"]
    assert one(db, "SELECT count(*) FROM evidence_frames") == served
    assert one(db, "SELECT count(*) FROM usage_ledger WHERE boundary = 'container.rollout'") == served
    assert one(db, "SELECT count(*) FROM event_stream_events") == len(feed.read_text().splitlines())
    assert one(db, "SELECT sum(total_tokens) FROM usage_ledger") == result.usage["total"]["total_tokens"]
    assert one(db, "SELECT sum(calls) FROM usage_ledger") == result.usage["total"]["calls"]
    assert (
        one(
            db,
            "SELECT count(*) FROM candidates c WHERE NOT EXISTS (SELECT 1 FROM candidate_payloads p "
            "WHERE p.candidate_id = c.candidate_id)",
        )
        == 0
    )
    assert (
        one(
            db,
            "SELECT count(*) FROM candidates c WHERE NOT c.is_seed AND NOT EXISTS (SELECT 1 FROM "
            "candidate_deltas d WHERE d.candidate_id = c.candidate_id)",
        )
        == 0
    )
    assert (
        one(
            db,
            "SELECT count(*) FROM candidates c WHERE NOT c.is_seed AND NOT EXISTS (SELECT 1 FROM "
            "acceptance_decisions a WHERE a.proposal_index = c.proposal_index)",
        )
        == 0
    )
    assert status["candidates"] == len(json.loads(Path(result.candidate_registry_path).read_text())["candidates"])
    assert status["accepted"] == result.accepted >= 1
