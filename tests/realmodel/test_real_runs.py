"""Whole runs against the real local model (SmolLM2-135M-Instruct behind llama.cpp's server): the Banking77
cookbook's own LLM config, its endpoint and model given by environment overrides, with the model as the policy and
as the ``openai_compatible`` proposer. What a run accounts for equals what the server itself reported for every
call; a run through injected 429 and 500 replies completes; a run whose model server is killed mid-run waits (an
outage: nothing committed) and completes once the server is back.

A 135M model writes poor prompts; these runs show the machinery holds with a real model's replies, not that the
model improves Banking77 (``benchmarks/real_model.py`` measures that)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.result import GepaResult
from synth_opt.testing.local_model import LocalModelServer, ServedCall
from synth_opt.workspace.status import workspace_status

from .configs import derived_config, local_env, served_usage

pytestmark = pytest.mark.slow

SEED = (
    "Classify the online-banking customer's message into one intent label. Reply with the label only, for example "
    "card_arrival, lost_or_stolen_card or exchange_rate."
)


OUTAGE_SECONDS = 15.0


def banking77(folder: Path, *, train_rollouts: int = 16, **gepa: Any) -> Path:
    return derived_config(
        "banking77",
        folder,
        {
            "dataset": {"train_ids": {"count": 4}, "pareto_ids": {"count": 4}, "heldout_ids": {"count": 4}},
            "seed_candidate": {"system_prompt": SEED},
            "policy": {"max_tokens": 16},
            "proposer": {"timeout_seconds": 120, "config": {"max_tokens": 160, "temperature": 0.8, "seed": 3}},
            "gepa": {
                "max_train_rollouts": train_rollouts,
                "max_heldout_rollouts": 8,
                "max_total_rollouts": None,
                "max_time_seconds": 600,
                # reuse off: a free parent minibatch would let the tiny budget buy more calls of the slow real
                # model (and of its failures): these runs stay as small as they are
                "reuse_evaluations": False,
                "minibatch_size": 2,
                **gepa,
            },
        },
    )


async def run(config: Path, server: LocalModelServer, monkeypatch: pytest.MonkeyPatch) -> GepaResult:
    monkeypatch.setenv("SYNTH_OPTIMIZERS_PROPOSER_BACKEND", "openai_compatible")
    for name, value in local_env(server).items():
        monkeypatch.setenv(name, value)
    return await GepaRun(load_config(config)).execute_async()


def feed(result: GepaResult) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(result.event_feed_path).read_text().splitlines()]


def accounted(result: GepaResult) -> dict[str, int]:
    """What the run accounts for: the decided work's usage and what it threw away (outage probes here)."""
    parts = [result.usage["proposer"], result.usage["rollout"], result.usage["discarded"]["total"]]
    return {
        key: sum(int(part[key]) for part in parts) for key in ("prompt_tokens", "completion_tokens", "total_tokens")
    }


def assert_usage_matches_the_server(result: GepaResult, calls: list[ServedCall], *, count_calls: bool = True) -> None:
    """The tokens the run accounts for equal the server's own, call for call summed; with ``count_calls``, so does
    the number of calls (a policy that calls the model once a rollout: a rollout's usage counts as one call)."""
    served = served_usage(calls)
    assert accounted(result) == {key: served[key] for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if not count_calls:
        return
    posts = [call for call in calls if call.method == "POST" and call.status == 200]
    calls_accounted = sum(int(part["calls"]) for part in (result.usage["proposer"], result.usage["rollout"]))
    assert calls_accounted + result.usage["discarded"]["total"]["calls"] == len(posts) == served["calls"]


@pytest.mark.anyio
async def test_banking77_with_the_real_model_as_policy_and_proposer(
    tmp_path: Path,
    local_model: LocalModelServer,
    served_calls: Callable[[], list[ServedCall]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = await run(banking77(tmp_path), local_model, monkeypatch)
    assert result.status == "completed", result.stop_reason
    events = feed(result)
    decided = [event for event in events if event["type"] == "acceptance.decided"]
    assert decided, "no real-model proposal was parsed and scored: " + json.dumps(
        [event["message"] for event in events if event["type"] == "proposal.failed"]
    )
    assert result.proposals >= 1 and result.seed_heldout_score is not None
    assert_usage_matches_the_server(result, served_calls())
    assert result.cost_usd is not None and result.cost_usd > 0  # the cookbook's nominal prices


@pytest.mark.anyio
async def test_a_run_through_injected_429_and_500_replies_completes(
    tmp_path: Path,
    local_model: LocalModelServer,
    served_calls: Callable[[], list[ServedCall]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faults = {2: 429, 3: 500, 5: 500, 7: 429}
    local_model.set_faults(faults.get)
    try:
        result = await run(banking77(tmp_path, train_rollouts=8), local_model, monkeypatch)
    finally:
        local_model.set_faults(None)
    assert result.status == "completed", result.stop_reason
    calls = served_calls()
    assert sorted(call.status for call in calls if call.status != 200) == [429, 429, 500, 500]
    assert_usage_matches_the_server(result, calls)


@pytest.mark.anyio
async def test_a_run_whose_model_server_is_killed_waits_and_completes_when_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "server").mkdir()
    with LocalModelServer(work_dir=tmp_path / "server", parallel=1) as server:
        killed = threading.Event()
        restarted = threading.Event()

        def kill_then_restart(number: int) -> int | None:
            if number == 6 and not killed.is_set():
                killed.set()
                threading.Thread(target=outage, daemon=True).start()
            return None

        def outage() -> None:
            server.kill_server()
            threading.Event().wait(OUTAGE_SECONDS)  # longer than the clients' retries: the run must wait
            server.restart_server()
            restarted.set()

        server.set_faults(kill_then_restart)
        config = banking77(tmp_path, train_rollouts=8)
        result = await run(config, server, monkeypatch)
        calls = server.calls()
    assert killed.is_set() and restarted.is_set()
    assert result.status == "completed", result.stop_reason
    events = feed(result)
    outage = [event for event in events if event["type"] == "container.outage"]
    assert outage, "the run never met the outage: " + str([call.status for call in calls])
    assert any(call.status == 502 for call in calls)
    probes = [event for event in outage if event["fields"].get("state") == "canary_served"]
    assert result.usage["discarded"]["probes"] == len(probes)
    assert result.workspace_db_path is not None
    status = workspace_status(Path(result.workspace_db_path))["runs"][0]
    assert status["discarded_usage"] == (result.usage["discarded"] if probes else None)
    assert_usage_matches_the_server(result, calls)


@pytest.mark.anyio
async def test_the_real_codex_app_server_proposes_through_the_real_model(
    tmp_path: Path,
    local_model: LocalModelServer,
    served_calls: Callable[[], list[ServedCall]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At most two codex turns (codex's own instructions make each a prompt of thousands of tokens)."""
    from tests.integration.codex_support import codex_binary

    codex = codex_binary()
    config = banking77(tmp_path, train_rollouts=12)
    text = config.read_text().replace('"command" = ["codex", "app-server"]', f'"command" = ["{codex}", "app-server"]')
    assert str(codex) in text
    config.write_text(text)
    for name, value in local_env(local_model).items():
        monkeypatch.setenv(name, value)
    result = await GepaRun(load_config(config)).execute_async()
    assert result.status == "completed", result.stop_reason
    calls = served_calls()
    turns = [call for call in calls if call.path.endswith("/responses")]
    assert 1 <= len(turns) <= 2 and all(call.stream for call in turns)
    assert result.usage["proposer"]["calls"] == len(turns)
    assert_usage_matches_the_server(result, calls)
