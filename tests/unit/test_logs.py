"""Log lines of a failure show a plain traceback: never a frame's local variables (a config's URLs and keys, a
request's headers), whichever of the package's log configurations is in force."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys
{setup}
from synth_opt.logs import get_logger

def handle(request_headers):
    secret = "sk-live-{marker}"
    raise RuntimeError("the run failed")

try:
    handle({{"authorization": "Bearer tok-{marker}"}})
except RuntimeError:
    get_logger("synth_opt.service").exception("the request failed unexpectedly", request_id="req-1")
"""

SETUPS = {
    "default": "",
    "console": "from synth_opt.progress import _configure_logging; _configure_logging('console', 'info')",
    "json": "from synth_opt.progress import _configure_logging; _configure_logging('json', 'info')",
}


@pytest.mark.parametrize("configuration", sorted(SETUPS))
def test_a_logged_exception_shows_its_traceback_but_no_local_variables(configuration: str) -> None:
    marker = "e2b7c1"
    script = SCRIPT.format(setup=SETUPS[configuration], marker=marker)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "the request failed unexpectedly" in done.stderr and "RuntimeError: the run failed" in done.stderr
    assert "req-1" in done.stderr
    assert marker not in done.stderr, done.stderr
