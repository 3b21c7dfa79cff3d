"""What a config submitted to the service may touch: its paths stay under the service's roots, and it starts no
process of its choosing unless the service allows commands.

Without this, anyone who can reach the API could write a run into any directory the service can write (``output_dir
= "/home/me/.ssh"``) or run any program (``container.command = ["sh", "-c", ...]``). The rules:

- ``run.output_dir`` (and so the run directory), the cache file, ``container.cwd``, ``proposer.codex_home``,
  ``proposer.prompt_template`` (its text goes to the proposer) and a ``sqlite:///`` MLflow store must lie under
  ``--config-root`` or ``--runs-root`` (default: the config root), symlinks resolved;
- ``container.command``, ``container.task`` (it imports and runs the module), a ``proposer.command`` other than the
  default ``codex app-server``, and codex overrides in ``proposer.config`` that make codex start programs or leave
  its sandbox (``mcp_servers``, ``notify``, ``sandbox_mode``, ...) are refused unless the service runs with
  ``--allow-commands``; even then a command's executable, when it is a path, must lie under a root (``{python}``,
  this interpreter, and names looked up on ``PATH`` are accepted).

A refused config is a :class:`ConfinementError` (HTTP 400) naming the key. It is checked when submitted and again when
a worker executes it, since the file may have changed in between.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synth_opt.config import GepaConfig, ProposerSection, load_config
from synth_opt.errors import ConfigError, SynthOptimizerError
from synth_opt.service.errors import ConfinementError

__all__ = ["CODEX_COMMAND_KEYS", "Confinement", "config_inside_root", "load_submitted"]

# codex settings (top-level ``-c`` keys) that start programs, widen the sandbox or pick a profile that may do either
CODEX_COMMAND_KEYS = frozenset(
    {
        "mcp_servers",
        "notify",
        "sandbox_mode",
        "sandbox_workspace_write",
        "approval_policy",
        "shell_environment_policy",
        "profile",
        "profiles",
    }
)
_DEFAULT_PROPOSER_COMMAND = ProposerSection.model_fields["command"].get_default(call_default_factory=True)


def config_inside_root(config_path: str | Path, config_root: Path) -> Path:
    """``config_path`` resolved (symlinks included) against ``config_root``; a ConfigError naming ``config_path``
    if it leaves the root or cannot be resolved (a NUL byte, a symlink loop, an unreadable directory)."""
    root = config_root.expanduser().resolve()
    try:
        resolved = (root / Path(config_path).expanduser()).resolve()
    except RuntimeError as error:  # Python 3.11's Path.resolve reports a symlink loop so
        raise ConfigError(
            f"config_path {str(config_path)!r} cannot be resolved: {error}; replace the symlink loop with a link to "
            "a config file under the config root, or submit the file's own path",
            field="config_path",
        ) from None
    except (ValueError, OSError) as error:
        raise ConfigError(
            f"config_path {str(config_path)!r} cannot be resolved: {error}; submit the path of a config file under "
            "the config root",
            field="config_path",
        ) from None
    if not resolved.is_relative_to(root):
        raise ConfigError(
            f"config_path {config_path} resolves to {resolved}, outside the service's config root {root}; "
            "submit a config that lies under the config root (--config-root)",
            field="config_path",
            config_root=str(root),
        )
    return resolved


def load_submitted(config_path: str | Path, shown: str | Path | None = None) -> GepaConfig:
    """Load a submitted config (a worker thread's work): whatever goes wrong is a ConfigError naming ``config_path``
    (``shown``: as the caller gave it), never an unexpected error, since the file is user input."""
    try:
        return load_config(config_path)
    except SynthOptimizerError:
        raise
    except Exception as error:  # e.g. a symlink loop or a NUL byte in a path the config names
        named = shown if shown is not None else config_path
        raise ConfigError(
            f"config_path {str(named)!r}: the config {config_path} could not be loaded ({type(error).__name__}: "
            f"{error}); fix it (a path it names may be a symlink loop or hold a NUL byte) and submit it again",
            field="config_path",
            file=str(config_path),
        ) from None


@dataclass(frozen=True, slots=True)
class Confinement:
    """The service's rules for submitted configs (see the module docstring)."""

    config_root: Path
    runs_root: Path | None = None
    allow_commands: bool = False

    @classmethod
    def of(cls, config_root: Path, runs_root: Path | None = None, *, allow_commands: bool = False) -> Confinement:
        """Roots resolved (symlinks included); the runs root defaults to the config root."""
        root = Path(os.path.realpath(config_root.expanduser()))
        runs = Path(os.path.realpath(runs_root.expanduser())) if runs_root is not None else root
        return cls(root, runs, allow_commands)

    @property
    def roots(self) -> tuple[Path, ...]:
        runs = self.runs_root or self.config_root
        return (self.config_root,) if runs == self.config_root else (self.config_root, runs)

    def describe(self) -> dict[str, Any]:
        return {
            "config_root": str(self.config_root),
            "runs_root": str(self.runs_root or self.config_root),
            "allow_commands": self.allow_commands,
        }

    def config_path(self, config_path: str | Path) -> Path:
        return config_inside_root(config_path, self.config_root)

    def check(self, config: GepaConfig) -> None:
        """Raise ConfinementError naming every key of ``config`` the service does not allow."""
        problems = list(self.problems(config))
        if problems:
            shown = str(config.source_path)
            lines = [f"{shown}: {key}: {message}" for key, message in problems]
            raise ConfinementError(
                "\n".join(lines),
                field=problems[0][0],
                keys=[key for key, _ in problems],
                file=shown,
                **self.describe(),
            )

    def problems(self, config: GepaConfig) -> Iterator[tuple[str, str]]:
        paths: list[tuple[str, Path | None]] = [
            ("run.output_dir", config.output_dir),
            ("run.output_dir", config.run_dir()),
            ("cache.path", config.cache_path()),
            ("container.cwd", config.container.cwd),
            ("proposer.codex_home", config.proposer.codex_home),
            ("proposer.prompt_template", config.proposer.prompt_template),  # its text is sent to the proposer
            ("tracking.mlflow_tracking_uri", _sqlite_path(config.tracking.mlflow_tracking_uri)),
        ]
        reported: set[str] = set()
        for key, path in paths:
            if path is not None and key not in reported and not self._inside(path):
                reported.add(key)
                yield key, f"{path} lies outside the service's roots ({self._roots_text()}); {self._path_advice()}"
        container_command = config.container.command
        proposer_command = list(config.proposer.command)
        if not self.allow_commands:
            if container_command:
                yield "container.command", self._no_commands("launch a container")
            if config.container.task is not None:
                yield "container.task", self._no_commands("run a task's Python code")
            if proposer_command != _DEFAULT_PROPOSER_COMMAND:
                yield "proposer.command", self._no_commands("choose the proposer's program")
            for key in _codex_command_keys(config.proposer.config):
                yield f"proposer.config.{key}", self._no_commands("change which programs codex may start")
            return
        for key, command in (("container.command", container_command), ("proposer.command", proposer_command)):
            executable = _executable_path(command)
            if executable is not None and not self._inside(executable):
                yield (
                    key,
                    f"its executable {executable} lies outside the service's roots ({self._roots_text()}); use "
                    "{python}, a program on PATH, or one under a root",
                )

    def _inside(self, path: Path) -> bool:
        try:
            real = Path(os.path.realpath(path))
        except (ValueError, OSError):  # a NUL byte: not a path under a root
            return False
        return any(real.is_relative_to(root) for root in self.roots)

    def _roots_text(self) -> str:
        return " or ".join(str(root) for root in self.roots)

    @staticmethod
    def _path_advice() -> str:
        return "use a path under the config root (--config-root) or the runs root (--runs-root)"

    @staticmethod
    def _no_commands(what: str) -> str:
        return (
            f"a submitted config may not {what}: this service was started without --allow-commands; use "
            "container.url (a standing container) instead, or restart the service with --allow-commands if every "
            "client that can reach it may run programs on this machine"
        )


def _codex_command_keys(overrides: Mapping[str, Any]) -> list[str]:
    """The ``proposer.config`` keys (dotted or nested) that reach a codex setting in CODEX_COMMAND_KEYS."""
    return [key for key in overrides if str(key).split(".", 1)[0] in CODEX_COMMAND_KEYS]


def _executable_path(command: Sequence[str] | None) -> Path | None:
    """The executable of ``command`` when it is a path (not ``{python}``, this interpreter or a bare name)."""
    if not command:
        return None
    first = command[0]
    if first == "{python}" or ("/" not in first and os.sep not in first):
        return None
    if os.path.realpath(first) == os.path.realpath(sys.executable):
        return None
    return Path(first)


def _sqlite_path(uri: str | None) -> Path | None:
    """The file a ``sqlite:///`` tracking URI writes (made absolute by the config), else None."""
    if uri is None or not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite://"))
