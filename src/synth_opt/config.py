"""The frozen V1 TOML config (SPEC section 3): models, validation and ``load_config``.

``load_config`` is the only code that reads a config file or the ``SYNTH_OPTIMIZERS_*`` environment overrides.
It returns a frozen ``GepaConfig``; every problem becomes one ``ConfigError`` whose message names the file and
the dotted key and says what to do.
"""

from __future__ import annotations

import codecs
import collections
import difflib
import hashlib
import json
import math
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from synth_opt.container.kept import kept_chars
from synth_opt.errors import ConfigError
from synth_opt.gepa.acceptance import ACCEPTANCE_RULES
from synth_opt.gepa.selection import SELECTORS
from synth_opt.lanes.presets import LanePlan, lane_plan
from synth_opt.proposers.backends import PROPOSER_BACKENDS
from synth_opt.proposers.reflection import CHARS_PER_TOKEN, template_problems
from synth_opt.redact import redact_url

__all__ = [
    "OVERRIDE_VARIABLES",
    "CacheSection",
    "CandidateSection",
    "ContainerSection",
    "CountSelection",
    "DatasetSection",
    "GepaConfig",
    "GepaSection",
    "IdSelection",
    "PipelineSection",
    "PolicySection",
    "ProposerSection",
    "RunSection",
    "TrackingSection",
    "WorkersSection",
    "check_task_reference",
    "load_config",
    "task_command",
]

_N = TypeVar("_N", int, float)


def _positive(value: _N) -> _N:
    if value <= 0:
        raise ValueError(f"must be positive (got {value}); set a value greater than 0 or remove the key")
    return value


def _non_negative(value: _N) -> _N:
    if value < 0:
        raise ValueError(f"must not be negative (got {value}); set 0 or a positive value")
    return value


