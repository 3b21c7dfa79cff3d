"""After a run with the cache off, the workspace's sources agree with each other, the container and the result."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from synth_opt import GepaRun, load_config

from .test_pipeline_fake import LearningProposer, new_fake, write_config


@pytest.mark.anyio
async def test_the_workspace_agrees_with_the_container_the_feed_and_the_result(tmp_path: Path) -> None:
    path = write_config(tmp_path, "agree", mode="async_pipelined", rollout_workers=3, budget=300)
    path.write_text(path.read_text().replace("max_in_flight_candidates = 1", "max_in_flight_candidates = 3"))
    fake = new_fake()
    result = await GepaRun(
        load_config(path), container_transport=fake.transport(), proposer=LearningProposer()
    ).execute_async()
    assert result.workspace_db_path is not None
    db = sqlite3.connect(result.workspace_db_path)
    try:

        def one(sql: str) -> int:
            return int(db.execute(sql).fetchone()[0])

        rollouts = one("SELECT count(*) FROM rollouts")
        assert rollouts == fake.rollouts_served == result.rollouts_used["total"]
        assert one("SELECT count(*) FROM usage_ledger WHERE boundary = 'container.rollout'") == rollouts
        assert one("SELECT count(*) FROM evidence_frames") == rollouts
        lines = Path(result.event_feed_path).read_text().splitlines()
        assert one("SELECT count(*) FROM event_stream_events") == len(lines)
        totals = db.execute("SELECT sum(total_tokens), sum(calls) FROM usage_ledger").fetchone()
        assert totals[0] == result.usage["total"]["total_tokens"]
        assert totals[1] == result.usage["total"]["calls"]
        rollout_tokens = one("SELECT sum(total_tokens) FROM usage_ledger WHERE boundary = 'container.rollout'")
        assert rollout_tokens == result.usage["rollout"]["total_tokens"]
        candidates = [row[0] for row in db.execute("SELECT candidate_id FROM candidates WHERE is_seed = 0")]
        registry = json.loads(Path(result.candidate_registry_path).read_text())["candidates"]
        assert sorted(candidates) == sorted(cid for cid, entry in registry.items() if entry["status"] != "seed")
        assert len(candidates) > 3
        for cid in candidates:
            assert one(f"SELECT count(*) FROM candidate_payloads WHERE candidate_id = '{cid}'") == 1, cid
            assert one(f"SELECT count(*) FROM candidate_deltas WHERE candidate_id = '{cid}'") >= 1, cid
            # a rebased candidate's decision is its proposed child's (the registry names it in rebased_to)
            decided = [cid, *(child for child, entry in registry.items() if entry.get("rebased_to") == cid)]
            named = ", ".join(f"'{c}'" for c in decided)
            assert one(f"SELECT count(*) FROM acceptance_decisions WHERE candidate_id IN ({named})") >= 1, cid
        assert one("SELECT count(*) FROM candidates WHERE is_seed = 1") == 1
        assert one("SELECT count(*) FROM candidate_payloads") == len(candidates) + 1
    finally:
        db.close()
