"""The gepa package is pure: no I/O or clock imports, no other synth_opt modules (but the pure named-strategy
registry), no global randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import synth_opt.gepa

GEPA_DIR = Path(synth_opt.gepa.__file__).resolve().parent
FORBIDDEN_MODULES = frozenset(
    {
        "anyio",
        "asyncio",
        "httpx",
        "aiosqlite",
        "sqlite3",
        "time",
        "datetime",
        "socket",
        "subprocess",
        "os",
        "pathlib",
    }
)
# ground-floor modules that are pure themselves (no I/O, no clock, no randomness)
PURE_GROUND_FLOOR = frozenset({"synth_opt.registry"})
FORBIDDEN_CALLS = frozenset({"__import__", "open", "exec", "eval"})


def gepa_files() -> list[Path]:
    return sorted(GEPA_DIR.rglob("*.py"))


def imported_modules(tree: ast.AST, package: str) -> list[str]:
    """Absolute names of every module imported anywhere in ``tree`` (relative imports resolved in ``package``)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.append(module)
            # ``from synth_opt import events`` imports a module too
            names.extend(f"{module}.{alias.name}" for alias in node.names if module == "synth_opt")
    return names


def violations(source: str, package: str = "synth_opt.gepa") -> list[str]:
    tree = ast.parse(source)
    problems: list[str] = []
    for name in imported_modules(tree, package):
        root = name.split(".")[0]
        if root in FORBIDDEN_MODULES:
            problems.append(f"imports {name}")
        if (
            root == "synth_opt"
            and name not in PURE_GROUND_FLOOR
            and name != "synth_opt.gepa"
            and not name.startswith("synth_opt.gepa.")
        ):
            problems.append(f"imports {name} (outside synth_opt.gepa)")
        if name == "importlib" or name.startswith("importlib."):
            problems.append(f"imports {name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "random" and not node.level:
            bad = [alias.name for alias in node.names if alias.name != "Random"]
            if bad:
                problems.append(f"from random import {', '.join(bad)}")
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "random" and alias.asname not in (None, "random"):
                    problems.append(f"import random as {alias.asname}")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
            if node.attr != "Random":
                problems.append(f"uses random.{node.attr} (line {node.lineno})")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            problems.append(f"calls {node.func.id}() (line {node.lineno})")
    return problems


def test_the_package_has_the_expected_modules() -> None:
    names = {path.name for path in gepa_files()}
    assert {
        "__init__.py",
        "acceptance.py",
        "budget.py",
        "candidates.py",
        "frontier.py",
        "sampler.py",
        "selection.py",
        "state.py",
    } <= names


@pytest.mark.parametrize("path", gepa_files(), ids=lambda p: p.relative_to(GEPA_DIR).as_posix())
def test_gepa_module_is_pure(path: Path) -> None:
    relative = path.relative_to(GEPA_DIR).with_suffix("")
    parts = [p for p in relative.parts if p != "__init__"]
    if path.name != "__init__.py":
        parts = parts[:-1]
    package = ".".join(["synth_opt", "gepa", *parts])
    assert violations(path.read_text(encoding="utf-8"), package) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import time", "imports time"),
        ("import os.path", "imports os.path"),
        ("from pathlib import Path", "imports pathlib"),
        ("from datetime import datetime", "imports datetime"),
        ("import asyncio", "imports asyncio"),
        ("from synth_opt.events import bus", "imports synth_opt.events (outside synth_opt.gepa)"),
        ("from synth_opt import config", "imports synth_opt.config (outside synth_opt.gepa)"),
        ("from .. import errors", "imports synth_opt.errors (outside synth_opt.gepa)"),
        ("from ..workspace import db", "imports synth_opt.workspace (outside synth_opt.gepa)"),
        ("import random\nx = random.random()", "uses random.random (line 2)"),
        ("import random\nrandom.shuffle([])", "uses random.shuffle (line 2)"),
        ("from random import shuffle", "from random import shuffle"),
        ("import random as r", "import random as r"),
        ("def f():\n    import subprocess", "imports subprocess"),
        ("open('x')", "calls open() (line 1)"),
    ],
)
def test_the_checker_catches_impurities(source: str, expected: str) -> None:
    assert expected in violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "import random\nrng = random.Random(0)\ndef f(r: random.Random) -> None: ...",
        "from random import Random",
        "from synth_opt.gepa.frontier import instance_fronts",
        "from . import frontier",
        "from .sampler import EpochSampler",
        "import hashlib, json\nfrom dataclasses import dataclass",
    ],
)
def test_the_checker_allows_pure_code(source: str) -> None:
    assert violations(source) == []
