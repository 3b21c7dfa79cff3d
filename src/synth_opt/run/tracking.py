"""``[tracking]``: a run mirrored to MLflow, one MLflow run per synth_opt run.

:class:`MlflowTracker` is a callback (:mod:`synth_opt.run.callbacks`) on a relay of its own, so the tracker works
from its own thread through a bounded queue: a slow or unreachable tracking server never slows the optimization,
and its failures are logged, never raised. What it records:

- params: the config, flattened (``gepa.minibatch_size``, ``proposer.backend``, ...; URLs without credentials,
  values cut to MLflow's 6,000 characters), and the run id and decision digest as tags;
- metrics, stepped by the train rollouts used: ``best_train_score``, ``accepted``, ``rejected``,
  ``proposer_calls``, ``tokens``, ``cost_usd`` (when known) and ``rollouts_reused``; at the end
  ``seed_train_score``, ``seed_heldout_score``, ``best_heldout_score`` and ``rollouts_total``;
- artifacts: the result manifest, the candidate registry, the frontier, the score chart and the best candidate's
  text (``best_candidate.txt``).

A resumed run continues the same MLflow run: its id is kept in the run directory (``mlflow_run.json``), and found
again by the ``synth_opt.run_id`` tag when that file is gone. The ``mlflow`` package is imported only here, when a
config asks for tracking (``pip install 'synth-opt[mlflow]'``).
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from synth_opt.config import GepaConfig
from synth_opt.errors import ConfigError
from synth_opt.events.types import BudgetUpdated, FrontierUpdated, RunFinished
from synth_opt.redact import redact_url
from synth_opt.result import GepaResult
from synth_opt.run.artifacts import write_json
from synth_opt.run.callbacks import GepaCallback

__all__ = ["MLFLOW_RUN_FILE", "TRACKER_DRAIN_SECONDS", "MlflowTracker", "check_tracking"]

MLFLOW_RUN_FILE: Final = "mlflow_run.json"
REOPEN_SECONDS: Final = 30.0
"""How long after a failed connection the tracker tries its server again (the events between are not recorded)."""
TRACKER_DRAIN_SECONDS: Final = 30.0
"""How long the end of a run waits for the tracker to log what is queued (the artifacts included)."""
_PARAM_CHARS: Final = 6000
_STATUS: Final = {"completed": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}
_RUN_TAG: Final = "synth_opt.run_id"


def check_tracking(config: GepaConfig) -> None:
    """Fail before the run when ``[tracking]`` asks for MLflow and it is not installed."""
    if config.tracking.mlflow_tracking_uri is not None and importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            f"{config.source_path}: tracking.mlflow_tracking_uri: MLflow is not installed; install the extra "
            "(pip install 'synth-opt[mlflow]') or remove [tracking]",
            key="tracking.mlflow_tracking_uri",
        )


class MlflowTracker(GepaCallback):
    """Mirrors one run to MLflow (see the module's docstring); every method runs on the tracker's thread."""

    def __init__(self, config: GepaConfig, run_id: str, run_dir: Path) -> None:
        uri = config.tracking.mlflow_tracking_uri
        assert uri is not None
        self.uri = uri
        self.config = config
        self.run_id = run_id
        self.run_dir = run_dir
        self.mlflow_run_id: str | None = None
        self._client: Any = None
        self._best: float | None = None
        self._next_open = 0.0

    # -- the callback ---------------------------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        if self._client is None and time.monotonic() >= self._next_open:
            self._next_open = time.monotonic() + REOPEN_SECONDS  # a tracker that is down is asked again later
            self._open()

    def on_frontier_updated(self, frontier: FrontierUpdated) -> None:
        self._best = frontier.best_mean_score

    def on_budget_updated(self, budget: BudgetUpdated) -> None:
        used = budget.used
        values: dict[str, float | None] = {
            "best_train_score": self._best,
            "accepted": budget.accepted,
            "rejected": budget.rejected,
            "proposer_calls": used.get("proposer_calls"),
            "tokens": used.get("tokens"),
            "cost_usd": used.get("cost_usd"),
            "rollouts_reused": budget.reused if isinstance(budget.reused, int) else None,
        }
        self._log_metrics(values, step=int(used.get("train_rollouts") or 0))

    def on_run_finished(self, finished: RunFinished) -> None:
        self._best = finished.best_train_score if finished.best_train_score is not None else self._best

    def on_result(self, result: GepaResult) -> None:
        if self._client is None:
            self._open()
        step = int(result.rollouts_used.get("train", 0))
        self._log_metrics(
            {
                "best_train_score": result.best_train_score,
                "seed_train_score": result.seed_train_score,
                "best_heldout_score": result.best_heldout_score,
                "seed_heldout_score": result.seed_heldout_score,
                "rollouts_total": result.rollouts_used.get("total"),
                "accepted": result.accepted,
            },
            step=step,
        )
        self._client.set_tag(self.mlflow_run_id, "synth_opt.stop_reason", result.stop_reason)
        for path in self._artifacts(result):
            self._client.log_artifact(self.mlflow_run_id, str(path))
        with tempfile.TemporaryDirectory(prefix="synth-opt-mlflow-") as folder:
            best = Path(folder) / "best_candidate.txt"
            best.write_text(_candidate_text(result.best_candidate), encoding="utf-8")
            self._client.log_artifact(self.mlflow_run_id, str(best))
        self._client.set_terminated(self.mlflow_run_id, _STATUS.get(result.status, "FAILED"))

    # -- MLflow ---------------------------------------------------------------------------------------------

    def _open(self) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        name = self.config.tracking.experiment
        experiment = client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(name, artifact_location=_artifact_location(self.uri))
        )
        run_id = self._known_run(client, experiment_id)
        if run_id is None:
            tags = {_RUN_TAG: self.run_id, "synth_opt.decision_digest": self.config.decision_digest()}
            run_id = client.create_run(experiment_id, run_name=self.run_id, tags=tags).info.run_id
            write_json(
                self.run_dir / MLFLOW_RUN_FILE,
                {"mlflow_run_id": run_id, "experiment_id": experiment_id, "tracking_uri": redact_url(self.uri)},
            )
        else:
            client.update_run(run_id, status="RUNNING")
        self._client, self.mlflow_run_id = client, run_id
        self._log_params()

    def _known_run(self, client: Any, experiment_id: str) -> str | None:
        """The MLflow run of an earlier attempt of this run: from the run directory, else by its tag."""
        kept = self.run_dir / MLFLOW_RUN_FILE
        try:
            data = json.loads(kept.read_text(encoding="utf-8"))
            if data.get("experiment_id") == experiment_id and data.get("tracking_uri") == redact_url(self.uri):
                run_id = str(data["mlflow_run_id"])
                client.get_run(run_id)  # still there
                return run_id
        except Exception:  # no file, a damaged one, or an MLflow error (the kept run is gone): look for the tag
            pass
        found = client.search_runs([experiment_id], filter_string=f"tags.`{_RUN_TAG}` = '{self.run_id}'")
        return str(found[0].info.run_id) if found else None

    def _log_params(self) -> None:
        from mlflow.entities import Param

        logged = self._client.get_run(self.mlflow_run_id).data.params
        wanted = {key: value for key, value in _flat_params(self.config).items() if key not in logged}
        params = [Param(key, value) for key, value in sorted(wanted.items())]
        for start in range(0, len(params), 100):
            self._client.log_batch(self.mlflow_run_id, params=params[start : start + 100])

    def _log_metrics(self, values: dict[str, float | None], *, step: int) -> None:
        if self._client is None:  # not reachable yet: these values are not recorded
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step) for key, value in values.items() if value is not None]
        if metrics:
            self._client.log_batch(self.mlflow_run_id, metrics=metrics)

    def _artifacts(self, result: GepaResult) -> list[Path]:
        named = [result.manifest_path, result.candidate_registry_path, result.frontier_path]
        paths = [Path(path) for path in named if path]
        paths.append(self.run_dir / "score_chart.svg")
        return [path for path in paths if path.is_file()]


def _flat_params(config: GepaConfig) -> dict[str, str]:
    data = config.model_dump(mode="json", exclude={"source_path", "overrides_applied", "tracking"})
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
            return
        if prefix.endswith(("url", "uri", "urls")) and value is not None:  # never a credential in a URL
            value = redact_url(value) if isinstance(value, str) else [redact_url(str(item)) for item in value]
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        flat[prefix[:250]] = text if len(text) <= _PARAM_CHARS else text[: _PARAM_CHARS - 20] + " [... cut]"

    walk("", data)
    flat["digest"] = config.decision_digest()
    return flat


def _candidate_text(candidate: dict[str, str]) -> str:
    if len(candidate) == 1:
        return next(iter(candidate.values()))
    return "\n\n".join(f"## {name}\n\n{text}" for name, text in candidate.items())


def _artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite store's file (``<its folder>/mlruns``), since
    MLflow's own default there is ``./mlruns`` in whatever folder the run started from; the server's choice for
    any other store (None)."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    return (database.parent / "mlruns").as_uri() if database.is_absolute() else None
