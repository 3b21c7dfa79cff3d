"""The command line's surface: ``--version``, help text on every option, and output into a closed pipe."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synth_opt import __version__
from synth_opt.cli import _parser, main


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _parsers(sub)
    return found


def test_every_option_and_command_has_help_text() -> None:
    missing = []
    for parser in _parsers(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {choice.dest for choice in action._choices_actions if choice.help}
                missing += [f"{parser.prog} {name}" for name in action.choices if name not in helped]
            elif action.option_strings and (not action.help or action.help == argparse.SUPPRESS):
                missing.append(f"{parser.prog} {'/'.join(action.option_strings)}")
    assert not missing, f"options without help text: {missing}"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"synth-opt {__version__}"


def test_events_replay_into_a_closed_pipe_exits_0_quietly(tmp_path: Path) -> None:
    feed = tmp_path / "events.jsonl"
    lines: list[dict[str, object]] = [
        {
            "sequence_number": n,
            "ts": "2026-11-26T01:02:03.456Z",
            "type": "seed.scored",
            "message": f"event {n} " + "x" * 200,
            "fields": {},
            "lane": None,
        }
        for n in range(1, 5001)
    ]
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": ""}
    pipeline = f'{sys.executable} -m synth_opt events replay --events {feed} | head -1; echo "${{PIPESTATUS[0]}}" >&2'
    done = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.count("\n") == 1 and "event 1 " in done.stdout
    *complaints, status = done.stderr.strip().splitlines()
    assert status == "0" and complaints == [], done.stderr


def test_a_ctrl_c_while_a_finished_commands_output_is_written_exits_130_with_a_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    assert main(["--version"]) == 0
    with monkeypatch.context() as patched:
        patched.setattr(sys.stdout, "flush", interrupted)  # the Ctrl-C lands in main's last flush
        code = main(["--version"])
    assert code == 130  # never an uncaught KeyboardInterrupt (a death by SIGINT, exit -2)
    assert "error[run_cancelled]: interrupted by Ctrl-C" in capsys.readouterr().err
