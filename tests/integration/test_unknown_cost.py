"""Unknown is not zero: a proposer with no prices has an unknown cost everywhere a cost is shown, a price of 0 is
free, and a cost limit with unknown prices works from the estimate and says so at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from synth_opt import GepaRun, load_config
from synth_opt.cli import render_summary
from synth_opt.events.normalize import read_feed
from synth_opt.progress import replay_summary
from synth_opt.testing import FakeOpenAI, serve_fake_openai

from .test_openai_proposer_run import config, learn
from .test_pipeline_fake import new_fake


async def run(tmp_path: Path, prices: str, limits: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "test-key-not-a-secret")
    with serve_fake_openai(FakeOpenAI(learn)) as url:
        path = config(tmp_path, url, wire_api="chat", limits=limits)
        text = path.read_text().replace("cost_per_million_input_tokens = 2000.0\n", "")
        path.write_text(text.replace("cost_per_million_output_tokens = 8000.0\n", prices))
        return await GepaRun(load_config(path), container_transport=new_fake().transport()).execute_async()


def shown(result: Any) -> str:
    console = Console(record=True, width=160)
    console.print(replay_summary(read_feed(Path(result.event_feed_path)), run_id="r"))
    return console.export_text()


@pytest.mark.anyio
async def test_a_proposer_without_prices_costs_unknown_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = await run(tmp_path, "", "max_train_rollouts = 60", monkeypatch)
    assert result.usage["proposer"]["calls"] > 0 and result.usage["proposer"]["total_tokens"] > 0
    assert result.usage["proposer"]["cost_usd"] is None and result.usage["total"]["cost_usd"] is None
    assert result.cost_usd is None
    manifest = json.loads(Path(result.manifest_path).read_text())
    assert manifest["cost_usd"] is None and manifest["usage"]["total"]["cost_usd"] is None
    assert "cost: unknown" in render_summary(result) and "$0.0000" not in render_summary(result)
    assert "cost unknown" in shown(result)


@pytest.mark.anyio
async def test_a_price_of_zero_is_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prices = "cost_per_million_input_tokens = 0.0\ncost_per_million_output_tokens = 0.0\n"
    result = await run(tmp_path, prices, "max_train_rollouts = 60", monkeypatch)
    assert result.usage["proposer"]["cost_usd"] == 0.0 and result.cost_usd == 0.0
    assert "cost: $0.0000" in render_summary(result)


@pytest.mark.anyio
async def test_a_cost_limit_with_unknown_prices_works_from_the_estimate_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = "max_train_rollouts = 400\nmax_cost_usd = 0.05\nproposer_estimated_cost_usd = 0.01\n"
    limits += "rollout_estimated_cost_usd = 0.000001"
    result = await run(tmp_path, "", limits, monkeypatch)
    assert result.stop_reason == "max_cost_usd"
    assert result.usage["proposer"]["calls"] <= 5  # $0.05 at $0.01 a call
    feed = [json.loads(line) for line in Path(result.event_feed_path).read_text().splitlines()]
    warnings = [e["message"] for e in feed if e["type"] == "config.warning"]
    assert any("charges each proposer call its estimate" in w and "$0.01" in w for w in warnings), warnings
    assert result.cost_usd is None
