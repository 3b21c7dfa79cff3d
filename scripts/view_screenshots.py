"""The run browser's screenshots in docs/: a small offline run (a Python task launched by ``[container] task``, the
offline proposer, heldout rows), ``synth-opt view`` on it, and Debian's chromium through Playwright.

    .venv/bin/python scripts/view_screenshots.py            # writes docs/view_*.png
    .venv/bin/python scripts/view_screenshots.py --out DIR  # elsewhere

``tests/browser/test_view.py`` uses the same run and server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]

TASK = '''
from synth_opt.task import task

WORDS = "apple banana cherry grape lemon mango melon peach pear plum fig kiwi lime date".split()


@task(
    rows=[{"word": w} for w in WORDS[:10]],
    heldout=[{"id": f"h{i}", "word": w} for i, w in enumerate(WORDS[7:])],  # three of them seen in training
    seed="Name fruit. <script>window.pwned = 1</script>",
)
def names(candidate, row):
    """Name every fruit on the list."""
    found = row["word"] in candidate["prompt"]
    return float(found), "" if found else f"Name <b>{row['word']}</b>."
'''

CONFIG = """
[container]
task = "fruit:names"

[dataset]
train_ids = {{ count = 10 }}
pareto_ids = {{ count = 6 }}
heldout_ids = {{ count = 4 }}

[proposer]
backend = "offline"

[gepa]
reuse_evaluations = {reuse}
max_train_rollouts = {budget}
max_heldout_rollouts = 8
minibatch_size = 2
"""


def write_run(folder: Path, *, budget: int = 80, slow: float = 0.0, reuse: bool = True) -> Path:
    """The task and config in ``folder``; ``slow`` seconds of sleep per rollout (a run to watch live; with
    ``reuse=False`` it spends its budget, rather than stopping once the proposer repeats known candidates)."""
    folder.mkdir(parents=True, exist_ok=True)
    task = TASK
    if slow:
        task = task.replace("def names(candidate, row):", f"async def names(candidate, row):\n    await sleep({slow})")
        task = "from asyncio import sleep\n" + task
    (folder / "fruit.py").write_text(task)
    (folder / "fruit.toml").write_text(CONFIG.format(budget=budget, reuse=str(reuse).lower()))
    return folder / "fruit.toml"


def make_runs(folder: Path) -> Path:
    """A finished run under ``folder/runs`` (``synth-opt gepa run`` in a process of its own); the runs folder."""
    config = write_run(folder)
    subprocess.run(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(config), "--no-progress"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return folder / "runs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def view_server(runs: Path) -> Iterator[str]:
    """``synth-opt view --runs runs`` in a process of its own; its base URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "synth_opt", "view", "--runs", str(runs), "--port", str(port)],
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else "view exited"
            try:
                if httpx.get(base + "/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("synth-opt view did not come up")
            time.sleep(0.05)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
        if server.stderr is not None:
            server.stderr.close()


def take_screenshots(browser: Any, base: str, runs: Path, out: Path) -> list[Path]:
    """The three pages of the first run, as PNGs in ``out``."""
    import json

    manifest = json.loads(next(runs.glob("*/result_manifest.json")).read_text())
    run_id = Path(manifest["manifest_path"]).parent.name
    best = manifest["best_candidate_id"]
    out.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    shots = []
    for name, path in (
        ("view_runs.png", "/"),
        ("view_run.png", f"/runs/{run_id}"),
        ("view_candidate.png", f"/runs/{run_id}/candidates/{best}"),
    ):
        page.goto(base + path)
        page.screenshot(path=str(out / name), full_page=True)
        shots.append(out / name)
    page.close()
    return shots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where the PNGs go (docs/)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        print("chromium is not installed: make chromium", file=sys.stderr)
        return 2
    import tempfile

    with tempfile.TemporaryDirectory(prefix="synth-opt-view-") as folder:
        runs = make_runs(Path(folder))
        with view_server(runs) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            for shot in take_screenshots(browser, base, runs, Path(args.out)):
                print(shot)
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
