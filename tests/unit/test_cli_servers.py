"""The serving commands (``view``, ``task serve``, ``gepa service``) and the feed readers (``events replay`` and
``compare``) as real processes: a port out of range is a usage error (exit 2), a port in use is one ``error[...]``
line naming the address (exit 2), a server that does not start is one line (exit 1), and a directory given as a
feed is a config error saying which file to pass; never a traceback or uvicorn's exit code 3."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from synth_opt.errors import RunFailedError
from synth_opt.listening import serve_until_stopped


def synth_opt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synth_opt", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def one_error_line(done: subprocess.CompletedProcess[str], code: int, kind: str) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error[")]
    assert len(lines) == 1 and lines[0].startswith(f"error[{kind}]"), done.stderr
    assert "Traceback" not in done.stderr and "unexpected" not in done.stderr, done.stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize(
    "command",
    [
        ("view", "--runs", "runs", "--port", "99999"),
        ("view", "--runs", "runs", "--port", "-1"),
        ("task", "serve", "tasks:task", "--port", "99999"),
        ("task", "serve", "tasks:task", "--port", "-1"),
        ("gepa", "service", "--db", "service.sqlite", "--bind", "127.0.0.1:99999"),
    ],
)
def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path, command: tuple[str, ...]) -> None:
    done = synth_opt(*command, cwd=tmp_path)
    line = one_error_line(done, 2, "usage_error" if command[0] != "gepa" else "config_error")
    assert "65535" in line, line


def test_a_port_in_use_is_one_line_naming_the_address(tmp_path: Path, busy_port: int) -> None:
    (tmp_path / "runs").mkdir()
    address = f"127.0.0.1:{busy_port}"
    for command in (
        ("view", "--runs", "runs", "--port", str(busy_port)),
        ("task", "serve", "tasks:task", "--port", str(busy_port)),
        ("gepa", "service", "--db", "service.sqlite", "--bind", address),
    ):
        line = one_error_line(synth_opt(*command, cwd=tmp_path), 2, "usage_error")
        assert f"{address} is already in use" in line and "choose another port" in line, line


def test_a_server_that_does_not_start_is_a_run_failed_error() -> None:
    def uvicorn_gave_up() -> int:
        raise SystemExit(3)  # what uvicorn does when it cannot bind or its start-up fails

    with pytest.raises(RunFailedError, match=r"127\.0\.0\.1:1 \(--bind 127\.0\.0\.1:1\) did not start"):
        serve_until_stopped(uvicorn_gave_up, "127.0.0.1:1", "--bind 127.0.0.1:1")
    with pytest.raises(SystemExit):  # any other exit is left alone
        serve_until_stopped(lambda: sys.exit(0), "127.0.0.1:1", "--bind 127.0.0.1:1")


def test_a_directory_given_as_an_event_feed_says_which_file_to_pass(tmp_path: Path) -> None:
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "latest").symlink_to("x")
    replay = one_error_line(synth_opt("events", "replay", "--events", "runs/latest", cwd=tmp_path), 2, "config_error")
    assert "is a directory" in replay and "runs/<id>/events.jsonl" in replay, replay
    compare = synth_opt("events", "compare", "--left", "runs/x", "--right", "runs/latest", cwd=tmp_path)
    assert "is a directory" in one_error_line(compare, 2, "config_error")
