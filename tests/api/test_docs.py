"""The API docs pages load nothing from another host (issue 24: ``/redoc`` fetched ReDoc's logo
from cdn.redoc.ly): their HTML names same-origin assets only, and their Content-Security-Policy
confines every fetch, the bundled scripts' included, to the server."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ragwall.api.app import create_app
from ragwall.api.docs import assets_dir
from ragwall.service import Service
from tests.browser import launch

#: CSP source expressions that name no other host.
SAME_ORIGIN = {"'self'", "'none'", "'unsafe-inline'", "'unsafe-eval'", "blob:", "data:"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from ragwall.settings import Settings

    settings = Settings(data_dir=tmp_path_factory.mktemp("docs") / "data")
    with Service(settings) as svc:  # the docs need neither the model nor the index
        yield create_app(settings, svc)


def _csp(header: str) -> dict[str, list[str]]:
    return {
        name: values
        for name, *values in (part.split() for part in header.split(";") if part.strip())
    }


def test_the_docs_pages_name_and_allow_no_other_host(app):
    # ReDoc's bundle shows Redocly's logo from its CDN: only the policy keeps it from loading
    assert "https://cdn.redoc.ly/" in (assets_dir() / "redoc.standalone.js").read_text()
    with TestClient(app) as client:
        for page in ("/docs", "/redoc"):
            got = client.get(page)
            assert got.status_code == 200
            for url in re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]""", got.text):
                assert url.startswith("/") and not url.startswith("//"), (page, url)
            policy = _csp(got.headers["content-security-policy"])
            fetches = {k: v for k, v in policy.items() if k.endswith("-src")}
            assert "default-src" in fetches and "img-src" not in fetches  # images: the default
            for directive, sources in fetches.items():
                assert set(sources) <= SAME_ORIGIN, (page, directive, sources)
            assert policy["frame-ancestors"] == ["'none'"]
        schema = client.get("/openapi.json").json()
        assert "x-logo" not in schema["info"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(app) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.slow
def test_the_docs_pages_render_and_reach_only_their_server_in_a_browser(served):
    """Chromium emits a ``request`` for the logo, then blocks it by the policy before it leaves
    ("csp"): every request to another host must have been blocked that way."""
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    blocked: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requested.append(r.url))
            page.on(
                "requestfailed",
                lambda r: "csp" in (r.failure or "").lower() and blocked.append(r.url),
            )
            page.goto(f"{served}/redoc")
            page.wait_for_selector("h1:has-text('Ragwall')", timeout=30_000)  # ReDoc rendered
            page.wait_for_timeout(1500)  # its sidebar footer (the logo) renders last
            page.goto(f"{served}/docs")
            page.wait_for_selector(".opblock-summary", timeout=30_000)  # Swagger UI rendered
        finally:
            browser.close()
    others = [u for u in requested if not u.startswith((served, "data:", "blob:"))]
    assert [u for u in others if u not in blocked] == [], (others, blocked)
