"""Hostile config input: every value a run could never use is a ``ConfigError`` from ``load_config`` naming the key
(never a bare exception, never a late failure), and a secret is never echoed, also from an environment override."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest

from synth_opt.cli import main
from synth_opt.config import GepaConfig, load_config
from synth_opt.errors import ConfigError

BASE = """
[container]
url = "http://127.0.0.1:8102"

[dataset]
train_ids = ["a", "b", "c", "d"]

[proposer]
backend = "offline"
"""
LAUNCHED = BASE.replace('url = "http://127.0.0.1:8102"', 'command = ["{python}", "container.py", "{port}"]')
SECRET = "sk-proj-LEAKAbCdEf1234567890AbCdEf1234567890"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROPOSER_API_KEY_ENV", "POLICY_API_KEY_ENV", "POLICY_BASE_URL", "PROPOSER_BASE_URL", "OUTPUT_DIR"):
        monkeypatch.delenv(f"SYNTH_OPTIMIZERS_{name}", raising=False)


def _set(section: str, line: str, base: str = BASE) -> str:
    """``base`` with ``line`` in its ``[section]`` table (a new table when it has none)."""
    header = f"[{section}]\n"
    return base.replace(header, header + line + "\n") if header in base else f"{base}\n{header}{line}\n"


def load(tmp_path: Path, text: str) -> GepaConfig:
    path = tmp_path / "gepa.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def refused(tmp_path: Path, text: str, key: str, *absent: str) -> str:
    """The message of the ``ConfigError`` loading ``text`` raises, which names ``key`` and holds none of
    ``absent``."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = info.value.message
    assert f"gepa.toml: {key}: " in message and info.value.exit_code == 2, message
    for secret in absent:
        assert secret not in message, message
    return message


# ---------------------------------------------------------------- secrets where a variable's name belongs


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("container", f'auth_bearer_env = "{SECRET}"', "container.auth_bearer_env"),
        (
            "container",
            'auth_bearer_env = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmN"',
            "container.auth_bearer_env",
        ),
        ("policy", 'api_key_env = "xoxb-123456789012-abcdefABCDEF"', "policy.api_key_env"),
        ("proposer", 'api_key_env = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"', "proposer.api_key_env"),
        ("proposer", 'api_key_env = "my key"', "proposer.api_key_env"),
        ("proposer", 'api_key_env = ""', "proposer.api_key_env"),
        ("policy", 'config = { tool_env = "sk-LEAK-tool" }', "policy.config.tool_env"),
    ],
)
def test_a_secret_where_a_variable_name_belongs_is_refused_unshown(
    tmp_path: Path, section: str, line: str, key: str
) -> None:
    value = line.split('"')[1]
    refused(tmp_path, _set(section, line), key, *([value] if value else []))


def test_a_secret_from_an_environment_override_is_refused_unshown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNTH_OPTIMIZERS_PROPOSER_API_KEY_ENV", SECRET)
    message = refused(tmp_path, BASE, "proposer.api_key_env", SECRET)
    assert "SYNTH_OPTIMIZERS_PROPOSER_API_KEY_ENV" in message
    monkeypatch.setenv("SYNTH_OPTIMIZERS_PROPOSER_API_KEY_ENV", "xoxb-1234-abcd")
    refused(tmp_path, BASE, "proposer.api_key_env", "xoxb-1234-abcd")


def test_variable_names_still_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_OPTIMIZERS_POLICY_API_KEY_ENV", "LOCAL_KEY")
    text = _set("container", 'auth_bearer_env = "CONTAINER_TOKEN"\nenv = { INTENTS_API_KEY_ENV = "INTENTS_KEY" }')
    cfg = load(tmp_path, _set("proposer", 'api_key_env = "_openai_key2"', text))
    assert cfg.container.auth_bearer_env == "CONTAINER_TOKEN" and cfg.proposer.api_key_env == "_openai_key2"
    assert cfg.policy.api_key_env == "LOCAL_KEY"


