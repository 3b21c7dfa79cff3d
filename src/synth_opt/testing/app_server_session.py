"""Talk to an app-server program the way the codex client does, for tests of offline proposers.

:func:`converse` starts the program, sends ``initialize``, ``initialized``, ``thread/start``, one ``turn/start``
holding ``turn_text`` and then any ``extra`` messages, closes its input, and returns every message it printed,
parsed. A program that exits with a non-zero code is an ``AssertionError`` carrying its stderr.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

__all__ = ["converse"]


def converse(
    command: Sequence[str],
    turn_text: str,
    *,
    extra: Sequence[dict[str, Any]] = (),
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    messages = [
        {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "t", "title": "t", "version": "0"}}},
        {"method": "initialized", "params": {}},
        {"id": 2, "method": "thread/start", "params": {"cwd": "/tmp", "approvalPolicy": "never"}},
        {
            "id": 3,
            "method": "turn/start",
            "params": {"threadId": "thr-1", "input": [{"type": "text", "text": turn_text}]},
        },
        *extra,
    ]
    stdin = "".join(json.dumps(message) + "\n" for message in messages)
    done = subprocess.run(list(command), input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited with {done.returncode}: {done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines()]
