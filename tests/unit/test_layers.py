"""The import contracts live in ``pyproject.toml`` and ``lint-imports`` checks them (``make lint``). What it cannot
check is that the package map in README's "How it works" says the same thing: this test holds the two together."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAP_HEADER = re.compile(r"^layer\s+module\s+what it is$")
MAP_ROW = re.compile(r"^(\d+)\s+((?:\S+(?:\.py|/)\s*)+)")


def contract_layers() -> dict[str, int]:
    """Module -> layer number (1 is the top) in the ``layers`` contract."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [contract for contract in config["contracts"] if contract["id"] == "layers"]
    assert layers["containers"] == ["synth_opt"] and layers["exhaustive"] is True
    return {
        name.strip(): number
        for number, layer in enumerate(layers["layers"], start=1)
        for name in re.split(r"[|:]", layer)
    }


def readme_layers() -> dict[str, int]:
    """Module -> layer number in README's package map (``3      service/  ...``, several modules on a row allowed)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if MAP_HEADER.match(line))
    found: dict[str, int] = {}
    for line in lines[start + 1 :]:
        if line.startswith("```"):
            break
        if match := MAP_ROW.match(line):
            for name in match.group(2).split():
                found[name.removesuffix(".py").removesuffix("/")] = int(match.group(1))
    return found


def test_the_readme_map_is_the_layers_contract() -> None:
    assert readme_layers() == contract_layers()
