"""A real browser for the tests: Debian's chromium, driven by Playwright (never downloaded).

Where chromium is missing the test skips with a message, or fails when
``RAGWALL_REQUIRE_BROWSER`` is set (CI sets it, so a missing browser cannot pass as a skip).
"""

from __future__ import annotations

import os
import shutil

import pytest

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("RAGWALL_REQUIRE_BROWSER"):
            pytest.fail("RAGWALL_REQUIRE_BROWSER is set but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return path


def launch(playwright):  # noqa: ANN001, ANN201 - Playwright's objects
    """Headless chromium from the system, for ``with sync_playwright() as p: launch(p)``."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=ARGS)
