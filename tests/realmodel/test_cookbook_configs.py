"""Each cookbook's own LLM config (``gepa.toml``) runs against the real local model: the test keeps the run small
(a few rows and rollouts, short policy replies, a few Crafter steps) and points the policy and the proposer at the
local server through the environment overrides alone. Banking77's config is run in ``test_real_runs.py``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.testing.local_model import LocalModelServer, ServedCall

from .configs import derived_config, local_env
from .test_real_runs import assert_usage_matches_the_server

pytestmark = pytest.mark.slow

SMALL: dict[str, dict[str, Any]] = {
    "code_review": {"policy": {"max_tokens": 16}},
    "crafter": {
        "dataset": {"pareto_ids": {"count": 2}},
        "policy": {"max_tokens": 8, "config": {"max_steps": 4, "max_llm_steps": 2}},
    },
    "tblite": {
        "policy": {"max_tokens": 16, "config": {"max_turns": 1, "command_timeout_seconds": 5}},
    },
}


@pytest.mark.anyio
@pytest.mark.parametrize("cookbook", sorted(SMALL))
async def test_the_cookbook_llm_config_runs_against_the_real_model(
    cookbook: str,
    tmp_path: Path,
    local_model: LocalModelServer,
    served_calls: Callable[[], list[ServedCall]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    changes = SMALL[cookbook]
    config = derived_config(
        cookbook,
        tmp_path,
        {
            **changes,
            "dataset": {"train_ids": {"count": 2}, "heldout_ids": {"count": 2}, **changes.get("dataset", {})},
            "proposer": {"timeout_seconds": 120, "config": {"max_tokens": 96}},
            "gepa": {
                "max_train_rollouts": 6,
                "max_heldout_rollouts": 4,
                "max_total_rollouts": None,
                # reuse off: a free parent minibatch would let the tiny budget buy more calls of the slow real
                # model (and of its failures): these runs stay as small as they are
                "reuse_evaluations": False,
                "minibatch_size": 1,
            },
        },
    )
    monkeypatch.setenv("SYNTH_OPTIMIZERS_PROPOSER_BACKEND", "openai_compatible")
    for name, value in local_env(local_model).items():
        monkeypatch.setenv(name, value)
    result = await GepaRun(load_config(config)).execute_async()
    assert result.status == "completed", result.stop_reason
    assert result.rollouts_used["train"] > 0 and result.rollouts_used["heldout"] > 0
    assert result.usage["rollout"]["calls"] > 0, "the policy asked the real model"
    assert result.usage["proposer"]["calls"] >= 1
    # a rollout's usage counts as one call, whatever number of model calls its episode made: tokens are compared
    assert_usage_matches_the_server(result, served_calls(), count_calls=False)
