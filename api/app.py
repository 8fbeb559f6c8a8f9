"""The HTTP API (FastAPI): the app around ``ragwall.api.routes``.

``create_app`` only assembles: the service (opened at startup unless one is passed in), the body
size limit, the error handlers that render every error as ``{"error": {"code", "message"}}``,
and the routes. What each route does lives in the service layer.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragwall.api.console import add_console
from ragwall.api.docs import add_docs
from ragwall.api.guard import ApiError, RequestGuard
from ragwall.api.models import ErrorResponse
from ragwall.api.routes import router
from ragwall.errors import StoreError
from ragwall.service import Service
from ragwall.settings import Settings
from ragwall.telemetry import tracing
from ragwall.telemetry.asgi import Observe

log = logging.getLogger("ragwall.api")

__all__ = ["ApiError", "create_app"]


def _error(
    status: int,
    code: str,
    message: str,
    details: list | None = None,
    headers=None,  # noqa: ANN001
    extra: dict | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, **(extra or {})}}
    if details:
        body["error"]["details"] = details
    return JSONResponse(status_code=status, content=body, headers=headers)


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    """The app. Pass ``service`` to share an already-open one (tests); else it opens its own
    at startup and closes it at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = service is None
        app.state.service = service or Service(settings or Settings())
        if owned:
            _ = app.state.service.searcher  # load the model and open the store before serving
        if app.state.service.settings.telemetry and not tracing.enabled():
            tracing.configure_from_env()  # OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set
        if app.state.service.settings.dev_mode:
            log.warning("RAGWALL_DEV_MODE is on: the API accepts calls without a key")
        try:
            yield
        finally:
            # Stopping the server cancels its running jobs and waits for them to clean up (no
            # parser worker outlives it). Here, not in the caller's close: after a SIGTERM,
            # uvicorn raises the signal again once shut down, and the process ends at once.
            app.state.service.jobs.close()
            if owned:
                app.state.service.close()

    app = FastAPI(
        title="Ragwall",
        version="0.1.0",
        description="Retrieval that AI agents can trust: every hit with provenance, trust and flags.",
        lifespan=lifespan,
        docs_url=None,  # served by add_docs, from installed assets, not a CDN
        redoc_url=None,
        responses={
            401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
            403: {"model": ErrorResponse, "description": "The key lacks the scope"},
            422: {"model": ErrorResponse, "description": "Invalid request"},
        },
    )

    app.add_middleware(RequestGuard, on_refusal=_record_guard_refusal)
    if (service.settings if service is not None else settings or Settings()).telemetry:
        app.add_middleware(Observe)  # outermost: it sees the guard's refusals too
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(StoreError, _on_store)
    app.include_router(router)
    add_docs(app)
    add_console(app)  # the admin console at /admin
    return app


def _record(request: Request, status: int, code: str) -> None:
    """Audit a refused call (rate-limited by the service)."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        return
    who = getattr(request.state, "principal", None)
    service.record_refusal(
        who.key_id if who else None, request.method, request.url.path, status, code
    )


def _record_guard_refusal(scope: dict, who, refused: ApiError) -> None:  # noqa: ANN001
    scope["app"].state.service.record_refusal(
        who.key_id if who else None, scope["method"], scope["path"], refused.status, refused.code
    )


async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = [
        {"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")}
        for e in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
    _record(request, 422, "invalid_request")
    return _error(422, "invalid_request", f"{where}: {first['msg']}", details)


async def _on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    if 400 <= exc.status < 500:
        _record(request, exc.status, exc.code)
    return _error(exc.status, exc.code, exc.message, headers=exc.headers, extra=exc.extra)


async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:
        # FastAPI's "error parsing the body" (invalid UTF-8, JSON nested too deep): the
        # documented answer to a body that is not valid JSON is 422 invalid_request.
        _record(request, 422, "invalid_request")
        return _error(422, "invalid_request", f"body: not valid JSON ({exc.detail})")
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    if 400 <= exc.status_code < 500:
        _record(request, exc.status_code, code)
    return _error(exc.status_code, code, str(exc.detail))


async def _on_store(_: Request, exc: StoreError) -> JSONResponse:
    log.error("store failure: %s", exc)
    return _error(503, "store_unavailable", str(exc))
