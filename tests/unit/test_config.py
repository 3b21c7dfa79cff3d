"""Tests for synth_opt.config: the V1 TOML shape, its errors, overrides, digests and budget caps."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth_opt.config import CountSelection, GepaConfig, load_config
from synth_opt.errors import ConfigError

BASE = """
[container]
url = "http://127.0.0.1:8102"

[dataset]
train_ids = ["a", "b", "c", "d"]
heldout_ids = ["h1", "h2"]

[proposer]
backend = "codex_app_server"
"""

ENV_VARS = tuple(
    f"SYNTH_OPTIMIZERS_{name}"
    for name in (
        "RUN_ID",
        "CACHE_MODE",
        "PROPOSER_BACKEND",
        "PROPOSER_BASE_URL",
        "PROPOSER_MODEL",
        "PROPOSER_API_KEY_ENV",
        "POLICY_BASE_URL",
        "POLICY_MODEL",
        "POLICY_API_KEY_ENV",
    )
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str, name: str = "gepa.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, extra: str = "", base: str = BASE, name: str = "gepa.toml") -> GepaConfig:
    return load_config(write(tmp_path, base + "\n" + extra, name))


def with_dataset(lines: str, base: str = BASE) -> str:
    """BASE with extra lines inside its [dataset] table."""
    return base.replace("[dataset]\n", f"[dataset]\n{lines}\n")


def config_error(tmp_path: Path, extra: str = "", base: str = BASE) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra, base)
    assert "gepa.toml" in info.value.message
    assert info.value.exit_code == 2
    return info.value.message


# ---------------------------------------------------------------- defaults, paths, ids


def test_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    assert cfg.run.run_id is None and cfg.run.seed == 0
    assert cfg.output_dir == (tmp_path / "runs").resolve()
    assert cfg.container.startup_timeout_seconds == 30 and cfg.container.request_timeout_seconds == 120
    assert cfg.container.headers == {} and cfg.container.env == {}
    assert cfg.dataset.train_split == "train" and cfg.dataset.heldout_split == "test"
    assert cfg.dataset.pareto_ids is None and cfg.dataset.minibatch_ids is None
    assert cfg.candidate.target_modules == [] and cfg.seed_candidate == {}
    assert cfg.proposer.command == ["codex", "app-server"]
    assert cfg.proposer.timeout_seconds == 300 and cfg.proposer.message_stall_timeout_seconds == 120
    assert cfg.proposer.proposals_per_call == 1 and cfg.proposer.cost_per_million_input_tokens is None  # unknown
    g = cfg.gepa
    assert g.max_total_rollouts == 256 and g.max_cost_usd == 0.0 and g.minibatch_size == 3
    assert (g.candidate_selector, g.frontier_type, g.acceptance) == (
        "pareto",
        "instance",
        "strict_improvement",
    )
    assert g.use_merge is False and g.max_merge_invocations == 5
    assert (g.rollout_submission_mode, g.rollout_poll_interval_ms) == ("sync", 250)
    assert g.rollout_async_timeout_seconds == 600 and g.rollout_failure_rate_tolerance == 0.25
    assert g.pipeline.mode == "sync_serial" and g.pipeline.staleness_policy == "rebase"
    assert g.reuse_evaluations is True
    assert g.pipeline.delta_max == 2 and g.pipeline.max_in_flight_candidates == 4
    assert g.pipeline.workers.model_dump() == {"propose": 4, "rollout": 16, "evaluate": 1}
    assert cfg.cache.mode == "readwrite"
    assert cfg.cache_path() == cfg.output_dir / "cache.sqlite"
    assert cfg.source_path == (tmp_path / "gepa.toml").resolve()
    assert cfg.overrides_applied == {}


def test_models_are_frozen(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    with pytest.raises(ValueError):
        cfg.gepa.minibatch_size = 5  # type: ignore[misc]


def test_relative_paths_resolve_against_toml_folder(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    base = BASE.replace('url = "http://127.0.0.1:8102"', 'command = ["./serve.sh", "--port", "./x"]\ncwd = "app"')
    text = base.replace('backend = "codex_app_server"', 'backend = "codex_app_server"\ncodex_home = ".codex"')
    text += '\n[run]\noutput_dir = "out"\n[cache]\npath = "../cache/c.sqlite"\n'
    cfg = load_config(write(sub, text))
    assert cfg.output_dir == sub / "out"
    assert cfg.container.cwd == sub / "app"
    assert cfg.container.command == [str(sub / "serve.sh"), "--port", str(sub / "x")]
    assert cfg.cache_path() == tmp_path / "cache" / "c.sqlite"
    assert cfg.proposer.codex_home == sub / ".codex"


def test_bare_command_and_absolute_paths_untouched(tmp_path: Path) -> None:
    base = BASE.replace('url = "http://127.0.0.1:8102"', 'command = ["python", "-m", "app"]')
    cfg = load(tmp_path, '[run]\noutput_dir = "/abs/runs"', base=base)
    assert cfg.container.command == ["python", "-m", "app"]
    assert cfg.output_dir == Path("/abs/runs")


def test_int_ids_become_strings_and_count_selection(tmp_path: Path) -> None:
    base = BASE.replace('["a", "b", "c", "d"]', "[0, 1, 2, 3]").replace('["h1", "h2"]', "{count = 50}")
    cfg = load(tmp_path, base=with_dataset("pareto_ids = [1, 2]\nminibatch_ids = {count = 3}", base))
    assert cfg.dataset.train_ids == ["0", "1", "2", "3"]
    assert cfg.dataset.heldout_ids == CountSelection(count=50)
    assert cfg.dataset.pareto_ids == ["1", "2"]
    assert cfg.dataset.minibatch_ids == CountSelection(count=3)
    assert cfg.decision_config()["dataset"]["heldout_ids"] == {"count": 50}


def test_duplicate_ids_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, base=BASE.replace('["a", "b", "c", "d"]', '["a", 1, "1"]'))
    assert "dataset.train_ids" in message and "'1'" in message


def test_empty_heldout_ids_allowed(tmp_path: Path) -> None:
    cfg = load(tmp_path, base=BASE.replace('["h1", "h2"]', "[]"))
    assert cfg.dataset.heldout_ids == []


# ---------------------------------------------------------------- one ConfigError per case


@pytest.mark.parametrize(
    ("run_id", "says"),
    [
        ("latest", "runs share in run.output_dir"),  # the link to the newest run: --fresh would empty another run
        ("cache.sqlite", "runs share in run.output_dir"),  # the default cache
        ("Run_Registry.jsonl", "runs share in run.output_dir"),
        ("a\\u0000b", "control character"),
        ("x" * 201, "201 bytes long"),
        ("..", "not a usable directory name"),
    ],
)
def test_a_run_id_that_cannot_name_its_own_directory_is_refused(tmp_path: Path, run_id: str, says: str) -> None:
    message = config_error(tmp_path, f'[run]\nrun_id = "{run_id}"')
    assert "run.run_id" in message and says in message, message


def test_a_config_file_name_too_long_for_its_run_id_asks_for_run_id(tmp_path: Path) -> None:
    path = write(tmp_path, BASE, name="c" * 195 + ".toml")
    with pytest.raises(ConfigError, match=r"run\.run_id: the run id made from the config file's name"):
        load_config(path)
    assert load_config(write(tmp_path, BASE + '\n[run]\nrun_id = "short"', name="d" * 195 + ".toml"))


def test_unknown_key(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[gepa]\nmax_rolouts = 3")
    assert "gepa.max_rolouts" in message and "unknown key" in message
    assert "did you mean max_" in message


def test_unknown_nested_key(tmp_path: Path) -> None:
    assert "gepa.pipeline.workers.rollouts" in config_error(tmp_path, "[gepa.pipeline.workers]\nrollouts = 3")


def test_unknown_section(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[optimizer]\nx = 1")
    assert "optimizer" in message and "unknown section" in message


def test_non_toml_attribute_is_not_a_section(tmp_path: Path) -> None:
    assert "source_path" in config_error(tmp_path, 'source_path = "/etc/passwd"')


def test_wrong_type(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[gepa]\nminibatch_size = "three"')
    assert "gepa.minibatch_size" in message and "integer" in message


def test_bool_is_not_an_int(tmp_path: Path) -> None:
    assert "gepa.max_total_rollouts" in config_error(tmp_path, "[gepa]\nmax_total_rollouts = true")


def test_bad_enum_lists_allowed_values(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[gepa]\ncandidate_selector = "best"')
    assert "gepa.candidate_selector" in message
    for allowed in ("pareto", "current_best", "epsilon_greedy", "top_k_pareto"):
        assert allowed in message


@pytest.mark.parametrize(
    "key",
    [
        "max_total_rollouts",
        "max_train_rollouts",
        "max_heldout_rollouts",
        "max_total_tokens",
        "max_time_seconds",
    ],
)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_non_positive_limit(tmp_path: Path, key: str, value: str) -> None:
    message = config_error(tmp_path, f"[gepa]\n{key} = {value}")
    assert f"gepa.{key}" in message and f"must be positive (got {value}" in message


def test_negative_cost_limit(tmp_path: Path) -> None:
    assert "gepa.max_cost_usd" in config_error(tmp_path, "[gepa]\nmax_cost_usd = -1.0")


def test_zero_cost_limit_means_no_limit(tmp_path: Path) -> None:
    assert load(tmp_path, "[gepa]\nmax_cost_usd = 0.0").gepa.max_cost_usd == 0.0


@pytest.mark.parametrize(
    ("limit", "unit"),
    [
        ("max_cost_usd = 5.0", "cost_usd"),
        ("max_total_tokens = 1000", "tokens"),
        ("max_time_seconds = 60", "seconds"),
    ],
)
def test_limit_requires_estimates(tmp_path: Path, limit: str, unit: str) -> None:
    message = config_error(tmp_path, f"[gepa]\n{limit}")
    assert f"gepa.proposer_estimated_{unit}" in message and f"gepa.rollout_estimated_{unit}" in message
    partial = config_error(tmp_path, f"[gepa]\n{limit}\nproposer_estimated_{unit} = 2")
    assert f"gepa.rollout_estimated_{unit}" in partial and "proposer_estimated" not in partial
    cfg = load(tmp_path, f"[gepa]\n{limit}\nproposer_estimated_{unit} = 2\nrollout_estimated_{unit} = 1")
    assert getattr(cfg.gepa, f"rollout_estimated_{unit}") == 1


def test_estimate_set_but_not_positive(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[gepa]\nrollout_estimated_tokens = 0")
    assert "gepa.rollout_estimated_tokens" in message and "must be positive" in message


def test_unsupported_proposer_backend(tmp_path: Path) -> None:
    base = BASE.replace('"codex_app_server"', '"claude"')
    message = config_error(tmp_path, base=base)
    assert "proposer.backend" in message and "openai_compatible" in message


def test_missing_proposer_backend(tmp_path: Path) -> None:
    assert "proposer.backend" in config_error(tmp_path, base=BASE.replace('backend = "codex_app_server"', ""))


def test_no_container_url_or_command(tmp_path: Path) -> None:
    message = config_error(tmp_path, base=BASE.replace('url = "http://127.0.0.1:8102"', ""))
    assert "container.url" in message and "container.command" in message


def test_container_url_needs_scheme(tmp_path: Path) -> None:
    assert "container.url" in config_error(tmp_path, base=BASE.replace("http://", ""))


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[policy]\napi_key = "abc"', "policy.api_key"),
        ('[proposer.config]\naccess_token = "abc"', "proposer.config.access_token"),
        ('[policy]\nmodel = "sk-proj-abc"', "policy.model"),
        ('[policy.config]\nextra = "0123456789abcdef0123456789abcdef"', "policy.config.extra"),
        ('[policy.config]\nextra = "AbCdEf0123456789GhIjKl0123456789xyz"', "policy.config.extra"),
        ('[container.headers]\nAuthorization = "Bearer abc"', "container.headers.Authorization"),
        ('[container.headers]\nX-Thing = "Bearer abc"', "container.headers.X-Thing"),
        ('[container.headers]\nX-Api-Key = "short"', "container.headers.X-Api-Key"),
    ],
)
def test_inline_secret(tmp_path: Path, extra: str, key: str) -> None:
    message = config_error(tmp_path, extra)
    assert key in message and "environment variable" in message
    assert "sk-proj-abc" not in message and "0123456789abcdef0123456789abcdef" not in message


def test_env_var_names_and_model_names_are_not_secrets(tmp_path: Path) -> None:
    text = (
        '[policy]\nmodel = "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo"\napi_key_env = "OPENAI_API_KEY"\n'
        'max_tokens = 512\nbase_url = "https://api.example.com/v1/chat/completions/with/a/long/path"\n'
        '[container.headers]\nX-Trace = "enabled"\n'
    )
    cfg = load(tmp_path, text)
    assert cfg.policy.api_key_env == "OPENAI_API_KEY" and cfg.policy.max_tokens == 512


def test_a_codex_provider_env_key_names_a_variable_and_is_not_a_secret(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        '[proposer.config]\n"model_providers.local" = { base_url = "http://127.0.0.1:9/v1", env_key = "LOCAL_KEY", '
        'wire_api = "responses" }\n',
    )
    assert cfg.proposer.config["model_providers.local"]["env_key"] == "LOCAL_KEY"
    message = config_error(tmp_path, '[proposer.config]\nexperimental_bearer_token = "abc"\n')
    assert "proposer.config.experimental_bearer_token" in message


@pytest.mark.parametrize("key", ["pareto_ids", "minibatch_ids"])
def test_subset_of_train_ids(tmp_path: Path, key: str) -> None:
    message = config_error(tmp_path, base=with_dataset(f'{key} = ["a", "zz", "yy"]'))
    assert f"dataset.{key}" in message and "'zz'" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "gepa.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in info.value.message and "not found" in info.value.message


def test_invalid_toml_names_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[gepa\nminibatch_size = 3")
    assert "invalid TOML" in message and "line" in message


@pytest.mark.parametrize(
    "extra",
    [
        "[gepa.pipeline.workers]\npropose = 0",
        "[gepa.pipeline.workers]\nrollout = 0",
        "[gepa.pipeline.workers]\nevaluate = 0",
        "[gepa.pipeline]\nmax_in_flight_candidates = 0",
        "[gepa.pipeline]\ndelta_max = 0",
        "[gepa]\nminibatch_size = 0",
    ],
)
def test_at_least_one(tmp_path: Path, extra: str) -> None:
    section = extra.split("]")[0].lstrip("[")
    key = extra.split("\n")[1].split(" =")[0]
    assert f"{section}.{key}" in config_error(tmp_path, extra)


def test_proposals_per_call_at_least_one(tmp_path: Path) -> None:
    base = BASE.replace('backend = "codex_app_server"', 'backend = "codex_app_server"\nproposals_per_call = 0')
    assert "proposer.proposals_per_call" in config_error(tmp_path, base=base)


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_failure_rate_tolerance_is_a_fraction(tmp_path: Path, value: str) -> None:
    message = config_error(tmp_path, f"[gepa]\nrollout_failure_rate_tolerance = {value}")
    assert "gepa.rollout_failure_rate_tolerance" in message


def test_bad_count_selection(tmp_path: Path) -> None:
    base = BASE.replace('["h1", "h2"]', "{count = 0}")
    assert "dataset.heldout_ids" in config_error(tmp_path, base=base)


def test_several_errors_in_one_message(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[gepa]\nminibatch_size = 0\nfrontier_type = "x"')
    assert message.count("gepa.toml: ") == 2


# ---------------------------------------------------------------- environment overrides


def test_env_overrides_applied_and_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_OPTIMIZERS_RUN_ID", "acceptance-1")
    monkeypatch.setenv("SYNTH_OPTIMIZERS_CACHE_MODE", "readonly")
    monkeypatch.setenv("SYNTH_OPTIMIZERS_PROPOSER_BACKEND", "openai_compatible")
    cfg = load(tmp_path)
    assert cfg.run.run_id == "acceptance-1" and cfg.effective_run_id() == "acceptance-1"
    assert cfg.cache.mode == "readonly" and cfg.proposer.backend == "openai_compatible"
    assert cfg.overrides_applied == {
        "SYNTH_OPTIMIZERS_RUN_ID": "acceptance-1",
        "SYNTH_OPTIMIZERS_CACHE_MODE": "readonly",
        "SYNTH_OPTIMIZERS_PROPOSER_BACKEND": "openai_compatible",
    }


def test_an_env_output_dir_puts_a_workers_runs_on_its_own_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = load(tmp_path)
    assert shared.output_dir == (tmp_path / "runs").resolve()  # relative to the config file
    local = tmp_path / "host-b" / "runs"
    monkeypatch.setenv("SYNTH_OPTIMIZERS_OUTPUT_DIR", str(local))
    cfg = load(tmp_path)
    assert cfg.output_dir == local and cfg.run_dir() == local / cfg.effective_run_id()
    assert cfg.effective_run_id() == shared.effective_run_id()  # the same run, kept elsewhere
    assert cfg.overrides_applied == {"SYNTH_OPTIMIZERS_OUTPUT_DIR": str(local)}
    monkeypatch.setenv("SYNTH_OPTIMIZERS_OUTPUT_DIR", "host-b/runs")  # relative to what? refused
    message = config_error(tmp_path)
    assert "run.output_dir: must be an absolute path" in message and "SYNTH_OPTIMIZERS_OUTPUT_DIR" in message


def test_env_overrides_point_a_cookbook_config_at_another_endpoint_and_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = BASE + '\n[policy]\ntype = "llm"\nmodel = "gpt-4.1-mini"\nbase_url = "https://api.openai.com/v1"\n'
    before = load(tmp_path, base=base)
    local = {
        "SYNTH_OPTIMIZERS_POLICY_BASE_URL": "http://127.0.0.1:8080/v1",
        "SYNTH_OPTIMIZERS_POLICY_MODEL": "qwen2.5-0.5b-instruct",
        "SYNTH_OPTIMIZERS_POLICY_API_KEY_ENV": "LOCAL_KEY",
        "SYNTH_OPTIMIZERS_PROPOSER_BASE_URL": "http://127.0.0.1:8080/v1",
        "SYNTH_OPTIMIZERS_PROPOSER_MODEL": "qwen2.5-0.5b-instruct",
        "SYNTH_OPTIMIZERS_PROPOSER_API_KEY_ENV": "LOCAL_KEY",
    }
    for name, value in local.items():
        monkeypatch.setenv(name, value)
    cfg = load(tmp_path, base=base)
    assert (cfg.policy.base_url, cfg.policy.model, cfg.policy.api_key_env) == (
        "http://127.0.0.1:8080/v1",
        "qwen2.5-0.5b-instruct",
        "LOCAL_KEY",
    )
    assert (cfg.proposer.base_url, cfg.proposer.model, cfg.proposer.api_key_env) == (
        "http://127.0.0.1:8080/v1",
        "qwen2.5-0.5b-instruct",
        "LOCAL_KEY",
    )
    assert cfg.overrides_applied == local
    assert cfg.decision_digest() != before.decision_digest()  # another model decides otherwise


def test_bad_env_override_names_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_OPTIMIZERS_CACHE_MODE", "bogus")
    message = config_error(tmp_path)
    assert "SYNTH_OPTIMIZERS_CACHE_MODE" in message and "cache.mode" in message and "readonly" in message


def test_bad_backend_override_names_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_OPTIMIZERS_PROPOSER_BACKEND", "claude")
    assert "SYNTH_OPTIMIZERS_PROPOSER_BACKEND" in config_error(tmp_path)


# ---------------------------------------------------------------- digest, run id, namespace


def test_digest_ignores_non_decision_settings(tmp_path: Path) -> None:
    first = load(tmp_path, name="a.toml")
    other = BASE.replace("127.0.0.1:8102", "10.0.0.5:9000")
    changed = load(
        tmp_path,
        '[run]\nrun_id = "x"\noutput_dir = "elsewhere"\n[cache]\nmode = "off"\nnamespace = "n"\n'
        "[gepa]\nrollout_poll_interval_ms = 10\nrollout_submission_mode = 'async'\n"
        "[gepa.pipeline]\nmode = 'async_pipelined'\nmax_in_flight_candidates = 1\n"
        "staleness_policy = 'guarded'\n"
        "[gepa.pipeline.workers]\nrollout = 32\npropose = 4\n",
        base=other,
        name="a.toml",
    )
    assert len(first.decision_digest()) == 16
    assert first.decision_digest() == changed.decision_digest()
    assert first.decision_config() == changed.decision_config()


def test_the_staleness_policies(tmp_path: Path) -> None:
    extra = "[gepa.pipeline]\nmode = 'async_pipelined'\nstaleness_policy = 'rebase'"
    config = load(tmp_path, extra)
    assert config.gepa.pipeline.staleness_policy == "rebase"
    assert config.decision_config()["pipeline"]["staleness_policy"] == "rebase"
    full = load(tmp_path, "[gepa.pipeline]\nmode = 'async_pipelined'\nstaleness_policy = 'full'", name="b.toml")
    assert config.decision_digest() != full.decision_digest()
    message = config_error(tmp_path, "[gepa.pipeline]\nstaleness_policy = 'merge'")
    assert "gepa.pipeline.staleness_policy" in message
    assert all(allowed in message for allowed in ("full", "guarded", "rebase"))


@pytest.mark.parametrize(
    "extra",
    [
        "[run]\nseed = 1",
        "[gepa]\nminibatch_size = 4",
        '[seed_candidate]\nsystem = "You classify."',
        "[gepa.pipeline]\nmode = 'async_pipelined'",
        '[policy]\nmodel = "gpt-4.1-mini"',
    ],
)
def test_digest_changes_with_decisions(tmp_path: Path, extra: str) -> None:
    assert load(tmp_path).decision_digest() != load(tmp_path, extra).decision_digest()


def test_later_decision_keys_enter_the_digest_only_away_from_their_defaults(tmp_path: Path) -> None:
    """A config written before these keys existed keeps its digest (so its run id and cache namespace), and
    its runs still resume and replay; a config that sets one to another value gets a digest of its own."""
    before = load(tmp_path)
    assert before.decision_digest() == "9d8535d8a9369bb1"  # this config's digest before the keys existed

    def proposer_with(line: str) -> GepaConfig:
        return load(
            tmp_path, base=BASE.replace('backend = "codex_app_server"', f'backend = "codex_app_server"\n{line}')
        )

    assert proposer_with('response_format = "json_schema"\nmax_feedback_chars = 4000').decision_digest() == (
        before.decision_digest()
    )
    for changed in ('response_format = "none"', "max_feedback_chars = 100", "max_prompt_tokens = 9000"):
        assert proposer_with(changed).decision_digest() != before.decision_digest(), changed


def test_effective_run_id_and_namespace(tmp_path: Path) -> None:
    cfg = load(tmp_path, name="banking.toml")
    digest = cfg.decision_digest()
    assert cfg.effective_run_id() == f"banking-{digest[:8]}"
    assert cfg.cache_namespace() == f"banking-{digest}"
    assert cfg.run_dir() == cfg.output_dir / cfg.effective_run_id()
    named = load(tmp_path, '[run]\nrun_id = "r1"\n[cache]\nnamespace = "shared"', name="banking.toml")
    assert named.effective_run_id() == "r1" and named.cache_namespace() == "shared"
    assert load(tmp_path, '[run]\nrun_id = "r2"', name="banking.toml").cache_namespace() == cfg.cache_namespace()


def test_run_id_must_be_a_directory_name(tmp_path: Path) -> None:
    assert "run.run_id" in config_error(tmp_path, '[run]\nrun_id = "a/b"')


def test_sync_serial_effective_values(tmp_path: Path) -> None:
    workers = "[gepa.pipeline]\nmax_in_flight_candidates = 4\n[gepa.pipeline.workers]\nrollout = 16\npropose = 2"
    serial = load(tmp_path, workers)
    assert serial.effective_max_in_flight() == 1
    assert serial.effective_workers() == {"propose": 1, "rollout": 1, "evaluate": 1}
    piped = load(tmp_path, workers.replace("[gepa.pipeline]\n", "[gepa.pipeline]\nmode = 'async_pipelined'\n"))
    assert piped.effective_max_in_flight() == 4
    assert piped.effective_workers() == {"propose": 2, "rollout": 16, "evaluate": 1}


# ---------------------------------------------------------------- budget caps


def test_budget_caps_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    assert cfg.heldout_cap(2) == 4
    assert cfg.train_cap(2) == 252
    assert cfg.total_cap() is None


def test_budget_caps_explicit(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[gepa]\nmax_total_rollouts = 100\nmax_train_rollouts = 60\nmax_heldout_rollouts = 10")
    assert (cfg.heldout_cap(2), cfg.train_cap(2), cfg.total_cap()) == (10, 60, 100)
    only_total = load(tmp_path, "[gepa]\nmax_total_rollouts = 100")
    assert only_total.train_cap(5) == 90 and only_total.total_cap() == 100


def test_train_cap_without_room_is_a_config_error(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[gepa]\nmax_total_rollouts = 10")
    with pytest.raises(ConfigError) as info:
        cfg.train_cap(5)
    assert "gepa.max_total_rollouts" in info.value.message and "gepa.toml" in info.value.message


def test_no_train_budget_at_load(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[gepa]\nmax_total_rollouts = 4")
    assert "gepa.max_total_rollouts" in message and "max_train_rollouts" in message


# ---------------------------------------------------------------- hostile values (issue 16, item 9)

FLOAT_KEYS = [
    ("container", "startup_timeout_seconds"),
    ("container", "request_timeout_seconds"),
    ("container", "outage_timeout_seconds"),
    ("policy", "temperature"),
    ("proposer", "timeout_seconds"),
    ("proposer", "message_stall_timeout_seconds"),
    ("proposer", "cost_per_million_input_tokens"),
    ("proposer", "cost_per_million_output_tokens"),
    ("proposer", "outage_timeout_seconds"),
    ("proposer", "failure_tolerance"),
    ("gepa", "max_cost_usd"),
    ("gepa", "max_time_seconds"),
    ("gepa", "proposer_estimated_cost_usd"),
    ("gepa", "proposer_estimated_seconds"),
    ("gepa", "rollout_estimated_cost_usd"),
    ("gepa", "rollout_estimated_seconds"),
    ("gepa", "rollout_async_timeout_seconds"),
    ("gepa", "rollout_failure_rate_tolerance"),
    ("gepa", "score_threshold"),
    ("gepa", "perfect_score"),
]


def _set(section: str, line: str, base: str = BASE) -> str:
    """BASE with ``line`` in ``[section]`` (added when BASE has no such table)."""
    if f"[{section}]\n" in base:
        return base.replace(f"[{section}]\n", f"[{section}]\n{line}\n")
    return f"{base}\n[{section}]\n{line}\n"


@pytest.mark.parametrize(("section", "key"), FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_infinity_are_refused_for_every_float_key(tmp_path: Path, section: str, key: str, value: str) -> None:
    message = config_error(tmp_path, base=_set(section, f"{key} = {value}"))
    assert f"{section}.{key}" in message and "finite" in message


def test_every_float_key_is_covered_by_the_nan_test() -> None:
    from pydantic import BaseModel

    found: set[tuple[str, str]] = set()
    for name, field in GepaConfig.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for key, sub in model.model_fields.items():
                if "float" in str(sub.annotation):
                    found.add((name, key))
    assert found == set(FLOAT_KEYS)


def test_nan_inside_a_passed_through_table_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, base=_set("policy", "config = { top_p = nan }"))
    assert "policy.config.top_p" in message and "finite" in message


def test_a_nan_limit_does_not_silently_disable_the_limit(tmp_path: Path) -> None:
    extra = "[gepa]\nmax_cost_usd = nan\nproposer_estimated_cost_usd = 1\nrollout_estimated_cost_usd = 1"
    assert "gepa.max_cost_usd" in config_error(tmp_path, extra)


@pytest.mark.parametrize(
    ("section", "key", "value", "bound"),
    [
        ("gepa", "rollout_poll_interval_ms", str(2**63 - 1), "60000"),
        ("gepa", "rollout_poll_interval_ms", "60001", "60000"),
        ("gepa", "rollout_async_timeout_seconds", "86401", "86400"),
        ("container", "startup_timeout_seconds", "1e9", "86400"),
        ("container", "request_timeout_seconds", "86400.5", "86400"),
        ("container", "outage_timeout_seconds", "100000", "86400"),
        ("proposer", "timeout_seconds", "1e300", "86400"),
        ("proposer", "message_stall_timeout_seconds", "90000", "86400"),
        ("proposer", "outage_timeout_seconds", "90000", "86400"),
        # each worker is a task for the whole run: a million took 7 GB to start
        ("gepa.pipeline.workers", "rollout", "1000000", "4096"),
        ("gepa.pipeline.workers", "propose", "4097", "4096"),
        ("gepa.pipeline.workers", "evaluate", str(2**63 - 1), "4096"),
    ],
)
def test_intervals_and_timeouts_have_upper_bounds(
    tmp_path: Path, section: str, key: str, value: str, bound: str
) -> None:
    message = config_error(tmp_path, base=_set(section, f"{key} = {value}"))
    assert f"{section}.{key}" in message and f"at most {bound}" in message


def test_the_upper_bounds_themselves_are_allowed(tmp_path: Path) -> None:
    text = _set("gepa", "rollout_poll_interval_ms = 60000\nrollout_async_timeout_seconds = 86400")
    text = _set("container", "request_timeout_seconds = 86400", text)
    text = _set("gepa.pipeline.workers", "rollout = 4096", text)
    cfg = load(tmp_path, base=_set("proposer", "timeout_seconds = 86400", text))
    assert cfg.gepa.rollout_poll_interval_ms == 60000 and cfg.proposer.timeout_seconds == 86400
    assert cfg.gepa.pipeline.workers.rollout == 4096


@pytest.mark.parametrize("output_dir", ["/", "/etc", "/usr", "/usr/lib/runs", "/proc/self", "/sys", "/dev", "/boot"])
def test_output_dir_may_not_be_the_root_or_a_system_directory(tmp_path: Path, output_dir: str) -> None:
    message = config_error(tmp_path, f'[run]\noutput_dir = "{output_dir}"')
    assert "run.output_dir" in message


def test_output_dir_may_not_be_a_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home" / "someone"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    for output_dir in ("~", str(home), f"{home}/.", "/root", "/home/alice", "/home", "/Users/bob"):
        message = config_error(tmp_path, f'[run]\noutput_dir = "{output_dir}"')
        assert "run.output_dir" in message and "home" in message, output_dir
    assert load(tmp_path, '[run]\noutput_dir = "~/runs"').output_dir == home / "runs"


def test_a_run_directory_may_not_land_on_a_home_directory(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[run]\noutput_dir = "/home"\nrun_id = "alice"')
    assert "run.output_dir" in message or "run.run_id" in message


def test_proposal_memory_enters_the_digest_only_when_on(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text(BASE)
    on = tmp_path / "on.toml"
    on.write_text(BASE + "\n[gepa]\nproposal_memory = true\n")
    plain, remembering = load_config(base), load_config(on)
    assert "proposal_memory" not in plain.decision_config()["gepa"]
    assert remembering.decision_config()["gepa"]["proposal_memory"] is True
    assert remembering.decision_config()["gepa"]["proposal_memory_size"] == 5
