"""Configs for runs against the local real model, derived from the cookbooks' own ``gepa.toml`` files.

:func:`derived_config` reads a cookbook's real config (an LLM policy and a proposer meant for OpenAI), applies
changes that keep the run small (a few rows, a few rollouts, short policy replies), writes it to a folder, and
:func:`local_env` gives the environment overrides that point its policy and proposer at the local server: the
config file itself names no local endpoint, as a user's would not.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synth_opt.testing.local_model import LocalModelServer

COOKBOOKS = Path(__file__).resolve().parents[2] / "cookbooks"
KEY_ENV = "SYNTH_OPT_LOCAL_MODEL_KEY"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(key)} = {toml_value(item)}" for key, item in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def dump_toml(data: Mapping[str, Any]) -> str:
    """Top-level tables of tables and values, as ``tomllib`` reads them back (tables nested deeper are inline)."""
    lines: list[str] = []

    def table(name: str, body: Mapping[str, Any]) -> None:
        lines.append(f"[{name}]")
        subtables = {key: value for key, value in body.items() if isinstance(value, dict) and key != "config"}
        for key, value in body.items():
            if key not in subtables:
                lines.append(f"{json.dumps(key)} = {toml_value(value)}")
        lines.append("")
        for key, value in subtables.items():
            table(f"{name}.{key}", value)

    for name, body in data.items():
        table(name, body)
    return "\n".join(lines)


def merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied: nested tables merge, ``None`` removes a key."""
    merged = dict(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def derived_config(cookbook: str, folder: Path, changes: Mapping[str, Any]) -> Path:
    """``cookbooks/<cookbook>/gepa.toml`` with its container named by absolute path, its runs under ``folder``,
    no cache, and ``changes`` (see :func:`merge`), written to ``folder/gepa.toml``."""
    source = COOKBOOKS / cookbook / "gepa.toml"
    data = tomllib.loads(source.read_text(encoding="utf-8"))
    assert data["policy"]["type"] == "llm", f"{source} no longer uses an LLM policy"
    command = [
        str(COOKBOOKS / cookbook / part[2:]) if part.startswith("./") else part for part in data["container"]["command"]
    ]
    data = merge(
        data,
        {
            "run": {"output_dir": str(folder / "runs")},
            "container": {"command": command, "cwd": str(COOKBOOKS / cookbook)},
            "cache": {"mode": "off"},
        },
    )
    path = folder / "gepa.toml"
    path.write_text(dump_toml(merge(data, changes)), encoding="utf-8")
    return path


def local_env(server: LocalModelServer, *, proposer: bool = True) -> dict[str, str]:
    """The environment that points a config's policy (and proposer) at ``server``, with its key in
    :data:`KEY_ENV`."""
    env = {
        KEY_ENV: server.api_key,
        "SYNTH_OPTIMIZERS_POLICY_BASE_URL": server.base_url,
        "SYNTH_OPTIMIZERS_POLICY_MODEL": server.model,
        "SYNTH_OPTIMIZERS_POLICY_API_KEY_ENV": KEY_ENV,
    }
    if proposer:
        env |= {
            "SYNTH_OPTIMIZERS_PROPOSER_BASE_URL": server.base_url,
            "SYNTH_OPTIMIZERS_PROPOSER_MODEL": server.model,
            "SYNTH_OPTIMIZERS_PROPOSER_API_KEY_ENV": KEY_ENV,
        }
    return env


def served_usage(calls: list[Any]) -> dict[str, int]:
    """The token totals of the calls the server served (its own ``usage`` objects)."""
    totals = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for call in calls:
        if call.usage is None:
            continue
        usage = call.usage
        prompt = int(usage.get("prompt_tokens", usage.get("input_tokens", 0)))
        completion = int(usage.get("completion_tokens", usage.get("output_tokens", 0)))
        totals["calls"] += 1
        totals["prompt_tokens"] += prompt
        totals["completion_tokens"] += completion
        totals["total_tokens"] += int(usage.get("total_tokens", prompt + completion))
    return totals
