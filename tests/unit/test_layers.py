"""The layers stay honest by machine: lanes <- actors <- pipeline <- run, and nothing imports the CLI or the service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "synth_opt"

# package -> synth_opt modules it must not import
FORBIDDEN = {
    "lanes": ("synth_opt.actors", "synth_opt.pipeline", "synth_opt.run", "synth_opt.gepa", "synth_opt.cli"),
    "actors": ("synth_opt.pipeline", "synth_opt.run", "synth_opt.cli", "synth_opt.service", "synth_opt.workspace"),
    "gepa": ("synth_opt.actors", "synth_opt.lanes", "synth_opt.pipeline", "synth_opt.run", "synth_opt.events"),
    "events": ("synth_opt.actors", "synth_opt.pipeline", "synth_opt.run", "synth_opt.cli", "synth_opt.service"),
    "container": ("synth_opt.actors", "synth_opt.pipeline", "synth_opt.run", "synth_opt.cli", "synth_opt.gepa"),
    "proposers": ("synth_opt.actors", "synth_opt.pipeline", "synth_opt.run", "synth_opt.cli", "synth_opt.gepa"),
    "cache": ("synth_opt.actors", "synth_opt.pipeline", "synth_opt.run", "synth_opt.cli"),
    "workspace": ("synth_opt.actors", "synth_opt.pipeline", "synth_opt.run", "synth_opt.cli"),
}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_does_not_import_the_layers_above_it(package: str) -> None:
    for path in sorted((SRC / package).rglob("*.py")):
        bad = [name for name in imports(path) if name.startswith(FORBIDDEN[package])]
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_nothing_imports_the_cli() -> None:
    for path in modules():
        if path.name in ("cli.py", "__main__.py"):
            continue
        assert not any(name.startswith("synth_opt.cli") for name in imports(path)), path


def test_only_the_cli_and_the_service_import_the_service() -> None:
    for path in modules():
        if path.name == "cli.py" or "service" in path.relative_to(SRC).parts or path.name == "__init__.py":
            continue
        assert not any(name.startswith("synth_opt.service") for name in imports(path)), path


def test_no_module_imports_the_package_root() -> None:
    """The root re-exports the public surface (the run, and so nearly everything): a module that imported it would
    run back up the layers. The version has a module of its own for that reason."""
    offenders = [
        str(path.relative_to(SRC))
        for path in modules()
        if path.name != "__init__.py" or path.parent != SRC
        if "synth_opt" in imports(path)
    ]
    assert offenders == []