def test_an_overridden_url_is_recorded_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_OPTIMIZERS_POLICY_BASE_URL", "http://u:LEAKpw@127.0.0.1:9/v1?api_key=LEAKQ")
    cfg = load(tmp_path, BASE)
    assert cfg.policy.base_url == "http://u:LEAKpw@127.0.0.1:9/v1?api_key=LEAKQ"  # the run uses it
    assert cfg.overrides_applied == {"SYNTH_OPTIMIZERS_POLICY_BASE_URL": "http://u:***@127.0.0.1:9/v1?api_key=***"}


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("container", 'headers = "Bearer sk-LEAK-2"', "container.headers"),
        ("container", 'env = "TOKEN=sk-LEAK-2"', "container.env"),
        ("container", 'env = { A = ["sk-LEAK-2"] }', "container.env.A"),
        ("policy", 'config = "LEAK-2 value"', "policy.config"),
    ],
)
def test_a_wrong_type_under_a_key_that_may_hold_a_secret_is_not_echoed(
    tmp_path: Path, section: str, line: str, key: str
) -> None:
    refused(tmp_path, _set(section, line), key, "LEAK")


@pytest.mark.parametrize(
    "url", ["127.0.0.1:18901?token=sk-LEAK-15", "user:LEAKpw@127.0.0.1:1/v1", "ftp://u:LEAKpw@h/?k=LEAK"]
)
def test_a_url_without_http_is_shown_redacted(tmp_path: Path, url: str) -> None:
    message = refused(tmp_path, BASE.replace("http://127.0.0.1:8102", url), "container.url", "LEAK")
    assert "http://" in message


@pytest.mark.parametrize(
    "line",
    [f'OPENAI_API_KEY = "{SECRET}"', f'FOO = "{SECRET}"', 'HF_TOKEN = "hf_abc"', 'SERVICE_PASSWORD = "hunter2"'],
)
def test_an_inline_secret_in_container_env_is_refused_unshown(tmp_path: Path, line: str) -> None:
    name, value = line.split(" = ")
    message = refused(tmp_path, _set("container", f"env = {{ {line} }}"), f"container.env.{name}", value.strip('"'))
    assert "environment" in message


def test_plain_container_env_still_loads(tmp_path: Path) -> None:
    env = 'env = { INTENTS_BASE_URL = "http://127.0.0.1:8080/v1", INTENTS_MODEL = "m", EMPTY_TOKEN = "" }'
    assert load(tmp_path, _set("container", env)).container.env["INTENTS_MODEL"] == "m"


# ---------------------------------------------------------------- NUL characters and symbolic-link loops


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("run", 'output_dir = "a\\u0000b"', "run.output_dir"),
        ("cache", 'path = "a\\u0000b"', "cache.path"),
        ("proposer", 'prompt_template = "a\\u0000b"', "proposer.prompt_template"),
        ("proposer", 'codex_home = "a\\u0000b"', "proposer.codex_home"),
        ("proposer", 'command = ["codex", "a\\u0000b"]', "proposer.command[1]"),
        ("container", 'cwd = "a\\u0000b"', "container.cwd"),
        ("container", 'env = { A = "b\\u0000c" }', "container.env.A"),
        ("container", 'env = { "A\\u0000" = "b" }', "container.env.'A\\x00'"),
        ("container", 'headers = { X-A = "b\\u0000c" }', "container.headers.X-A"),
        ("tracking", 'mlflow_tracking_uri = "sqlite:///a\\u0000b.db"', "tracking.mlflow_tracking_uri"),
    ],
)
def test_a_nul_character_is_refused_naming_the_key(tmp_path: Path, section: str, line: str, key: str) -> None:
    assert "NUL" in refused(tmp_path, _set(section, line), key)


def test_a_nul_in_a_launched_command_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, LAUNCHED.replace('"container.py"', '"./a\\u0000b"'), "container.command[1]")


