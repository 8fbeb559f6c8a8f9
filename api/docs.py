"""The API's documentation pages, served without the internet.

FastAPI's default ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN (and fonts from
Google), so on a machine without internet they are blank. Here their assets come from an
installed package (``fastapi-offline``, MIT, which vendors Swagger UI 5 and ReDoc), mounted at
``/docs-assets``.

Invariant: **the docs pages load nothing from another host.** Every ``src``/``href`` they hold is
same-origin (no CDN, no Google fonts, no ``x-logo`` in the schema), and they are sent with a
Content-Security-Policy (:data:`DOCS_CSP`) that confines every fetch to this server, so not even
the bundled scripts can reach the internet (a logo, a font, a validator).
"""

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
#: Same-origin only; inline code, ``eval``, ``blob:`` workers and ``data:`` images are what
#: Swagger UI's start-up script and ReDoc's bundle need, and reach no other host.
DOCS_CSP = (
    "default-src 'self' 'unsafe-inline' 'unsafe-eval' blob: data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_CSP
    page.headers["Referrer-Policy"] = "no-referrer"
    return page


def assets_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def add_docs(app: FastAPI) -> None:
    """Mount the assets and the two pages (create the app with ``docs_url=None, redoc_url=None``)."""
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")
    router = APIRouter(include_in_schema=False)
    title = f"{app.title} API"

    @router.get("/docs")
    def swagger() -> HTMLResponse:
        return _offline(
            get_swagger_ui_html(
                openapi_url=app.openapi_url or "/openapi.json",
                title=title,
                swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS}/favicon.png",
                swagger_ui_parameters={"validatorUrl": None},  # no call to the online validator
            )
        )

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        return _offline(
            get_redoc_html(
                openapi_url=app.openapi_url or "/openapi.json",
                title=title,
                redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )

    app.include_router(router)
