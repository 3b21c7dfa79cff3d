"""Browser tests: Debian's ``chromium`` driven by Playwright through its executable (``make chromium`` installs it;
Playwright's own browser download is not used). Without it the tests are skipped, or fail under CI."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import _missing


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Playwright's sync API runs an event loop on this thread while it is open: module scope closes it before the
    next test module, whose tests may run their own (``anyio.run``) on the same thread."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        _missing("chromium is not installed (make chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (the dev extra)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
