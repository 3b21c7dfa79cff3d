"""The run browser's app without a browser: the bearer token (header, or ``?token=`` once and then a cookie), the
security headers, unknown runs and paths that try to leave the runs folder."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from synth_opt.errors import ConfigError
from synth_opt.view import serve_view, view_app
from synth_opt.view.app import CONTENT_SECURITY_POLICY
from synth_opt.view.diff import word_diff

pytestmark = pytest.mark.anyio


async def test_a_token_is_required_and_kept_in_a_cookie(tmp_path: Path) -> None:
    transport = httpx.ASGITransport(app=view_app(tmp_path, bearer_token="s3cret"))
    async with httpx.AsyncClient(transport=transport, base_url="http://view") as http:
        assert (await http.get("/")).status_code == 401
        assert (await http.get("/?token=wrong")).status_code == 401
        assert (await http.get("/", headers={"Authorization": "Bearer s3cret"})).status_code == 200
        redirect = await http.get("/?token=s3cret")
        assert redirect.status_code in (301, 302, 303, 307) and redirect.headers["location"] == "/"
        assert "httponly" in redirect.headers["set-cookie"].lower()
        page = await http.get("/")  # the cookie from the redirect
        assert page.status_code == 200 and page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_unknown_runs_and_escapes_are_404(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "workspace.sqlite").write_bytes(b"")
    transport = httpx.ASGITransport(app=view_app(tmp_path / "runs"))
    async with httpx.AsyncClient(transport=transport, base_url="http://view") as http:
        for path in ("/runs/nope", "/runs/..%2Fsecret", "/runs/nope/candidates/c", "/runs/nope/score_chart.svg"):
            response = await http.get(path)
            assert response.status_code == 404, path
            assert "text/html" in response.headers["content-type"] and "<script" not in response.text
        listing = await http.get("/")
        assert listing.status_code == 200 and "No runs with a workspace here yet" in listing.text


def test_serve_view_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--token-env"):
        serve_view(tmp_path, host="0.0.0.0")
    with pytest.raises(ConfigError, match="not a directory"):
        serve_view(tmp_path / "missing")


def test_the_word_diff_marks_changes_and_escapes_both_sides() -> None:
    marked = word_diff("Name fruit.", "Name <b>fruit</b> now.")
    assert marked == "Name <ins>&lt;b&gt;</ins>fruit<ins>&lt;/b&gt; now</ins>."
    assert word_diff("a b c", "a c") == "a <del>b </del>c"
    assert word_diff("<x>", "<x>") == "&lt;x&gt;"


def test_serving_beyond_loopback_needs_a_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from synth_opt.urls import serving_token

    assert serving_token("127.0.0.1", None, flag="--host", shown="127.0.0.1") is None
    with pytest.raises(ConfigError, match=r"--bind 0\.0\.0\.0:8879: 0\.0\.0\.0 is not a loopback address"):
        serving_token("0.0.0.0", None, flag="--bind", shown="0.0.0.0:8879")
    monkeypatch.setenv("VIEW_TOKEN", "  ")
    with pytest.raises(ConfigError, match="VIEW_TOKEN is unset or empty"):
        serving_token("0.0.0.0", "VIEW_TOKEN", flag="--host", shown="0.0.0.0")
    monkeypatch.setenv("VIEW_TOKEN", "t0k")
    assert serving_token("0.0.0.0", "VIEW_TOKEN", flag="--host", shown="0.0.0.0") == "t0k"
