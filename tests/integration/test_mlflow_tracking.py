"""``[tracking]``: a run mirrored to a real local MLflow store (SQLite backend), read back with ``MlflowClient``:
params, metric histories and artifacts of a finished run, and of a cancelled one resumed into the same MLflow run;
a tracking server that is down changes nothing about the run."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from synth_opt import GepaRun, load_config
from synth_opt.errors import ConfigError
from tests.browser.test_view import load_script
from tests.integration.test_pipeline_fake import cancelled_after_decisions

mlflow_tracking = pytest.importorskip("mlflow.tracking")  # the dev extra installs it: make test never skips this

TRACKING = """
[tracking]
mlflow_tracking_uri = "{uri}"
experiment = "fruit"
"""


def setup(folder: Path, uri: str = "sqlite:///mlflow.db") -> Path:
    """The browser screenshots' fruit task and config (heldout rows, the offline proposer), tracked."""
    config = load_script().write_run(folder)
    config.write_text(config.read_text() + TRACKING.format(uri=uri))
    return config


def the_mlflow_run(folder: Path) -> object:
    client = mlflow_tracking.MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fruit")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [run.info.run_id for run in runs]  # one MLflow run per synth_opt run, resumed or not
    return client, runs[0]


def test_a_run_is_mirrored_to_mlflow(tmp_path: Path) -> None:
    result = GepaRun(load_config(setup(tmp_path))).execute()
    client, run = the_mlflow_run(tmp_path)
    assert run.info.status == "FINISHED" and run.info.run_name == result.manifest_path.split("/")[-2]
    params = run.data.params
    assert params["gepa.minibatch_size"] == "2" and params["proposer.backend"] == "offline"
    assert params["container.task"] == "fruit:names" and "tracking.mlflow_tracking_uri" not in params
    metrics = run.data.metrics
    assert metrics["best_train_score"] == result.best_train_score
    assert metrics["seed_heldout_score"] == result.seed_heldout_score
    assert metrics["best_heldout_score"] == result.best_heldout_score
    assert metrics["rollouts_total"] == result.rollouts_used["total"] and metrics["accepted"] == result.accepted
    history = client.get_metric_history(run.info.run_id, "best_train_score")
    steps = [point.step for point in history]
    assert steps == sorted(steps) and steps[-1] == result.rollouts_used["train"] and len(history) > 2
    assert history[0].value < history[-1].value  # the search improved on the seed
    assert len(client.get_metric_history(run.info.run_id, "accepted")) >= result.proposals
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"result_manifest.json", "candidate_registry.json", "frontier.json", "score_chart.svg"} <= artifacts
    # beside the SQLite store, not in the folder the run was started from
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns").as_uri())
    assert (tmp_path / "mlruns" / run.info.run_id / "artifacts" / "frontier.json").is_file()
    best = Path(client.download_artifacts(run.info.run_id, "best_candidate.txt", str(tmp_path / "dl")))
    assert best.read_text() == result.best_candidate["prompt"]
    assert run.data.tags["synth_opt.stop_reason"] == result.stop_reason


@pytest.mark.anyio
async def test_a_resumed_run_continues_the_same_mlflow_run(tmp_path: Path) -> None:
    config = load_config(setup(tmp_path))
    await cancelled_after_decisions(GepaRun(config), decisions=3)
    client, cancelled = the_mlflow_run(tmp_path)
    assert cancelled.info.status == "KILLED"
    first_steps = [p.step for p in client.get_metric_history(cancelled.info.run_id, "accepted")]
    result = await GepaRun(config).execute_async()
    client, resumed = the_mlflow_run(tmp_path)
    assert resumed.info.run_id == cancelled.info.run_id and resumed.info.status == "FINISHED"
    steps = [p.step for p in client.get_metric_history(resumed.info.run_id, "accepted")]
    assert steps[: len(first_steps)] == first_steps and steps[-1] == result.rollouts_used["train"] > first_steps[-1]
    assert resumed.data.metrics["best_heldout_score"] == result.best_heldout_score
    assert resumed.data.params == cancelled.data.params
    artifacts = {item.path for item in client.list_artifacts(resumed.info.run_id)}
    assert {"result_manifest.json", "best_candidate.txt", "score_chart.svg"} <= artifacts


def test_a_tracker_that_is_down_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    tracked = GepaRun(load_config(setup(tmp_path / "down", uri="http://127.0.0.1:9"))).execute
    with capture_logs() as logs:
        result = tracked()
    plain = GepaRun(load_config(load_script().write_run(tmp_path / "plain"))).execute()
    assert (result.best_candidate, result.rollouts_used, result.status) == (
        plain.best_candidate,
        plain.rollouts_used,
        "completed",
    )
    assert any(line["event"] == "a callback raised; the run goes on" for line in logs)


def test_tracking_without_mlflow_installed_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'synth-opt\[mlflow\]'"):
        GepaRun(load_config(setup(tmp_path))).execute()
    assert not (tmp_path / "runs").exists()  # refused before the run directory was made