def test_a_nul_in_a_seed_text_is_task_content(tmp_path: Path) -> None:
    assert load(tmp_path, BASE + '\n[seed_candidate]\nprompt = "a\\u0000b"\n').seed_candidate["prompt"] == "a\x00b"


@pytest.mark.parametrize(
    ("section", "key", "where"),
    [
        ("run", "output_dir", "loop/runs"),
        ("cache", "path", "loop/cache.sqlite"),
        ("proposer", "prompt_template", "loop"),
        ("container", "cwd", "{tmp}/loop/x"),  # absolute: still resolved, for the check
    ],
)
def test_a_symbolic_link_loop_is_refused_naming_the_key(tmp_path: Path, section: str, key: str, where: str) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    line = f'{key} = "{where.format(tmp=tmp_path)}"'
    assert "cannot be resolved" in refused(tmp_path, _set(section, line), f"{section}.{key}")


# ---------------------------------------------------------------- integers beyond 64 bits


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("gepa", "max_train_rollouts = 1180591620717411303424", "gepa.max_train_rollouts"),
        ("gepa", "max_total_tokens = 9223372036854775808", "gepa.max_total_tokens"),
        ("run", "seed = -9223372036854775809", "run.seed"),
        ("container", "max_reply_bytes = 100000000000000000000000", "container.max_reply_bytes"),
        ("policy", "config = { n = 18446744073709551616 }", "policy.config.n"),
    ],
)
def test_an_integer_beyond_64_bits_is_refused(tmp_path: Path, section: str, line: str, key: str) -> None:
    assert "64-bit" in refused(tmp_path, _set(section, line), key)


def test_the_64_bit_limits_themselves_load(tmp_path: Path) -> None:
    cfg = load(
        tmp_path, _set("run", "seed = -9223372036854775808", _set("gepa", "max_train_rollouts = 9223372036854775807"))
    )
    assert cfg.gepa.max_train_rollouts == 2**63 - 1 and cfg.run.seed == -(2**63)


# ---------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:99999", "port"),
        ("http://127.0.0.1:0/v1", "port"),
        ("http://127.0.0.1:abc/", "port"),
        ("http://[::1", "not a valid URL"),
        ("http://", "no host"),
        ("http:///v1", "no host"),
        ("http://exa mple.com", "space"),
        ("http://host/\\u0007", "control character"),
    ],
)
@pytest.mark.parametrize("section", ["container", "proposer", "policy"])
def test_a_url_that_cannot_be_sent_to_is_refused(tmp_path: Path, url: str, says: str, section: str) -> None:
    key = "url" if section == "container" else "base_url"
    text = BASE.replace('url = "http://127.0.0.1:8102"', "") if section == "container" else BASE
    assert says in refused(tmp_path, _set(section, f'{key} = "{url}"', text), f"{section}.{key}")


def test_a_replica_url_that_cannot_be_sent_to_is_refused_redacted(tmp_path: Path) -> None:
    text = BASE.replace('url = "http://127.0.0.1:8102"', 'urls = ["http://h:1", "http://u:LEAKpw@h:99999/?k=LEAK"]')
    assert "'http://u:***@h:99999/?k=***'" in refused(tmp_path, text, "container.urls[1]", "LEAK")


def test_good_urls_still_load(tmp_path: Path) -> None:
    text = _set(
        "policy", 'base_url = "https://api.openai.com/v1"', _set("proposer", 'base_url = "http://[::1]:8080/v1"')
    )
    assert load(tmp_path, text).proposer.base_url == "http://[::1]:8080/v1"


def test_container_url_and_command_is_one_or_the_other(tmp_path: Path) -> None:
    text = _set("container", 'command = ["python", "container.py"]')
    assert "one or the other" in refused(tmp_path, text, "container.url")


# ---------------------------------------------------------------- headers and variables that cannot be sent or set


