"""A task written as a Python function, through the real path: the README's ten-line example run exactly as
printed (``synth-opt gepa run`` launching ``synth-opt task serve`` as the run's container), the server as a
subprocess of its own, and the config's checks of ``[container] task``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from synth_opt.config import load_config
from synth_opt.errors import ConfigError
from tests.integration.test_service_server import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
SYNTH_OPT = [sys.executable, "-m", "synth_opt"]


def readme_example() -> tuple[str, str, str]:
    """The quick tour's first section: its Python file, its config and the command that runs them."""
    section = README.read_text().split("### A task in ten lines", 1)[1].split("\n### ", 1)[0]
    python = re.search(r"```python\n(.*?)```", section, re.S)
    toml = re.search(r"```toml\n(.*?)```", section, re.S)
    command = re.search(r"`(synth-opt gepa run --config fruit\.toml)`", section)
    assert python and toml and command, "the README's ten-line example is missing a part"
    return python.group(1), toml.group(1), command.group(1)


def test_the_readmes_ten_line_example_runs_offline_as_printed(tmp_path: Path) -> None:
    source, config, command = readme_example()
    assert len(source.strip().splitlines()) <= 10
    (tmp_path / "fruit.py").write_text(source)
    (tmp_path / "fruit.toml").write_text(config)
    argv = [*SYNTH_OPT, *command.split()[1:], "--no-progress"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"seed 0\.0000\s+best 1\.0000", done.stdout), done.stdout
    manifest = json.loads((tmp_path / "runs" / "latest" / "result_manifest.json").read_text())
    assert manifest["stop_reason"] == "score_threshold"
    best = manifest["best_candidate"]["prompt"]
    assert all(f"Name {fruit}." in best for fruit in ("apple", "banana", "plum", "fig")), best
    events = (tmp_path / "runs" / "latest" / "events.jsonl").read_text()
    assert '"container.launched"' in events  # served by its own process, not imported by the optimizer
    assert "fruit" not in sys.modules


def test_task_serve_runs_a_task_as_a_standing_container(tmp_path: Path) -> None:
    (tmp_path / "flaky.py").write_text(
        "from synth_opt.task import task\n\n"
        "@task(rows=[{'n': 1}, {'n': 0}], heldout=[{'n': 2}], seed={'system': 'Divide.'})\n"
        "async def divide(candidate, row):\n"
        "    return 1 / row['n'], 'divided'\n"
    )
    port = free_port()
    server = subprocess.Popen(
        [*SYNTH_OPT, "task", "serve", "flaky:divide", "--port", str(port)],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            wait_for_health(http, server)
            assert http.get("/program").json()["seed_candidate"] == {"system": "Divide."}
            assert http.get("/taskset").json()["splits"]["test"]["task_ids"] == ["heldout-0"]
            body = {"rollout_id": "r1", "task_id": "0", "candidate": {"system": "x"}}
            ok = http.post("/rollout", json=body).json()
            assert ok["status"] == "completed" and ok["reward_info"]["outcome_reward"] == 1.0
            failed = http.post("/rollout", json={**body, "rollout_id": "r2", "task_id": "1"})
            assert failed.status_code == 200 and failed.json()["status"] == "failed"
            assert failed.json()["error"] == "ZeroDivisionError: division by zero"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
        assert server.stderr is not None
        server.stderr.close()


def wait_for_health(http: httpx.Client, server: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert server.poll() is None, server.stderr and server.stderr.read().decode()
        try:
            if http.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail("the task server did not come up")


def test_task_serve_refuses_a_public_address_without_a_token_and_names_a_missing_module(tmp_path: Path) -> None:
    public = subprocess.run(
        [*SYNTH_OPT, "task", "serve", "x:y", "--host", "0.0.0.0"], cwd=tmp_path, capture_output=True, text=True
    )
    assert public.returncode == 2 and "--token-env" in public.stderr
    missing = subprocess.run(
        [*SYNTH_OPT, "task", "serve", "nowhere:task"], cwd=tmp_path, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no module named 'nowhere'" in missing.stderr
    threads = subprocess.run([*SYNTH_OPT, "task", "serve", "x:y", "--threads", "0"], capture_output=True, text=True)
    assert threads.returncode == 2 and "--threads 0: must be at least 1" in threads.stderr


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        ('task = "fruit:mentions"\nurl = "http://127.0.0.1:9"', "drop container.url"),
        ('task = "fruit:mentions"\ncommand = ["x"]', "drop container.command"),
        ('task = "fruit mentions"', "is not module:attribute"),
    ],
)
def test_config_checks_container_task(tmp_path: Path, container: str, expected: str) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(
        f'[container]\n{container}\n[dataset]\ntrain_ids = {{count = 3}}\n[proposer]\nbackend = "offline"\n'
    )
    with pytest.raises(ConfigError, match=r"container\.task") as raised:
        load_config(path)
    assert expected in str(raised.value)


def test_a_task_config_launches_from_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(
        '[container]\ntask = "fruit:mentions"\n[dataset]\ntrain_ids = {count = 3}\n[proposer]\nbackend = "offline"\n'
    )
    command = load_config(path).container.launch_command()
    assert command == ["{python}", "-m", "synth_opt", "task", "serve", "fruit:mentions", "--port", "{port}"]
