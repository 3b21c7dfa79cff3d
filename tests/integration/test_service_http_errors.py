"""Bad input to the service is a 4xx in the error envelope that names the field, key or URL and says what to do,
never a 500: config paths that are symlink loops (or configs naming one, or a NUL byte), unknown routes, wrong
methods, bodies too large or not JSON, and ``GET /runs`` limits out of range."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_service_app import config, error_of, service


@pytest.mark.anyio
async def test_config_paths_that_cannot_be_resolved_or_loaded_are_a_422_naming_config_path(tmp_path: Path) -> None:
    (tmp_path / "self.toml").symlink_to("self.toml")
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    text = config(tmp_path).read_text(encoding="utf-8")
    edits = {
        "template.toml": ("[proposer]\n", '[proposer]\nprompt_template = "a"\n'),
        "output.toml": ('run_id = "svc"\n', 'run_id = "svc"\noutput_dir = "a"\n'),
        "nul.toml": ('run_id = "svc"\n', 'run_id = "svc"\noutput_dir = "x\\u0000y"\n'),
    }
    for name, (old, new) in edits.items():
        (tmp_path / name).write_text(text.replace(old, new), encoding="utf-8")
    async with service(tmp_path) as client:
        for looped in ("self.toml", "a"):
            error = error_of(await client.post("/runs", json={"config_path": looped}), 422, "config_error")
            assert error["detail"]["field"] == "config_path", error
            assert looped in error["message"] and "symlink loop" in error["message"].lower(), error
        for name in edits:
            error = error_of(await client.post("/runs", json={"config_path": name}), 422, "config_error")
            assert name in error["message"] or str(tmp_path / name) in error["message"], error
        assert (await client.get("/runs")).json()["requests"] == []  # nothing was queued


@pytest.mark.anyio
async def test_unknown_routes_wrong_methods_and_bad_bodies_get_the_error_envelope(tmp_path: Path) -> None:
    async with service(tmp_path) as client:
        missing = error_of(await client.get("/nowhere"), 404, "not_found")
        assert "/nowhere" in missing["message"] and "/schema" in missing["message"]
        wrong = error_of(await client.delete("/runs"), 405, "method_not_allowed")
        assert "DELETE /runs" in wrong["message"] and "GET" in wrong["message"] and "POST" in wrong["message"]
        assert set(wrong["detail"]["allowed"]) >= {"GET", "POST"}
        big = await client.post("/runs", content=b" " * 10_000_001, headers={"content-type": "application/json"})
        too_large = error_of(big, 413)
        assert "10000000 bytes" in too_large["message"] and too_large["detail"]["limit_bytes"] == 10_000_000
        malformed = await client.post("/runs", content=b"{not json", headers={"content-type": "application/json"})
        assert "must be a JSON object" in error_of(malformed, 400, "validation_error")["message"]
        for limit in ("-1", "0", "1001"):
            refused = error_of(await client.get(f"/runs?limit={limit}"), 400, "validation_error")
            assert "limit" in refused["message"] and "1 to 1000" in refused["message"], refused
        assert (await client.get("/runs?limit=1")).status_code == 200
