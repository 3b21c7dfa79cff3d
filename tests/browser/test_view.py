"""``synth-opt view`` in a real headless browser (Debian's chromium through Playwright): the pages of a finished run
and of a running one, checked the way a person would check them (the lineage nodes are there, the diff marks the
change, the numbers are the manifest's), and a candidate text holding ``<script>`` shown, not run."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "view_screenshots.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("view_screenshots", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shots = load_script()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """A finished run, and the view serving its runs folder: (base URL, runs folder, manifest)."""
    runs = shots.make_runs(tmp_path_factory.mktemp("finished"))
    manifest = json.loads(next(runs.glob("*/result_manifest.json")).read_text())
    with shots.view_server(runs) as base:
        yield base, runs, manifest


def run_id_of(manifest: dict[str, Any]) -> str:
    return Path(manifest["manifest_path"]).parent.name


def test_the_runs_page_lists_the_run_with_the_manifests_numbers(chromium: Any, finished: Any) -> None:
    base, _, manifest = finished
    page = chromium.new_page()
    page.goto(base + "/")
    row = page.locator("#runs tr", has_text=run_id_of(manifest))
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "completed"
    assert cells[2:6] == [
        f"{manifest[key]:.4f}"
        for key in ("seed_train_score", "best_train_score", "seed_heldout_score", "best_heldout_score")
    ]
    assert cells[6:8] == [str(manifest["proposals"]), str(manifest["accepted"])]
    page.close()


def test_the_run_page_shows_the_lineage_chart_heldout_and_decisions(chromium: Any, finished: Any) -> None:
    base, runs, manifest = finished
    run_id = run_id_of(manifest)
    with sqlite3.connect(runs / run_id / "workspace.sqlite") as db:
        candidates = {row[0] for row in db.execute("SELECT candidate_id FROM candidates")}
    page = chromium.new_page()
    page.goto(f"{base}/runs/{run_id}")
    nodes = page.locator("#lineage li.node")
    assert {nodes.nth(i).get_attribute("data-candidate") for i in range(nodes.count())} == candidates
    best = page.locator(f'#lineage li.node[data-candidate="{manifest["best_candidate_id"]}"]').first
    assert "best" in best.inner_text().split("\n")[0]
    chart = page.locator('img[alt="score chart"]')
    assert chart.evaluate("img => img.complete && img.naturalWidth > 0")  # the SVG loaded
    heldout = page.locator("#heldout tr").all_inner_texts()[1:]
    means = sorted(float(line.split("\t")[1]) for line in heldout)
    assert means == sorted([manifest["seed_heldout_score"], manifest["best_heldout_score"]])
    assert manifest["best_heldout_score"] > manifest["seed_heldout_score"]
    decisions = page.locator("#decisions tr")
    assert decisions.count() - 1 == manifest["proposals"]
    report = manifest["heldout_report"]
    shown = page.locator("#heldout-report").inner_text()
    assert f"{report['mean_diff']:+.4f}" in shown and f"of {report['n']} rows" in shown
    assert page.locator('meta[http-equiv="refresh"]').count() == 0  # a finished run does not reload
    page.close()


def test_the_candidate_page_diffs_against_the_parent_and_shows_script_as_text(chromium: Any, finished: Any) -> None:
    base, _, manifest = finished
    page = chromium.new_page()
    page.goto(f"{base}/runs/{run_id_of(manifest)}/candidates/{manifest['best_candidate_id']}")
    added = page.locator("pre.text ins").all_inner_texts()
    assert added and all(text in manifest["best_candidate"]["prompt"] for text in added)
    assert any("Name <b>" in text for text in added)  # the feedback's markup, as text
    shown = page.locator("pre.text").inner_text()
    assert "<script>window.pwned = 1</script>" in shown
    assert page.evaluate("typeof window.pwned") == "undefined"  # shown, never run
    assert page.locator("pre.text b").count() == 0
    parent = page.locator("p", has_text="parent:").locator("a")
    parent.click()
    assert page.url.endswith("/candidates/" + parent_id(manifest))
    page.close()


def parent_id(manifest: dict[str, Any]) -> str:
    registry = json.loads(Path(manifest["candidate_registry_path"]).read_text())
    return str(registry["candidates"][manifest["best_candidate_id"]]["parent_ids"][0])


def test_a_running_run_is_shown_live(chromium: Any, tmp_path: Path) -> None:
    config = shots.write_run(tmp_path, budget=100_000, slow=0.05, reuse=False)  # live until it is stopped
    runner = subprocess.Popen(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(config), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        workspace = wait_for_decisions(tmp_path / "runs", runner)
        run_id = workspace.parent.name
        with shots.view_server(tmp_path / "runs") as base:
            page = chromium.new_page()
            page.goto(f"{base}/runs/{run_id}")
            assert page.locator(".badge.live").count() >= 1
            assert page.locator('meta[http-equiv="refresh"]').count() == 1
            first = page.locator("#lineage li.node").count()
            assert first >= 1
            newest = page.locator("#lineage li.node").nth(first - 1).get_attribute("data-candidate")
            page.goto(f"{base}/runs/{run_id}/candidates/{newest}")
            assert page.locator('meta[http-equiv="refresh"]').count() == 1 and page.locator("pre.text").count() == 1
            page.goto(base + "/")
            assert page.locator("#runs tr", has_text=run_id).locator(".badge.live").count() == 1
            os.killpg(runner.pid, signal.SIGTERM)  # a graceful stop: the run ends cancelled
            runner.wait(timeout=60)
            page.goto(f"{base}/runs/{run_id}")
            assert page.locator(".badge.cancelled").count() >= 1
            assert page.locator("#lineage li.node").count() >= first
            page.close()
            assert httpx.get(f"{base}/runs/../etc").status_code == 404
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()


def wait_for_decisions(runs: Path, runner: subprocess.Popen[bytes]) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert runner.poll() is None, "the run ended before it could be watched"
        for workspace in runs.glob("*/workspace.sqlite"):
            try:
                with sqlite3.connect(f"{workspace.as_uri()}?mode=ro", uri=True) as db:
                    if db.execute("SELECT count(*) FROM acceptance_decisions").fetchone()[0] >= 2:
                        return workspace.resolve()  # (runs/latest links to it too)
            except sqlite3.Error:
                pass
        time.sleep(0.1)
    raise AssertionError("no decision within 60 s")


def test_the_screenshot_script_writes_each_page(chromium: Any, finished: Any, tmp_path: Path) -> None:
    base, runs, _ = finished
    written = shots.take_screenshots(chromium, base, runs, tmp_path)
    assert [path.name for path in written] == ["view_runs.png", "view_run.png", "view_candidate.png"]
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000 for path in written)
