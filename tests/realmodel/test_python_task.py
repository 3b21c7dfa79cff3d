"""The python_task cookbook against the real local model: a task whose score function calls the model itself,
launched by ``[container] task``, optimized with the offline proposer. What the server answered equals what the
task asked for: one completion per live rollout."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.testing.local_model import LocalModelServer, ServedCall

pytestmark = pytest.mark.slow

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbooks" / "python_task"


def test_a_python_task_that_calls_the_real_model(
    tmp_path: Path,
    local_model: LocalModelServer,
    served_calls: Callable[[], list[ServedCall]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shutil.copy(COOKBOOK / "intents.py", tmp_path / "intents.py")
    # the copy is not beside the repository, so it is told where the data is (the container inherits this)
    monkeypatch.setenv("BANKING77_DATA_DIR", str(COOKBOOK.parents[2] / "shared" / "data" / "banking77"))
    monkeypatch.setenv("INTENTS_TEST_KEY", local_model.api_key)
    env = {
        "INTENTS_BASE_URL": local_model.base_url,
        "INTENTS_MODEL": local_model.model,
        "INTENTS_API_KEY_ENV": "INTENTS_TEST_KEY",
    }
    env_table = "env = { " + ", ".join(f"{key} = {json.dumps(value)}" for key, value in env.items()) + " }"
    config = (COOKBOOK / "intents.toml").read_text()
    small = {  # the cookbook's config, a few rollouts small, pointed at the local model
        'env = { INTENTS_BASE_URL = "http://127.0.0.1:8080/v1" }': env_table,
        "pareto_ids = { count = 8 }": "pareto_ids = { count = 4 }",
        "heldout_ids = { count = 16 }": "heldout_ids = { count = 2 }",
        "max_train_rollouts = 80": "max_train_rollouts = 12",
        "max_heldout_rollouts = 32": "max_heldout_rollouts = 4",
        "minibatch_size = 4": "minibatch_size = 2",
    }
    for old, new in small.items():
        assert old in config, old
        config = config.replace(old, new)
    (tmp_path / "intents.toml").write_text(config)
    result = GepaRun(load_config(tmp_path / "intents.toml")).execute()
    assert result.rollouts_used["train"] <= 12 and result.seed_train_score is not None
    assert result.proposals >= 1 and result.best_heldout_score is not None
    completions = [call for call in served_calls() if call.path.endswith("/chat/completions")]
    assert len(completions) == result.rollouts_used["total"]  # the task's own calls, one per live rollout
    served_tokens = sum(int((call.usage or {}).get("total_tokens", 0)) for call in completions)
    assert served_tokens > 0 and result.usage["rollout"]["total_tokens"] == served_tokens  # Score.usage, counted
