"""Where a tblite agent's commands run, and how a task is scored.

Every rollout gets a fresh temporary directory holding ``work/`` (the task's files; the agent's working directory and
``HOME``) and, after the agent is done, ``checks/`` (the task's pytest file). Each command runs as
``bash -c <command>`` through ``asyncio.create_subprocess_exec``, in its own process group, with a timeout (the whole
group is killed when it expires), its output capped, and a scrubbed environment: ``PATH``, ``HOME`` (the work
directory) and ``LANG``, nothing else, so no secret of the container's environment reaches the agent. Where the
machine allows it the command runs under ``unshare -n`` (a new, empty network namespace: no network at all); this is
probed once per process with ``unshare -n true``, and a machine where that fails runs commands without it. Every
rollout trace says which (``sandbox.network``).

Scoring runs the real pytest on the task's check file: ``python -m pytest -q`` in a subprocess (third-party plugin
autoloading off, so it starts in about 0.2 s), ``TBLITE_WORKDIR`` naming the work directory, and reads the per-check
outcome from pytest's JUnit XML report. Reward = checks passed / checks declared (a check pytest did not report
counts as failed).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tblite.tasks import Task, check_file

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "MAX_COMMAND_TIMEOUT",
    "CheckResult",
    "CommandResult",
    "Sandbox",
    "agent_env",
    "network_isolation",
]

DEFAULT_COMMAND_TIMEOUT = 10.0
MAX_COMMAND_TIMEOUT = 120.0
PYTEST_TIMEOUT = 60.0
OUTPUT_CAP = 16_384
"""Bytes of each stream kept per command (the rest is read and dropped)."""
TRACE_CAP = 2_000
"""Characters of each stream put in a rollout trace."""
NO_UNSHARE_ENV = "TBLITE_NO_UNSHARE"
"""Set to 1 to skip the ``unshare -n`` probe and run commands without network isolation."""


@lru_cache(maxsize=1)
def network_isolation() -> tuple[tuple[str, ...], str]:
    """The argv prefix that cuts the network off, and how the rollout traces describe it (probed once)."""
    if os.environ.get(NO_UNSHARE_ENV) == "1":
        return (), f"none: {NO_UNSHARE_ENV}=1"
    unshare = shutil.which("unshare")
    if unshare is None:
        return (), "none: unshare is not installed"
    try:
        probe = subprocess.run([unshare, "-n", "true"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return (), f"none: unshare -n true failed ({exc})"
    if probe.returncode != 0:
        return (), f"none: unshare -n true exited {probe.returncode} ({probe.stderr.strip()[:200]})"
    return (unshare, "-n"), "unshare -n (no network)"


def agent_env(home: Path) -> dict[str, str]:
    """The whole environment of a command: PATH (this interpreter's folder first, so ``python3`` works), HOME, LANG."""
    path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
    return {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8"}


@dataclass(frozen=True, slots=True)
class CommandResult:
    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "exit_code": self.exit_code,
            "stdout": _clip(self.stdout),
            "stderr": _clip(self.stderr),
            "timed_out": self.timed_out,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    description: str
    passed: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "passed": self.passed, "message": self.message}


def _clip(text: str, cap: int = TRACE_CAP) -> str:
    return text if len(text) <= cap else text[:cap] + f"... [{len(text) - cap} more characters]"


async def _drain(stream: asyncio.StreamReader | None, cap: int) -> bytes:
    """Read a stream to its end, keeping the first ``cap`` bytes."""
    if stream is None:
        return b""
    kept = bytearray()
    while chunk := await stream.read(65_536):
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
    return bytes(kept)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Sandbox:
    """One rollout's temporary directory; use as ``async with Sandbox(task) as box: await box.run(...)``."""

    def __init__(self, task: Task, *, command_timeout: float = DEFAULT_COMMAND_TIMEOUT) -> None:
        self.task = task
        self.command_timeout = command_timeout
        self.prefix, self.network = network_isolation()
        self.root = Path(tempfile.mkdtemp(prefix="tblite-"))
        self.work = self.root / "work"

    async def __aenter__(self) -> Sandbox:
        self.work.mkdir()
        for name, content in self.task.files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(shutil.rmtree, self.root, True)

    async def run(self, command: str) -> CommandResult:
        """``bash -c command`` in the work directory, with the timeout, the scrubbed env and no network."""
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *self.prefix,
            "bash",
            "-c",
            command,
            cwd=self.work,
            env=agent_env(self.work),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        reading = asyncio.gather(_drain(process.stdout, OUTPUT_CAP), _drain(process.stderr, OUTPUT_CAP))
        timed_out = False
        try:
            await asyncio.wait_for(process.wait(), self.command_timeout)
        except TimeoutError:
            timed_out = True
            _kill_group(process.pid)
            await process.wait()
        _kill_group(process.pid)  # anything the command left running in the background goes too
        try:
            out, err = await asyncio.wait_for(reading, 5.0)
        except TimeoutError:  # a grandchild escaped the group and holds the pipes: give up on its output
            reading.cancel()
            out, err = b"", b""
        return CommandResult(
            command=command,
            exit_code=None if timed_out else process.returncode,
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace")
            + (f"\n[killed: the command ran past {self.command_timeout:g} s]" if timed_out else ""),
            timed_out=timed_out,
            seconds=time.monotonic() - started,
        )

    async def score(self) -> list[CheckResult]:
        """Run the task's pytest file against the work directory; one result per declared check."""
        checks = self.root / "checks"
        checks.mkdir(exist_ok=True)
        test_file = checks / "test_task.py"
        test_file.write_text(check_file(self.task))
        (checks / "pytest.ini").write_text("[pytest]\n")
        report = checks / "report.xml"
        env = agent_env(self.work) | {
            "TBLITE_WORKDIR": str(self.work),
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        process = await asyncio.create_subprocess_exec(
            *self.prefix,
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(checks),
            "-c",
            str(checks / "pytest.ini"),
            f"--junitxml={report}",
            str(test_file),
            cwd=self.work,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), PYTEST_TIMEOUT)
        except TimeoutError:
            _kill_group(process.pid)
            await process.wait()
            output = b"pytest timed out"
        outcomes = _junit_outcomes(report)
        results = []
        for check in self.task.checks:
            if check.name in outcomes:
                passed, message = outcomes[check.name]
            else:
                passed, message = False, "not reported by pytest: " + _clip(output.decode(errors="replace"), 500)
            results.append(CheckResult(check.name, check.description, passed, message))
        return results


def _junit_outcomes(report: Path) -> dict[str, tuple[bool, str]]:
    """test name -> (passed, failure message) from a JUnit XML report (empty when there is none)."""
    try:
        root = ElementTree.parse(report).getroot()
    except (OSError, ElementTree.ParseError):
        return {}
    outcomes: dict[str, tuple[bool, str]] = {}
    for case in root.iter("testcase"):
        name = case.get("name", "")
        problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if problem is None:
            outcomes[name] = (True, "")
        else:
            message = problem.get("message") or (problem.text or "").strip().splitlines()[-1:] or [problem.tag]
            outcomes[name] = (False, _clip(message if isinstance(message, str) else message[0], 300))
    return outcomes