@pytest.mark.parametrize(
    ("line", "key", "says"),
    [
        ('headers = { X-A = "v\\r\\nX-LEAK: 1" }', "container.headers.X-A", "control character"),
        ('headers = { X-A = "LEAK\\u0007" }', "container.headers.X-A", "control character"),
        ('headers = { X-A = "LEAK \\U0001F680" }', "container.headers.X-A", "ASCII"),
        ('headers = { "X A:" = "LEAK" }', "container.headers.X A:", "header name"),
        ('headers = { "" = "LEAK" }', "container.headers.", "header name"),
        ('env = { "A=B" = "LEAK" }', "container.env.A=B", "variable name"),
        ('env = { "" = "LEAK" }', "container.env.", "variable name"),
    ],
)
def test_a_header_or_variable_that_cannot_be_sent_or_set_is_refused(
    tmp_path: Path, line: str, key: str, says: str
) -> None:
    assert says in refused(tmp_path, _set("container", line), key, "LEAK")


def test_a_tab_in_a_header_value_and_token_names_load(tmp_path: Path) -> None:
    cfg = load(tmp_path, _set("container", 'headers = { "X-Trace_id.v2!" = "a\\tb" }'))
    assert cfg.container.headers == {"X-Trace_id.v2!": "a\tb"}


# ---------------------------------------------------------------- paths that are the wrong kind of file


@pytest.mark.parametrize("path", ['""', '"."', '"cache"'])
def test_a_cache_path_that_is_a_directory_is_refused(tmp_path: Path, path: str) -> None:
    (tmp_path / "cache").mkdir()
    assert "is a directory; name a file" in refused(tmp_path, _set("cache", f"path = {path}"), "cache.path")


@pytest.mark.parametrize("output_dir", ["notes.txt", "notes.txt/runs"])
def test_an_output_dir_that_is_or_lies_in_a_file_is_refused(tmp_path: Path, output_dir: str) -> None:
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    message = refused(tmp_path, _set("run", f'output_dir = "{output_dir}"'), "run.output_dir")
    assert "notes.txt is a file, not a folder" in message


# ---------------------------------------------------------------- the file itself


def test_a_misspelt_section_gets_a_hint(tmp_path: Path) -> None:
    assert "did you mean gepa?" in refused(tmp_path, BASE + "\n[gepaa]\nminibatch_size = 2\n", "gepaa")


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "gepa.toml"
    path.write_bytes(codecs.BOM_UTF8 + BASE.encode())
    assert load_config(path).proposer.backend == "offline"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (BASE.replace("offline", "offlin\xe9").encode("latin-1"), "not UTF-8"),
        (BASE.encode("utf-16"), "UTF-16"),
    ],
)
def test_a_file_that_is_not_utf8_says_so(tmp_path: Path, raw: bytes, says: str) -> None:
    path = tmp_path / "gepa.toml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert says in info.value.message and "save it as UTF-8" in info.value.message


def test_a_config_that_is_a_fifo_or_a_folder_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "gepa.toml"
    os.mkfifo(fifo)  # no writer: reading it would wait for good
    with pytest.raises(ConfigError, match=r"gepa\.toml: the config is a FIFO \(a named pipe\), not a file"):
        load_config(fifo)
    with pytest.raises(ConfigError, match=r"the config is a folder, not a file"):
        load_config(tmp_path)


def test_a_prompt_template_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "prompt.md")
    message = refused(tmp_path, _set("proposer", 'prompt_template = "prompt.md"'), "proposer.prompt_template")
    assert "prompt.md is a FIFO (a named pipe), not a file" in message


# ---------------------------------------------------------------- through the command line


def test_the_cli_refuses_a_secret_before_any_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(_set("container", f'auth_bearer_env = "{SECRET}"'), encoding="utf-8")
    assert main(["gepa", "run", "--config", str(path), "--no-progress"]) == 2
    out = capsys.readouterr()
    assert "container.auth_bearer_env" in out.err and SECRET not in out.err + out.out
    assert not (tmp_path / "runs").exists()
