"""A run of one config in its own process, for kill-and-resume tests: ``python kill_driver.py CONFIG``.

The container is the library's fake transport with a little latency per rollout and the proposer an in-process one
with a little latency per call, so proposals overlap in ``async_pipelined`` while a whole run takes a few seconds.
Both are pure functions of their requests, so every run of one config makes the same decisions. The process exits
0 when the run completes and 1 when it fails; the test kills it from outside (SIGKILL) at chosen points.
With ``long-replies`` after the config, every rollout reply carries a feedback longer than a run keeps (cut on
receipt, so the event feed, the workspace and the cache hold the kept cut).
"""

from __future__ import annotations

import json
import sys
import zlib
from typing import Any

import anyio
import httpx

from synth_opt import GepaRun, ProposerReplyError, SynthOptimizerError, load_config
from synth_opt.container.kept import STORED_CHARS
from synth_opt.proposers.base import ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.testing.fake_container import FakeContainer
from synth_opt.usage import Usage


def keyword_score(candidate: dict[str, str], row: dict[str, Any]) -> float:
    return 1.0 if row["answer"] in candidate["instruction"].split() else 0.0


def rows(split: str, n: int) -> list[dict[str, Any]]:
    return [{"task_id": f"{split}-{i}", "question": f"q{i}", "answer": f"w{i % 7}"} for i in range(n)]


def long_feedback(candidate: dict[str, str], row: dict[str, Any], reward: float) -> str:
    """A feedback four times as long as a run keeps, the same for the same rollout."""
    line = f"{row['task_id']} scored {reward} with {candidate['instruction']!r}; "
    return line * (4 * STORED_CHARS // len(line))


def slowed(fake: FakeContainer, base_ms: int) -> httpx.MockTransport:
    """``base_ms`` to ``base_ms + 8`` ms per rollout, chosen from the request (never from a clock or a global
    generator)."""

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/rollout"):
            # the heldout phase is slower, so a kill aimed at it lands in it however busy the machine is
            extra_ms = 150 if b'"stage": "heldout"' in request.content or b'"stage":"heldout"' in request.content else 0
            await anyio.sleep((base_ms + extra_ms + zlib.crc32(request.content) % 9) / 1000)
        return await fake.handle(request)

    return httpx.MockTransport(handle)


class FirstWordProposer:
    """Adds the answer word of the first failed record (not one that proposals in flight already add, when asked
    again): one edit per proposal; 20 ms a call; 7 tokens, $0.001.
    One request in five (chosen by its content, so in any order and after any resume) gets a reply cut short: a
    failed proposal, billed like the others, so kills also land around failed proposals."""

    backend = "test"

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        await anyio.sleep(0.02)
        usage = Usage(calls=1, prompt_tokens=5, completion_tokens=2, total_tokens=7, cost_usd=0.001)
        if zlib.crc32(json.dumps(request.to_json(), sort_keys=True).encode()) % 5 == 0:
            raise ProposerReplyError("the reply was cut short by the token limit", raw_reply='{"propos', usage=usage)
        words = request.candidate[request.target_module].split()
        taken = {word for edit in request.concurrent_edits for word in edit.text.split()}  # made in flight
        for record in request.records:
            if record.reward < 1.0 and record.task["answer"] not in words and record.task["answer"] not in taken:
                words.append(record.task["answer"])
                break
        return ProposerResult(texts=(" ".join(words),), usage=usage)

    async def aclose(self) -> None:
        return None


def main(config_path: str, variant: str = "") -> int:
    fake = FakeContainer(
        rows={"train": rows("train", 12), "test": rows("test", 6)},
        score=keyword_score,
        seed_candidate={"instruction": "answer w0"},
        feedback=long_feedback if variant == "long-replies" else None,
    )
    config = load_config(config_path)
    # pipelined runs overlap their rollouts: slower ones keep them running long enough to be killed at many points
    base_ms = 3 if config.gepa.pipeline.mode == "sync_serial" else 25
    run = GepaRun(config, container_transport=slowed(fake, base_ms), proposer=FirstWordProposer())
    try:
        run.execute()
    except SynthOptimizerError as error:
        print(error.one_line(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
