"""``scripts/deploy_local.py``, the deployment of ``docs/deploy.md`` as processes: a throwaway PostgreSQL, two
standing Banking77 container replicas, an API host and two worker hosts that share only the database and the
container URLs. Both submitted optimizations complete, each in the run folder of the host that ran it, and the
first one's events reach the API through the database."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from synth_opt.testing.postgres import find_pg_bin

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "deploy_local.py"


def test_the_local_deployment_runs_two_optimizations_over_three_hosts(tmp_path: Path) -> None:
    find_pg_bin()  # a missing server is this error, not a hang
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", "2", "--keep", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    finished = re.findall(r"(req-\w+) banking77-\d: completed on (\S+), best (\S+), run directory (\S+)", done.stdout)
    assert len(finished) == 2, done.stdout
    for _, host, best, run_dir in finished:
        assert Path(run_dir).parent == tmp_path / "hosts" / host / "runs"  # the host's own folder
        assert (Path(run_dir) / "result_manifest.json").is_file()
        assert float(best) > 0
    streamed = re.search(r"(\d+) events of req-\w+ streamed through the database", done.stdout)
    assert streamed is not None and int(streamed.group(1)) > 10
