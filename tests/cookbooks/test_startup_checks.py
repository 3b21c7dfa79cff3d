"""Every cookbook container answers the start-up check (``POST /health/check``): one known-good check of its own,
the policy type, and for an LLM policy that its endpoint answers and serves its model (reported as the policy's
model without the fields that change per request). A container that cannot work fails the run at start-up with
what it said, before anything is spent: here the tblite container in an environment without pytest, as a new user
had it after installing without the cookbooks' test runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from crafter_cookbook import app as crafter_app
from fastapi import FastAPI

from banking77 import container as banking77_container
from code_review import container as code_review_container
from synth_opt.testing import FakeOpenAI, serve_fake_openai
from tblite import container as tblite_container

from ..cookbook_runs import offline_config

COOKBOOKS = Path(__file__).resolve().parents[2] / "cookbooks"

APPS = {
    "banking77": (banking77_container.build_app, "keyword"),
    "code_review": (code_review_container.build_app, "checklist"),
    "crafter": (crafter_app.build_app, "scripted"),
    "tblite": (tblite_container.build_app, "playbook"),
}


async def check(app: FastAPI, policy: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cookbook") as http:
        response = await http.post("/health/check", json={"policy": policy})
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(APPS))
async def test_each_cookbook_passes_its_known_good_check_with_its_offline_policy(name: str) -> None:
    build, offline = APPS[name]
    reply = await check(build(), {"type": offline})
    assert reply["status"] == "ok", reply
    assert [entry["ok"] for entry in reply["checks"]] == [True]
    assert reply["checks"][0]["detail"]  # says what it checked
    assert reply["policy_model"] is None  # an offline policy uses no model


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(APPS))
async def test_an_unknown_policy_type_fails_the_check_naming_it(name: str) -> None:
    build, offline = APPS[name]
    reply = await check(build(), {"type": "telepathy"})
    assert reply["status"] == "failed"
    failed = [entry for entry in reply["checks"] if not entry["ok"]]
    assert [entry["name"] for entry in failed] == ["policy"]
    assert "'telepathy'" in failed[0]["detail"] and offline in failed[0]["detail"]


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(APPS))
async def test_an_llm_policy_is_checked_against_its_endpoint(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    build, _ = APPS[name]
    monkeypatch.setenv("CHECK_TEST_KEY", "sk-check")
    fake = FakeOpenAI(lambda prompt: "x", api_key="sk-check", models=("small", "large"), model_meta={"n_params": 7})
    app = build()
    with serve_fake_openai(fake) as url:
        table = {"type": "llm", "model": "large", "base_url": url, "api_key_env": "CHECK_TEST_KEY"}
        served = await check(app, table)
        missing = await check(app, table | {"model": "huge"})
        refused = await check(app, table | {"api_key_env": "CHECK_TEST_NO_SUCH_KEY"})
    down = await check(app, table)  # the server is gone
    assert served["status"] == "ok", served
    assert served["policy_model"] == {"id": "large", "object": "model", "owned_by": "fake", "meta": {"n_params": 7}}
    assert not fake.requests, "the check asked GET /models only, not a completion"
    for reply, words in (
        (missing, ["'huge'", "'small', 'large'", "policy.model"]),
        (refused, ["CHECK_TEST_NO_SUCH_KEY", "not set"]),
        (down, [url, "unreachable"]),
    ):
        assert reply["status"] == "failed" and reply["policy_model"] is None
        detail = next(entry["detail"] for entry in reply["checks"] if entry["name"] == "llm_policy")
        for word in words:
            assert word in detail, (word, detail)
    assert "sk-check" not in json.dumps([served, missing, refused, down])


def python_without_pytest(folder: Path) -> Path:
    """An interpreter whose environment has everything the project's has except pytest (a stub that is not it,
    first on its path), as an install without the cookbooks' test runner leaves it."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    stub = site_packages / "pytest"
    stub.mkdir()
    (stub / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'pytest\'", name="pytest")\n')
    ours = [path for path in sys.path if path.endswith("site-packages") and Path(path).is_dir()]
    (site_packages / "project.pth").write_text("".join(f"import site; site.addsitedir({path!r})\n" for path in ours))
    return venv / "bin" / "python"


def test_tblite_without_pytest_fails_the_run_at_start_up_with_the_reason(tmp_path: Path) -> None:
    python = python_without_pytest(tmp_path)
    probe = subprocess.run([str(python), "-c", "import synth_opt, synth_containers"], capture_output=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    script = json.dumps(str(COOKBOOKS / "tblite" / "container.py"))
    config = offline_config(
        COOKBOOKS / "tblite", tmp_path, {f'["{{python}}", {script}': f"[{json.dumps(str(python))}, {script}"}
    )
    done = subprocess.run(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(config), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(line for line in done.stderr.splitlines() if line.startswith("error["))
    assert line.startswith("error[container_check]:") and "No module named 'pytest'" in line, line
    assert "sandbox" in line and "POST /health/check" in line
    feed = [json.loads(text) for text in (tmp_path / "runs" / "latest" / "events.jsonl").read_text().splitlines()]
    types = [event["type"] for event in feed]
    assert "container.checked" in types
    assert not [kind for kind in types if kind.startswith("rollout.")], "a rollout was spent before the check failed"