def _fraction(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be between 0 and 1 (got {value}); set a fraction such as 0.25")
    return value


def _at_most(limit: int, unit: str) -> Any:
    def check(value: _N) -> _N:
        if value > limit:
            raise ValueError(f"must be at most {limit} {unit} (got {value}); set a value up to {limit}")
        return value

    return AfterValidator(check)


# a run id names a directory in ``run.output_dir``, beside what runs share there: the ``latest`` link, the run
# registry, the default cache (and its SQLite side files) and ``accept``'s caches
_SHARED_NAMES = frozenset({"latest", "run_registry.jsonl"})
_SHARED_SUFFIXES = (".sqlite", ".sqlite-wal", ".sqlite-shm", ".sqlite-journal", ".jsonl", ".tmp")
MAX_RUN_ID_BYTES = 200  # a directory name (255 bytes on most file systems), with room for a suffix


def _run_id_problem(value: str) -> str | None:
    """Why ``value`` cannot name a run directory, or None."""
    advice = "use letters, digits, '-', '_' or '.'"
    if not value or value in {".", ".."} or "/" in value or "\\" in value:
        return f"{value!r} is not a usable directory name; {advice}"
    control = next((char for char in value if ord(char) < 32 or ord(char) == 127), None)
    if control is not None:
        return f"holds a control character ({control!r}); {advice}"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"is not valid Unicode (a lone surrogate); {advice}"
    if size > MAX_RUN_ID_BYTES:
        return f"is {size} bytes long; use at most {MAX_RUN_ID_BYTES} (it names a directory)"
    if value.lower() in _SHARED_NAMES or value.lower().endswith(_SHARED_SUFFIXES):
        return (
            f"{value!r} is the name of a file runs share in run.output_dir (the latest link, the run registry or a "
            "cache); choose another run id"
        )
    return None


def _safe_run_id(value: str) -> str:
    problem = _run_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


PosInt = Annotated[int, AfterValidator(_positive)]
PosFloat = Annotated[float, AfterValidator(_positive)]
NonNegInt = Annotated[int, AfterValidator(_non_negative)]
NonNegFloat = Annotated[float, AfterValidator(_non_negative)]
LoosePath = Annotated[Path, Strict(False)]
# an upper bound keeps a typo (or 2**63 - 1) from hanging a run in one sleep or one wait
MAX_TIMEOUT_SECONDS = 86_400
MAX_POLL_INTERVAL_MS = 60_000
Timeout = Annotated[float, AfterValidator(_positive), _at_most(MAX_TIMEOUT_SECONDS, "seconds")]
PollInterval = Annotated[int, AfterValidator(_positive), _at_most(MAX_POLL_INTERVAL_MS, "ms")]
# each worker is a task held for the whole run: with a typo such as 1000000 a 68-rollout run took 7 GB and 100 s,
# with 4096 workers 30 MB more and 0.1 s (and no container serves more rollouts at once)
MAX_WORKERS = 4096
Workers = Annotated[int, AfterValidator(_positive), _at_most(MAX_WORKERS, "workers")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class CountSelection(_Section):
    """``{count = N}``: the first N ids of the split as the container's ``/taskset`` lists them."""

    count: PosInt


IdSelection = list[str] | CountSelection


def _coerce_ids(value: object) -> object:
    """Accept a list of ids (ints become strings) or ``{count = N}``; anything else is one clear error."""
    if isinstance(value, CountSelection):
        return value
    if isinstance(value, dict):
        count = value.get("count")
        if set(value) != {"count"} or isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise ValueError("a count selection must be exactly {count = N} with N a positive integer")
        return CountSelection(count=count)
    if isinstance(value, list):
        bad = [item for item in value if isinstance(item, bool) or not isinstance(item, str | int)]
        if bad:
            raise ValueError(f"ids must be strings or integers (got {bad[0]!r})")
        ids = [str(item) for item in value]
        twice = [i for i, count in collections.Counter(ids).items() if count > 1]
        if twice:
            raise ValueError(f"id {twice[0]!r} is listed twice; list each id once")
        return ids
    raise ValueError("must be a list of ids or a table {count = N}")


Ids = Annotated[IdSelection, BeforeValidator(_coerce_ids)]


class RunSection(_Section):
    run_id: Annotated[str, AfterValidator(_safe_run_id)] | None = None
    output_dir: LoosePath = Path("runs")
    seed: int = 0


class ContainerSection(_Section):
    url: str | None = None
    urls: list[str] | None = None
    """Standing replicas of one container: each rollout goes to the least busy healthy one
    (:mod:`synth_opt.container.replicas`); instead of ``url`` and ``command``."""
    command: list[str] | None = None
    task: str | None = None
    """``module:attribute`` of a :class:`synth_opt.task.Task`: the run launches ``synth-opt task serve`` on it (from
    ``cwd``, else the config's folder) as its container; instead of ``url``, ``urls`` and ``command``."""
    cwd: LoosePath | None = None
    env: dict[str, str] = Field(default_factory=dict)
    startup_timeout_seconds: Timeout = 30.0
    headers: dict[str, str] = Field(default_factory=dict)
    auth_bearer_env: str | None = None
    request_timeout_seconds: Timeout = 120.0
    outage_timeout_seconds: Timeout = 120.0
    max_reply_bytes: PosInt = 8 * 1024 * 1024

    def launch_command(self) -> list[str] | None:
        """The argv that starts the run's container: ``command``, or the one that serves ``task``."""
        if self.task is not None and self.command is None:
            return task_command(self.task)
        return self.command


class DatasetSection(_Section):
    train_split: str = "train"
    heldout_split: str = "test"
    train_ids: Ids
    heldout_ids: Ids = Field(default_factory=list)
    pareto_ids: Ids | None = None
    minibatch_ids: Ids | None = None


class CandidateSection(_Section):
    target_modules: list[str] = Field(default_factory=list)


class PolicySection(_Section):
    type: str | None = None
    provider: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    max_tokens: PosInt | None = None
    temperature: NonNegFloat | None = None
    config: dict[str, Any] = Field(default_factory=dict)


ProposerBackendName = Annotated[str, AfterValidator(PROPOSER_BACKENDS.known_name)]
"""A proposer backend registered in :data:`synth_opt.proposers.backends.PROPOSER_BACKENDS`."""


class ProposerSection(_Section):
    backend: ProposerBackendName
    command: list[str] = Field(default_factory=lambda: ["codex", "app-server"])
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    codex_home: LoosePath | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: Timeout = 300.0
    message_stall_timeout_seconds: Timeout = 120.0
    proposals_per_call: PosInt = 1
    cost_per_million_input_tokens: NonNegFloat | None = None  # unset: cost unknown; 0: free
    cost_per_million_output_tokens: NonNegFloat | None = None
    max_retries: NonNegInt = 3
    max_reply_bytes: PosInt = 8 * 1024 * 1024  # (openai_compatible) a larger reply is a failed proposal
    response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    outage_timeout_seconds: Timeout = 120.0
    max_consecutive_failures: PosInt = 3
    failure_tolerance: Annotated[float, AfterValidator(_fraction)] = 0.5
    max_feedback_chars: PosInt = 4000
    max_prompt_tokens: PosInt = 16000
    prompt_template: LoosePath | None = None
    """A file holding the reflection prompt as a template (``synth_opt.proposers.reflection.PROMPT_PLACEHOLDERS``;
    start from ``DEFAULT_PROMPT_TEMPLATE``); its content enters the decision digest."""
    _template_text: str | None = PrivateAttr(default=None)

    def template_text(self) -> str | None:
        """``prompt_template``'s content (read once, so the run uses what the digest saw), or None for the built-in
        prompt."""
        if self.prompt_template is None:
            return None
        if self._template_text is None:
            self._template_text = self.prompt_template.read_text(encoding="utf-8")
        return self._template_text


# async_pipelined's defaults: four proposer calls at once and four candidates in flight (benchmarks/README.md,
# pipeline_defaults.py: about 0.35x the wall time of gepa with 16 threads; more in flight makes proposals staler and
# cost more search quality), 16 rollouts at once (each pareto scoring waits for the one before it under rebase, and
# with 8 workers its rows went out in four waves; the worker count never changes a decision)
class WorkersSection(_Section):
    propose: Workers = 4
    rollout: Workers = 16
    evaluate: Workers = 1


class PipelineSection(_Section):
    mode: Literal["sync_serial", "async_pipelined"] = "sync_serial"
    staleness_policy: Literal["full", "guarded", "rebase"] = "rebase"
    delta_max: PosInt = 2
    max_in_flight_candidates: PosInt = 4
    concurrent_edits: bool = True
    """With several candidates in flight: a proposal whose every new text repeats an edit that a proposal still in
    flight when it was planned already makes (the same words added, an insertion the other contains) is asked
    again, those edits in its request, before any of it is rolled out; a text that still repeats one is not
    rolled out. Costs a proposer call on such a proposal, saves its minibatch rollouts."""
    workers: WorkersSection = Field(default_factory=WorkersSection)


SelectorName = Annotated[str, AfterValidator(SELECTORS.known_name)]
"""A parent selector registered in :data:`synth_opt.gepa.selection.SELECTORS` (a new one registers itself)."""
AcceptanceName = Annotated[str, AfterValidator(ACCEPTANCE_RULES.known_name)]
"""An acceptance rule registered in :data:`synth_opt.gepa.acceptance.ACCEPTANCE_RULES`."""


class GepaSection(_Section):
    max_total_rollouts: PosInt = 256
    max_train_rollouts: PosInt | None = None
    max_heldout_rollouts: PosInt | None = None
    max_cost_usd: NonNegFloat = 0.0
    max_total_tokens: PosInt | None = None
    max_time_seconds: PosFloat | None = None
    proposer_estimated_cost_usd: PosFloat | None = None
    proposer_estimated_tokens: PosInt | None = None
    proposer_estimated_seconds: PosFloat | None = None
    rollout_estimated_cost_usd: PosFloat | None = None
    rollout_estimated_tokens: PosInt | None = None
    rollout_estimated_seconds: PosFloat | None = None
    minibatch_size: PosInt = 3
    candidate_selector: SelectorName = "pareto"
    frontier_type: Literal["instance", "objective", "hybrid"] = "instance"
    acceptance: AcceptanceName = "strict_improvement"
    use_merge: bool = False
    max_merge_invocations: NonNegInt = 5
    rollout_submission_mode: Literal["sync", "async"] = "sync"
    rollout_poll_interval_ms: PollInterval = 250
    rollout_async_timeout_seconds: Timeout = 600.0
    rollout_failure_rate_tolerance: Annotated[float, AfterValidator(_fraction)] = 0.25
    no_improvement_iterations: PosInt | None = None
    score_threshold: float | None = None
    skip_perfect_score: bool = False
    perfect_score: float = 1.0
    reuse_evaluations: bool = True
    proposal_memory: bool = False
    """The reflection request carries the edits already rejected for the same parent and module (at most
    ``proposal_memory_size``, committed before the proposal was planned), and a proposal whose text is already in
    the pool or was already rejected for that parent is not rolled out (a ``duplicate`` decision)."""
    proposal_memory_size: PosInt = 5
    pipeline: PipelineSection = Field(default_factory=PipelineSection)


class CacheSection(_Section):
    mode: Literal["off", "readwrite", "readonly"] = "readwrite"
    path: LoosePath | None = None
    namespace: str | None = None


class TrackingSection(_Section):
    """``[tracking]``: the run mirrored to an experiment tracker (never a decision: not in the digest)."""

    mlflow_tracking_uri: str | None = None
    """An MLflow tracking URI (``http://...``, ``sqlite:///mlflow.db``: a relative path is beside the config):
    one MLflow run per synth_opt run. Needs the ``mlflow`` extra (``pip install 'synth-opt[mlflow]'``)."""
    experiment: str = "synth_opt"
    """The MLflow experiment (created when missing)."""


# [gepa] keys that change timing or transport, never decisions.
_NON_DECISION_GEPA_KEYS = {
    "pipeline",
    "rollout_submission_mode",
    "rollout_poll_interval_ms",
    "rollout_async_timeout_seconds",
    "max_time_seconds",
}
_PROPOSER_DECISION_KEYS = {
    "backend",
    "model",
    "proposals_per_call",
    "config",
    "cost_per_million_input_tokens",
    "cost_per_million_output_tokens",
}
# Decision keys added after runs existed: in the digest only when they differ from their defaults, so the runs
# started before them keep their run id and cache namespace (and still resume and replay).
_PROPOSER_LATER_DECISION_KEYS = ("response_format", "max_feedback_chars", "max_prompt_tokens")


class GepaConfig(_Section):
    """A validated V1 config; paths are absolute, environment overrides already applied."""

    run: RunSection = Field(default_factory=RunSection)
    container: ContainerSection = Field(default_factory=ContainerSection)
    dataset: DatasetSection
    candidate: CandidateSection = Field(default_factory=CandidateSection)
    seed_candidate: dict[str, str] = Field(default_factory=dict)
    policy: PolicySection = Field(default_factory=PolicySection)
    proposer: ProposerSection
    gepa: GepaSection = Field(default_factory=GepaSection)
    cache: CacheSection = Field(default_factory=CacheSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    source_path: Path
    overrides_applied: dict[str, str] = Field(default_factory=dict)

    @property
    def output_dir(self) -> Path:
        return self.run.output_dir

    def lane_plan(self) -> LanePlan:
        """The workers per lane and the candidates in flight this config runs with (the mode's preset is the
        lanes' own: :func:`synth_opt.lanes.presets.lane_plan`)."""
        pipeline = self.gepa.pipeline
        return lane_plan(
            pipeline.mode, max_in_flight=pipeline.max_in_flight_candidates, **pipeline.workers.model_dump()
        )

    def effective_max_in_flight(self) -> int:
        return self.lane_plan().max_in_flight

    def effective_workers(self) -> dict[str, int]:
        plan = self.lane_plan()
        return {"propose": plan.propose_workers, "rollout": plan.rollout_workers, "evaluate": plan.evaluate_workers}

    def decision_config(self) -> dict[str, Any]:
        """Decision-relevant config: no pipeline mode, workers, URLs, paths, run id, overrides or cache."""
        pipeline: dict[str, Any] = {"max_in_flight_candidates": self.effective_max_in_flight()}
        if pipeline["max_in_flight_candidates"] > 1:  # staleness needs several candidates in flight
            pipeline["staleness_policy"] = self.gepa.pipeline.staleness_policy
            pipeline["delta_max"] = self.gepa.pipeline.delta_max
            if not self.gepa.pipeline.concurrent_edits:  # the default: in the digest only when off (older digests stay)
                pipeline["concurrent_edits"] = False
        gepa = self.gepa.model_dump(mode="json", exclude=_NON_DECISION_GEPA_KEYS)
        if not self.gepa.skip_perfect_score:  # off: neither key decides anything (and older digests stay)
            del gepa["skip_perfect_score"], gepa["perfect_score"]
        if self.gepa.reuse_evaluations:  # the default: in the digest only when off (older digests stay)
            del gepa["reuse_evaluations"]
        if not self.gepa.proposal_memory:  # off: neither key decides anything (and older digests stay)
            del gepa["proposal_memory"], gepa["proposal_memory_size"]
        return {
            "seed": self.run.seed,
            "dataset": self.dataset.model_dump(mode="json"),
            "seed_candidate": dict(self.seed_candidate),
            "target_modules": list(self.candidate.target_modules),
            "policy": self.policy.model_dump(mode="json", exclude={"base_url", "api_key_env"}),
            "proposer": self._proposer_decisions(),
            "gepa": gepa,
            "pipeline": pipeline,
        }

    def _proposer_decisions(self) -> dict[str, Any]:
        decisions = self.proposer.model_dump(mode="json", include=_PROPOSER_DECISION_KEYS)
        for key in ("cost_per_million_input_tokens", "cost_per_million_output_tokens"):
            if decisions[key] is None:  # unset prices digest as the 0.0 they defaulted to, so older runs resume
                decisions[key] = 0.0
        fields = ProposerSection.model_fields
        for key in _PROPOSER_LATER_DECISION_KEYS:
            if getattr(self.proposer, key) != fields[key].default:
                decisions[key] = getattr(self.proposer, key)
        template = self.proposer.template_text()
        if template is not None:  # its content, not its path (the built-in prompt leaves older digests as they were)
            decisions["prompt_template"] = template
        return decisions

    def kept_reply_chars(self) -> int:
        """What the run keeps of a rollout's long feedback or trace (:func:`synth_opt.container.kept.kept_chars`):
        at least what its proposer may be shown of one."""
        return kept_chars(self.proposer.max_feedback_chars, self.proposer.max_prompt_tokens * CHARS_PER_TOKEN)

    def decision_digest(self) -> str:
        canonical = json.dumps(self.decision_config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def effective_run_id(self) -> str:
        return self.run.run_id or f"{self.source_path.stem}-{self.decision_digest()[:8]}"

    def run_dir(self) -> Path:
        return self.output_dir / self.effective_run_id()

    def cache_path(self) -> Path:
        return self.cache.path or self.output_dir / "cache.sqlite"

    def cache_namespace(self) -> str:
        return self.cache.namespace or f"{self.source_path.stem}-{self.decision_digest()}"

    def heldout_cap(self, n_heldout_ids: int) -> int:
        cap = self.gepa.max_heldout_rollouts
        return cap if cap is not None else 2 * n_heldout_ids

    def train_cap_key(self) -> str:
        """The config key that names the train cap (the stop reason when it stops the search)."""
        return "max_train_rollouts" if self.gepa.max_train_rollouts is not None else "max_total_rollouts"

    def train_cap(self, n_heldout_ids: int) -> int:
        if self.gepa.max_train_rollouts is not None:
            return self.gepa.max_train_rollouts
        cap = self.gepa.max_total_rollouts - self.heldout_cap(n_heldout_ids)
        if cap <= 0:
            raise ConfigError(
                f"{self.source_path}: gepa.max_total_rollouts: {_no_train_budget(self, n_heldout_ids)}",
                file=str(self.source_path),
                keys=["gepa.max_total_rollouts"],
            )
        return cap

    def total_cap(self) -> int | None:
        """``max_total_rollouts`` when the TOML set it explicitly (it then also caps train plus heldout)."""
        return self.gepa.max_total_rollouts if "max_total_rollouts" in self.gepa.model_fields_set else None


def _no_train_budget(cfg: GepaConfig, n_heldout: int) -> str:
    return (
        f"leaves no train rollouts ({cfg.gepa.max_total_rollouts} total minus a heldout cap of "
        f"{cfg.heldout_cap(n_heldout)}); raise it or set max_train_rollouts / max_heldout_rollouts"
    )


class _EnvOverrides(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNTH_OPTIMIZERS_", env_ignore_empty=True, extra="ignore")

    run_id: str | None = None
    output_dir: str | None = None
    cache_mode: str | None = None
    proposer_backend: str | None = None
    proposer_base_url: str | None = None
    proposer_model: str | None = None
    proposer_api_key_env: str | None = None
    policy_base_url: str | None = None
    policy_model: str | None = None
    policy_api_key_env: str | None = None


# settings field -> (environment variable, TOML location it overrides)
_OVERRIDES: dict[str, tuple[str, tuple[str, str]]] = {
    "run_id": ("SYNTH_OPTIMIZERS_RUN_ID", ("run", "run_id")),
    # a worker host keeps its run directories on its own disk, whatever the shared config says
    "output_dir": ("SYNTH_OPTIMIZERS_OUTPUT_DIR", ("run", "output_dir")),
    "cache_mode": ("SYNTH_OPTIMIZERS_CACHE_MODE", ("cache", "mode")),
    "proposer_backend": ("SYNTH_OPTIMIZERS_PROPOSER_BACKEND", ("proposer", "backend")),
    "proposer_base_url": ("SYNTH_OPTIMIZERS_PROPOSER_BASE_URL", ("proposer", "base_url")),
    "proposer_model": ("SYNTH_OPTIMIZERS_PROPOSER_MODEL", ("proposer", "model")),
    "proposer_api_key_env": ("SYNTH_OPTIMIZERS_PROPOSER_API_KEY_ENV", ("proposer", "api_key_env")),
    "policy_base_url": ("SYNTH_OPTIMIZERS_POLICY_BASE_URL", ("policy", "base_url")),
    "policy_model": ("SYNTH_OPTIMIZERS_POLICY_MODEL", ("policy", "model")),
    "policy_api_key_env": ("SYNTH_OPTIMIZERS_POLICY_API_KEY_ENV", ("policy", "api_key_env")),
}
OVERRIDE_VARIABLES: Final = frozenset(variable for variable, _ in _OVERRIDES.values())
"""The environment variables that override a config's keys (``SYNTH_OPTIMIZERS_*``)."""
_SECTIONS = [name for name in GepaConfig.model_fields if name not in {"source_path", "overrides_applied"}]
_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "passwd", "credential", "credentials"}
_SECRET_ADVICE = (
    "looks like an inline secret; never write secrets in the config: put it in an environment variable and "
    "name that variable instead (api_key_env in [policy]/[proposer], auth_bearer_env in [container])"
)


def _looks_secret(text: str) -> bool:
    value = text.strip()
    if value.startswith("sk-") or value.lower().startswith("bearer "):
        return True
    if len(value) < 32 or not re.fullmatch(r"[A-Za-z0-9+/=_\-]+", value):
        return False
    if re.fullmatch(r"[0-9a-fA-F]+", value):
        return True
    runs = re.findall(r"[A-Za-z0-9+=]{20,}", value)  # model names split into short words; tokens do not
    return any(re.search(r"\d", run) and re.search(r"[A-Za-z]", run) for run in runs)


def _secret_name(name: str) -> bool:
    lowered = name.lower()
    if lowered.endswith("_env") or lowered.startswith("env_"):  # names an environment variable (codex's env_key)
        return False
    return bool(_SECRET_WORDS & set(re.split(r"[_\-.]", lowered)))


def _names_variable(name: str) -> bool:
    """Whether the key ``name`` holds the name of an environment variable (``api_key_env``, codex's ``env_key``)."""
    lowered = name.lower()
    return lowered.endswith("_env") or lowered == "env_key"


def _find_secrets(value: object, key: str) -> list[str]:
    """Dotted keys under ``key`` whose name or string value looks like a secret (keys naming an environment
    variable are :func:`_variable_name_problems`'s)."""
    if isinstance(value, dict):
        found: list[str] = []
        for name, item in value.items():
            if isinstance(item, str) and _names_variable(name):
                continue
            if isinstance(item, str) and item and _secret_name(name):
                found.append(f"{key}.{name}")
            else:
                found.extend(_find_secrets(item, f"{key}.{name}"))
        return found
    if isinstance(value, list):
        return [hit for i, item in enumerate(value) for hit in _find_secrets(item, f"{key}[{i}]")]
    return [key] if isinstance(value, str) and _looks_secret(value) else []


_NOT_FINITE = "must be a finite number (got {value}); NaN and infinity are not allowed, set a number"


def _not_finite(value: object, key: str) -> list[tuple[str, str]]:
    """Every ``nan``, ``inf`` or ``-inf`` anywhere under ``key``, the passed-through tables included (a NaN limit
    would silently disable the limit, and neither goes into JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(key, _NOT_FINITE.format(value=value))]
    if isinstance(value, dict):
        return [hit for name, item in value.items() for hit in _not_finite(item, f"{key}.{name}" if key else name)]
    if isinstance(value, list):
        return [hit for i, item in enumerate(value) for hit in _not_finite(item, f"{key}[{i}]")]
    return []


MAX_INT = 2**63 - 1  # what TOML, SQLite and JSON consumers hold (tomllib reads larger integers)
_NUL = "holds a NUL (a control character), which no path, argument, header or environment variable can hold; remove it"


def _part(name: str) -> str:
    """A table key as shown in a dotted key: quoted when it holds a control character."""
    return name if name.isprintable() else repr(name)


def _unstorable(value: object, key: str, *, nul: bool = True) -> list[tuple[str, str]]:
    """Every integer beyond 64 bits, and every NUL character in a string or a table key, anywhere under ``key``
    (``seed_candidate``'s texts are task content: NUL is allowed there)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -MAX_INT - 1 <= value <= MAX_INT:
        return [(key, f"is beyond a 64-bit integer (at most {MAX_INT}); set a smaller value")]
    if isinstance(value, str) and nul and "\x00" in value:
        return [(key, _NUL)]
    if isinstance(value, dict):
        found: list[tuple[str, str]] = []
        for name, item in value.items():
            inner = f"{key}.{_part(name)}" if key else _part(name)
            if "\x00" in name:
                found.append((inner, "the key " + _NUL))
            found += _unstorable(item, inner, nul=nul and inner != "seed_candidate")
        return found
    if isinstance(value, list):
        return [hit for i, item in enumerate(value) for hit in _unstorable(item, f"{key}[{i}]", nul=nul)]
    return []


_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _variable_name_problems(value: object, key: str) -> list[tuple[str, str]]:
    """Every key under ``key`` that names an environment variable (``*_env``, ``env_key``) whose value is not a
    variable's name; the value is never shown (it may be the secret itself)."""
    if isinstance(value, list):
        return [hit for i, item in enumerate(value) for hit in _variable_name_problems(item, f"{key}[{i}]")]
    if not isinstance(value, dict):
        return []
    found: list[tuple[str, str]] = []
    for name, item in value.items():
        inner = f"{key}.{_part(name)}"
        if not (isinstance(item, str) and _names_variable(name)):
            found += _variable_name_problems(item, inner)
        elif _looks_secret(item):
            found.append((inner, f"{_SECRET_ADVICE} (the value is not shown)"))
        elif not _VARIABLE_NAME.fullmatch(item):
            found.append(
                (
                    inner,
                    "must name an environment variable (letters, digits and '_', not starting with a digit; the "
                    "value is not shown); name the variable that holds the secret, or remove the key",
                )
            )
    return found


_ENV_SECRET_ADVICE = (
    "looks like an inline secret; never write secrets in the config: export the variable where the run starts "
    "(a launched container inherits the environment) and remove it from container.env"
)


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def _table(section: dict[str, Any], name: str) -> dict[str, Any]:
    value = section.get(name)
    return value if isinstance(value, dict) else {}


def _raw_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Checks on the raw TOML (with the environment overrides): unknown sections, inline secrets and secrets where
    a variable name belongs (never echoing the secret), NaN and infinity, integers beyond 64 bits, NUL characters."""
    problems: list[tuple[str, str]] = []
    for name in data:
        if name not in _SECTIONS:
            close = difflib.get_close_matches(name, _SECTIONS, n=1)
            hint = f"did you mean {close[0]}?" if close else f"sections: {', '.join(_SECTIONS)}"
            problems.append((_part(name), f"unknown section; remove it or fix its spelling ({hint})"))
    problems += _not_finite(data, "")
    problems += _unstorable(data, "")
    for section in ("policy", "proposer"):
        problems += [(key, _SECRET_ADVICE) for key in _find_secrets(data.get(section), section)]
    for section in ("container", "policy", "proposer"):
        problems += _variable_name_problems(data.get(section), section)
    container = _section(data, "container")
    for name, value in _table(container, "headers").items():
        auth = name.lower() in {"authorization", "proxy-authorization"} or _secret_name(name)
        if isinstance(value, str) and (auth or _looks_secret(value)):
            problems.append((f"container.headers.{_part(name)}", _SECRET_ADVICE))
    for name, value in _table(container, "env").items():
        if not isinstance(value, str) or not value or _names_variable(name):  # a *_ENV entry: checked above
            continue
        if _secret_name(name) or _looks_secret(value):
            problems.append((f"container.env.{_part(name)}", _ENV_SECRET_ADVICE))
    return problems


# ``run.output_dir`` may be none of these (nor a home directory): a run writes its registry, cache and ``latest``
# link into it and ``--fresh`` empties ``<output_dir>/<run_id>``.
_REFUSED_DIRS = frozenset(
    Path(p)
    for p in (
        "/",
        "/home",
        "/Users",
        "/root",
        "/var",
        "/opt",
        "/srv",
        "/mnt",
        "/media",
        "/run",
        "/private",
        "/Library",
        "/Applications",
        "/Volumes",
    )
)
# ... nor anything inside these
_SYSTEM_TREES = tuple(
    Path(p)
    for p in (
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/proc",
        "/sbin",
        "/sys",
        "/usr",
        "/System",
    )
)
_HOME_PARENTS = (Path("/home"), Path("/Users"))


def _unsafe_directory(path: Path) -> str | None:
    """Why ``path`` (absolute) cannot hold runs: the file-system root, a home directory itself, or a system
    directory; None when it can."""
    real = Path(os.path.realpath(path))
    homes = {Path("/root")}
    try:
        homes.add(Path(os.path.realpath(Path.home())))
    except (RuntimeError, KeyError):  # no HOME and no password entry: only the usual places are known
        pass
    for shown in dict.fromkeys((path, real)):
        if shown == Path("/"):
            return "is the file-system root"
        if shown in homes or shown.parent in _HOME_PARENTS:
            return f"is a home directory ({shown})"
        if shown in _REFUSED_DIRS:
            return f"is a system directory ({shown})"
        tree = next((t for t in _SYSTEM_TREES if shown.is_relative_to(t)), None)
        if tree is not None:
            return f"lies in the system directory {tree}"
    return None


def _output_dir_problems(cfg: GepaConfig) -> list[tuple[str, str]]:
    advice = "; point output_dir at a folder of its own, such as runs beside the config"
    why = _unsafe_directory(cfg.output_dir)
    if why is not None:
        return [("run.output_dir", f"{cfg.output_dir} {why}{advice}")]
    why = _unsafe_directory(cfg.run_dir())
    if why is not None:
        return [("run.output_dir", f"the run directory {cfg.run_dir()} {why}{advice} (or change run.run_id)")]
    return []


_TASK_REFERENCE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def check_task_reference(reference: str) -> str | None:
    """Why ``reference`` is not a ``module:attribute`` reference to a task, or None when it is one."""
    if not _TASK_REFERENCE.match(reference):
        return f"{reference!r} is not module:attribute (such as 'mytask:score'); name the module and the task in it"
    return None


def task_command(reference: str) -> list[str]:
    """The argv that serves the task ``reference`` as a launched container (``{port}`` filled in at launch)."""
    return ["{python}", "-m", "synth_opt", "task", "serve", reference, "--port", "{port}"]


def _task_problems(container: ContainerSection) -> list[tuple[str, str]]:
    if container.task is None:
        return []
    others = [
        name
        for name, value in (("url", container.url), ("urls", container.urls), ("command", container.command))
        if value is not None
    ]
    if others:
        return [("container.task", f"launches the task's container; drop container.{others[0]} (one or the other)")]
    problem = check_task_reference(container.task)
    return [] if problem is None else [("container.task", problem)]


def _not_a_file(path: Path) -> str:
    """What ``path`` is when it is no regular file (following links): "a folder", "a FIFO", ...; "" for a file.
    Raises ``FileNotFoundError`` when nothing is there."""
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (a named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def _template_problems(proposer: ProposerSection) -> list[tuple[str, str]]:
    path = proposer.prompt_template
    if path is None:
        return []
    try:
        kind = _not_a_file(path)
        if kind:
            return [("proposer.prompt_template", f"{path} is {kind}, not a file; give the path of a text file")]
        text = proposer.template_text()
    except FileNotFoundError:
        return [("proposer.prompt_template", f"{path} not found; check the path (relative to the config's folder)")]
    except (OSError, UnicodeDecodeError) as exc:
        return [("proposer.prompt_template", f"cannot read {path} ({exc}); check the file")]
    assert text is not None
    return [("proposer.prompt_template", f"{path}: {problem}") for problem in template_problems(text)]


def _shown_url(url: str) -> str:
    """``url`` redacted (:func:`synth_opt.redact.redact_url`), also without a scheme, quoted."""
    shown = redact_url(url) if "://" in url else redact_url(f"x://{url}").removeprefix("x://")
    return repr(shown)


def _url_problem(url: str) -> str | None:
    """Why ``url`` is no HTTP URL a client can send to (its secrets redacted), or None."""
    shown = _shown_url(url)
    if not url.startswith(("http://", "https://")):
        return f"must start with http:// or https:// (got {shown})"
    if any(ord(char) <= 32 or ord(char) == 127 for char in url):
        return f"holds a space or a control character (got {shown}); percent-encode it or fix the URL"
    try:
        parts = urlsplit(url)
        port = parts.port
        httpx.URL(url)
    except ValueError as exc:  # httpx.InvalidURL is a ValueError; so are urllib's bad ports and brackets
        why = "its port is not a number from 1 to 65535" if "port" in str(exc).lower() else "it does not parse"
        return f"is not a valid URL: {why} (got {shown}); fix the URL"
    if not parts.hostname:
        return f"has no host (got {shown}); write it as http://host:port/..."
    if port == 0:
        return f"is not a valid URL: its port is not a number from 1 to 65535 (got {shown}); fix the URL"
    return None


def _url_problems(cfg: GepaConfig) -> list[tuple[str, str]]:
    container = cfg.container
    urls = [("container.url", container.url), ("proposer.base_url", cfg.proposer.base_url)]
    urls += [("policy.base_url", cfg.policy.base_url)]
    urls += [(f"container.urls[{i}]", url) for i, url in enumerate(container.urls or [])]
    problems = [(key, problem) for key, url in urls if url is not None and (problem := _url_problem(url))]
    if container.url is not None and container.command is not None and container.task is None:
        message = "a launched container (container.command) gets its own URL; drop one or the other"
        problems.append(("container.url", message))
    return problems


# an HTTP header name is an RFC 7230 token
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _header_and_env_problems(container: ContainerSection) -> list[tuple[str, str]]:
    """Headers no request can send and variables no process can be given (values are never shown)."""
    problems: list[tuple[str, str]] = []
    for name, value in container.headers.items():
        key = f"container.headers.{_part(name)}"
        if not _HEADER_NAME.fullmatch(name):
            problems.append((key, "is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~); fix the name"))
        elif any((ord(char) < 32 and char != "\t") or ord(char) == 127 for char in value):
            problems.append((key, "the value holds a line break or another control character; remove it"))
        elif not value.isascii():
            problems.append((key, "the value is not ASCII, which an HTTP header cannot carry; percent-encode it"))
    for name in container.env:
        if not name or "=" in name:
            problems.append((f"container.env.{_part(name)}", "is not an environment variable name (empty or '=')"))
    return problems


def _path_problems(cfg: GepaConfig) -> list[tuple[str, str]]:
    """A cache path that is a folder; an output folder that is (or lies in) a file."""
    problems: list[tuple[str, str]] = []
    if cfg.cache.path is not None and os.path.isdir(cfg.cache.path):
        problems.append(("cache.path", f"{cfg.cache.path} is a directory; name a file, such as cache.sqlite in it"))
    existing = next((p for p in (cfg.output_dir, *cfg.output_dir.parents) if os.path.lexists(p)), None)
    if existing is not None and not os.path.isdir(existing):
        message = f"{existing} is a file, not a folder; point output_dir at a folder, such as runs beside the config"
        problems.append(("run.output_dir", message))
    return problems


def _replica_problems(container: ContainerSection) -> list[tuple[str, str]]:
    if container.urls is None:
        return []
    if container.url is not None or container.command:
        other = "container.url" if container.url is not None else "container.command"
        return [("container.urls", f"lists standing replicas; drop {other} (one or the other, not both)")]
    if not container.urls:
        return [("container.urls", "is empty; list the replicas' URLs, or use container.url for one container")]
    seen = [url.rstrip("/") for url in container.urls]
    duplicate = next((url for i, url in enumerate(seen) if url in seen[:i]), None)
    if duplicate is not None:
        return [("container.urls", f"lists {redact_url(duplicate)!r} twice; list each replica once")]
    return []


def _cross_problems(cfg: GepaConfig) -> list[tuple[str, str]]:
    """Checks that span several keys, run on the validated model."""
    problems: list[tuple[str, str]] = _output_dir_problems(cfg)
    container, dataset, gepa = cfg.container, cfg.dataset, cfg.gepa
    if container.url is None and not container.command and container.urls is None and container.task is None:
        problems.append(
            (
                "container.url",
                "no container; set container.url, container.urls, container.command (argv list) or container.task",
            )
        )
    if cfg.run.run_id is None:  # the id made from the config file's name
        problem = _run_id_problem(cfg.effective_run_id())
        if problem is not None:
            problems.append(("run.run_id", f"the run id made from the config file's name {problem}; set run.run_id"))
    problems += _task_problems(container)
    problems += _url_problems(cfg)
    problems += _replica_problems(container)
    problems += _header_and_env_problems(container)
    problems += _path_problems(cfg)
    if container.command is not None and not container.command:
        problems.append(("container.command", "is empty; give the argv list that starts the container"))
    for name in ("train_ids", "pareto_ids", "minibatch_ids"):
        if getattr(dataset, name) == []:
            problems.append((f"dataset.{name}", "is empty; list at least one id or use {count = N}"))
    if isinstance(dataset.train_ids, list):
        for name in ("pareto_ids", "minibatch_ids"):
            selected = getattr(dataset, name)
            outside = [i for i in selected or [] if i not in dataset.train_ids]
            if isinstance(selected, list) and outside:
                message = f"id {outside[0]!r} is not in dataset.train_ids; use a subset of train_ids"
                problems.append((f"dataset.{name}", message))
    limits = (
        ("max_cost_usd", "cost_usd", gepa.max_cost_usd > 0),
        ("max_total_tokens", "tokens", gepa.max_total_tokens is not None),
        ("max_time_seconds", "seconds", gepa.max_time_seconds is not None),
    )
    for limit, unit, active in limits:
        for key in (f"proposer_estimated_{unit}", f"rollout_estimated_{unit}") if active else ():
            if getattr(gepa, key) is None:
                problems.append((f"gepa.{key}", f"is required when gepa.{limit} is set; set a positive estimate"))
    heldout = dataset.heldout_ids
    n_heldout = heldout.count if isinstance(heldout, CountSelection) else len(heldout)
    if gepa.max_train_rollouts is None and gepa.max_total_rollouts <= cfg.heldout_cap(n_heldout):
        problems.append(("gepa.max_total_rollouts", _no_train_budget(cfg, n_heldout)))
    return problems


def _loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{part}"
    return text


def _unknown_key_hint(loc: tuple[int | str, ...]) -> str:
    """``did you mean ...`` for a misspelt key, else the keys its table allows."""
    model: type[BaseModel] = GepaConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    return f" (did you mean {close[0]}?)" if close else f" (allowed: {', '.join(allowed)})"


def _describe(error: ErrorDetails) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return f"unknown key; remove it or fix its spelling{_unknown_key_hint(error['loc'])}"
    if kind == "missing":
        return "required key is missing; add it"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"must be one of {expected} (got {value!r}); use one of those values"
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    if kind == "finite_number":
        return _NOT_FINITE.format(value=value)
    shown = repr(value) if isinstance(value, str | int | float | bool) and len(repr(value)) <= 60 else "that"
    names = [str(part) for part in error["loc"]]
    if any(name in _MAY_HOLD_SECRETS or _names_variable(name) or _secret_name(name) for name in names):
        shown = "a value not shown here"
    elif isinstance(value, str) and names[-1:] and names[-1] in _URL_KEYS:
        shown = _shown_url(value)
    return f"{error['msg']} (got {shown}); fix the value's type"


# keys whose values are never echoed in an error (a header, a variable, a passed-through table may hold a secret)
_MAY_HOLD_SECRETS = frozenset({"headers", "env", "config"})
_URL_KEYS = frozenset({"url", "urls", "base_url", "mlflow_tracking_uri"})


def _config_error(shown: str, problems: list[tuple[str, str]]) -> ConfigError:
    lines = [f"{shown}: {key}: {message}" for key, message in problems]
    return ConfigError("\n".join(lines), file=shown, keys=[key for key, _ in problems])


class _PathProblem(Exception):
    """A path key that cannot be resolved: the key and the message for the config error."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(key, message)
        self.problem = (key, message)


def _absolute(base: Path, path: Path, key: str) -> Path:
    """``path`` made absolute against ``base`` (symbolic links resolved for a relative one); a symbolic-link loop
    (or ``~`` without a home directory) is a :class:`_PathProblem` naming ``key``."""
    try:
        path = path.expanduser()
        resolved = (base / path).resolve()
    except (RuntimeError, OSError) as exc:  # Python 3.11 raises RuntimeError on a symbolic-link loop
        why = exc.strerror if isinstance(exc, OSError) else "a loop of symbolic links, or ~ without a home directory"
        raise _PathProblem(key, f"{path} cannot be resolved ({why}); fix the path") from None
    return path if path.is_absolute() else resolved


def _with_absolute_paths(cfg: GepaConfig, base: Path) -> GepaConfig:
    container, cache, proposer = cfg.container, cfg.cache, cfg.proposer

    def argv(command: list[str] | None, key: str) -> list[str] | None:
        """Arguments written as ``./x`` or ``../x`` are files beside the config."""
        if command is None:
            return None
        return [
            str(_absolute(base, Path(a), f"{key}[{i}]")) if a.startswith(("./", "../")) else a
            for i, a in enumerate(command)
        ]

    command = argv(container.command, "container.command")
    cwd = _absolute(base, container.cwd, "container.cwd") if container.cwd else None
    tracking_uri = cfg.tracking.mlflow_tracking_uri
    if (
        tracking_uri is not None
        and tracking_uri.startswith("sqlite:///")
        and not tracking_uri.startswith("sqlite:////")
    ):
        database = _absolute(base, Path(tracking_uri.removeprefix("sqlite:///")), "tracking.mlflow_tracking_uri")
        tracking_uri = f"sqlite:///{database}"
    home = _absolute(base, proposer.codex_home, "proposer.codex_home") if proposer.codex_home else None
    template = proposer.prompt_template
    cache_path = _absolute(base, cache.path, "cache.path") if cache.path else None
    return cfg.model_copy(
        update={
            "run": cfg.run.model_copy(update={"output_dir": _absolute(base, cfg.run.output_dir, "run.output_dir")}),
            "container": container.model_copy(update={"command": command, "cwd": cwd}),
            "cache": cache.model_copy(update={"path": cache_path}),
            "tracking": cfg.tracking.model_copy(update={"mlflow_tracking_uri": tracking_uri}),
            "proposer": proposer.model_copy(
                update={
                    "codex_home": home,
                    "command": argv(proposer.command, "proposer.command"),
                    "prompt_template": _absolute(base, template, "proposer.prompt_template") if template else None,
                }
            ),
        }
    )


def _read_toml(file: Path, shown: str) -> dict[str, Any]:
    """The TOML table in ``file`` (UTF-8, a byte-order mark allowed), or one ``ConfigError`` saying why not."""
    try:
        kind = _not_a_file(file)
        if kind:  # reading a FIFO (or a device) would wait for a writer for good
            raise ConfigError(f"{shown}: the config is {kind}, not a file; save the config to a file", file=shown)
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{shown}: config file not found; check the path", file=shown) from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read config file ({exc.strerror}); check it", file=shown) from None
    try:
        text = raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as exc:
        utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        what = "UTF-16" if utf16 else f"not UTF-8 (an invalid byte at offset {exc.start})"
        raise ConfigError(f"{shown}: the file is {what}; save it as UTF-8", file=shown) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown}: invalid TOML: {exc}; fix the syntax there", file=shown) from None


def load_config(path: str | os.PathLike[str]) -> GepaConfig:
    """Read, override from the environment, validate and resolve one V1 TOML config."""
    shown = os.fspath(path)
    file = Path(shown).expanduser()
    data = _read_toml(file, shown)
    overrides: dict[str, str] = {}
    from_env: dict[str, str] = {}  # dotted key -> the environment variable that set it
    for field, value in _EnvOverrides().model_dump().items():
        variable, (section, key) = _OVERRIDES[field]
        if value is not None and isinstance(data.setdefault(section, {}), dict):
            data[section][key] = value
            overrides[variable] = redact_url(value) if key == "base_url" else value  # the manifest keeps these
            from_env[f"{section}.{key}"] = variable

    def error(problems: list[tuple[str, str]]) -> ConfigError:
        return _config_error(
            shown,
            [
                (key, f"{message} (value from environment variable {from_env[key]}; fix or unset it)")
                if key in from_env
                else (key, message)
                for key, message in problems
            ],
        )

    problems = _raw_problems(data)  # after the overrides: their values are checked too
    if "run.output_dir" in from_env and not Path(str(data["run"]["output_dir"])).expanduser().is_absolute():
        problems.append(("run.output_dir", "must be an absolute path (a worker host's own folder for its runs)"))
    if problems:
        raise error(problems)
    source = file.resolve()
    try:
        cfg = GepaConfig.model_validate({**data, "source_path": source, "overrides_applied": overrides})
    except ValidationError as exc:
        raise error([(_loc(e["loc"]), _describe(e)) for e in exc.errors()]) from None
    try:
        cfg = _with_absolute_paths(cfg, source.parent)
    except _PathProblem as exc:
        raise error([exc.problem]) from None
    problems = _template_problems(cfg.proposer)  # first: the run id digests the template's content
    if problems:
        raise error(problems)
    problems = _cross_problems(cfg)
    if problems:
        raise error(problems)
    return cfg
