"""The HTTP API (FastAPI): the app around ``ragwall.api.routes``.

``create_app`` only assembles: the service (opened at startup unless one is passed in), the body
size limit, the error handlers that render every error as ``{"error": {"code", "message"}}``
(``ragwall.api.errors``), and the routes (``ragwall.api.routes``). What each route does lives in
the service layer.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ragwall.api.console import add_console
from ragwall.api.docs import add_docs
from ragwall.api.errors import add_error_handlers
from ragwall.api.guard import ApiError, RequestGuard
from ragwall.api.mcp.http import add_mcp
from ragwall.api.models import ErrorResponse
from ragwall.api.routes import router
from ragwall.service import Service
from ragwall.settings import Settings
from ragwall.telemetry import tracing
from ragwall.telemetry.asgi import Observe

log = logging.getLogger("ragwall.api")

__all__ = ["ApiError", "create_app"]


def create_app(
    settings: Settings | None = None, service: Service | None = None, *, schedule: bool = False
) -> FastAPI:
    """The app. Pass ``service`` to share an already-open one (``ragwall serve``, tests); else it
    opens its own at startup and closes it at shutdown. The scheduler (sources' due syncs, as
    ingest jobs) runs while the app serves when it opened its own service, or with
    ``schedule``: one process per data dir runs it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = service is None
        app.state.service = service or Service(settings or Settings())
        if owned:
            app.state.service.warm_up()  # load the model and open the store before serving
        if owned or schedule:
            app.state.service.start_scheduler()  # due syncs as ingest jobs
        if app.state.service.settings.telemetry and not tracing.enabled():
            tracing.configure_from_env()  # OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set
        if app.state.service.settings.dev_mode:
            log.warning("RAGWALL_DEV_MODE is on: the API accepts calls without a key")
        try:
            async with mcp.running():  # the MCP endpoint's task group (stateless: no sessions)
                yield
        finally:
            # Stopping the server cancels its running jobs and waits for them to clean up (no
            # parser worker outlives it). Here, not in the caller's close: after a SIGTERM,
            # uvicorn raises the signal again once shut down, and the process ends at once.
            app.state.service.stop_jobs()
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

    conf = service.settings if service is not None else settings or Settings()
    app.add_middleware(RequestGuard, on_refusal=_record_guard_refusal)
    if conf.telemetry:
        app.add_middleware(Observe)  # outermost: it sees the guard's refusals too
    add_error_handlers(app)  # one table answers every service error (ragwall.api.errors)
    app.include_router(router)
    mcp = add_mcp(app, conf)  # /mcp: agents' tools over the Model Context Protocol
    add_docs(app)
    add_console(app)  # the admin console at /admin
    return app


def _record_guard_refusal(scope: dict, who, refused: ApiError) -> None:  # noqa: ANN001
    scope["app"].state.service.record_refusal(
        who, scope["method"], scope["path"], refused.status, refused.code
    )
