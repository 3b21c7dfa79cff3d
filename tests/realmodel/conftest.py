"""Tests against a real model: the session's ``local_model`` server (``tests/conftest.py``).

``served_calls()`` returns the calls the server answered since the test began, each with the usage it reported.
The server's 2 slots decode on the machine's 2 cores: keep these tests to a few short completions each (the
whole directory has a budget of a few minutes).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from synth_opt.testing.local_model import LocalModelServer, ServedCall


@pytest.fixture
def served_calls(local_model: LocalModelServer) -> Callable[[], list[ServedCall]]:
    mark = local_model.mark()
    return lambda: local_model.calls(since=mark)
