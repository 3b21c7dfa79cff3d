"""Fixtures shared by every test directory.

``anyio_backend``: every async test runs on asyncio (synth_opt's runtime).

``local_model``: one real model server (llama.cpp's ``llama-server`` with SmolLM2-135M-Instruct, behind a proxy
that records the usage the server reported for every call; see :mod:`synth_opt.testing.local_model`) for the whole
test run, started by the first test that asks for it. Without ``make local-model`` having run, its tests are
skipped, or fail under CI (``CI=true``), where ``make test`` builds it first.

``postgres_server``: one throwaway PostgreSQL cluster (:mod:`synth_opt.testing.postgres`) for the whole test run,
started by the first test that asks for it; ``postgres_url``: a new empty database on it for one test, dropped
after. Without PostgreSQL's server binaries the tests are skipped, or fail under CI, where ``make test`` installs
them first (``make postgres``).

``make test`` runs the suite on two pytest-xdist workers. Each worker is a session of its own, and so starts its own
model server and cluster when one of its tests first asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from synth_opt.testing.local_model import LocalModelMissingError, LocalModelServer, find_local_model
from synth_opt.testing.postgres import PostgresServer, PostgresUnavailableError, throwaway_postgres

REPLY_LIMIT = 256


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def local_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModelServer]:
    """The started server: ``base_url`` (ends in ``/v1``), ``api_key``, ``model``; ``mark()`` and
    ``calls(since=...)`` for the usage the server reported, also in ``usage_log`` (JSON lines)."""
    try:
        paths = find_local_model()
    except LocalModelMissingError as exc:
        _missing(f"the local model is missing: {exc}")
    # --n-predict bounds a reply whose request sets no limit (codex sets none): a 135M model may ramble for
    # thousands of tokens; every other client here sets its own max_tokens
    server = LocalModelServer(
        paths, work_dir=tmp_path_factory.mktemp("local-model"), extra_args=("--n-predict", str(REPLY_LIMIT))
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        with throwaway_postgres() as server:
            yield server
    except PostgresUnavailableError as exc:
        _missing(f"PostgreSQL is unavailable: {exc}")


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
