"""``/mcp``: the MCP streamable HTTP transport, mounted in the FastAPI app.

Stateless, JSON responses (no SSE stream, no session to keep). The route sits behind the same
request guard as ``/v1/…`` (``ragwall.api.guard``): a call without a valid key gets 401 with
``WWW-Authenticate: Bearer`` before any MCP processing, and the body limit, metrics, logs, traces
and request ids apply as to every route. The tools act as the principal the guard authenticated
(``scope["state"]["principal"]``), passed to them in ``CALLER``.

DNS-rebinding protection (Host and Origin checks) is on in dev mode, where the server takes calls
without a key: only loopback hosts are accepted then. With keys, every call carries a bearer key
a rebinding page cannot know.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ragwall.api.mcp.tools import CALLER, build_server
from ragwall.api.resource_metadata import METADATA_PATH, metadata
from ragwall.settings import Settings

PATH = "/mcp"
LOOPBACK = TransportSecuritySettings(
    enable_dns_rebinding_protection=True,
    allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
    allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
)


class McpEndpoint:
    """The ASGI endpoint: names the caller (:data:`CALLER`) from what the guard authenticated,
    then hands the request to the session manager (the SDK's tasks inherit the context).

    A session manager runs once, so each run of the app's lifespan (:meth:`running`) makes a
    new one: an app served again (tests, a restarted server in one process) keeps working.
    """

    def __init__(self, settings: Settings) -> None:
        self.server = build_server()
        self.security = (
            LOOPBACK
            if settings.dev_mode
            else TransportSecuritySettings(enable_dns_rebinding_protection=False)
        )
        self.max_body = settings.max_request_bytes
        self.manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run a fresh session manager for as long as the app serves."""
        self.server.streamable_http_app(
            streamable_http_path=PATH,
            json_response=True,
            stateless_http=True,
            transport_security=self.security,
            max_request_body_size=self.max_body,
        )
        manager = self.server.session_manager
        async with manager.run():
            self.manager = manager
            try:
                yield
            finally:
                self.manager = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        manager = self.manager
        if manager is None:  # served outside the app's lifespan: nothing can answer
            response = JSONResponse(
                {"error": {"code": "unavailable", "message": "the MCP endpoint is not running"}},
                status_code=503,
            )
            await response(scope, receive, send)
            return
        who = scope.get("state", {}).get("principal")
        token = CALLER.set((scope["app"].state.service, who)) if who is not None else None
        try:
            await manager.handle_request(scope, receive, send)
        finally:
            if token is not None:
                CALLER.reset(token)


def add_mcp(app: FastAPI, settings: Settings) -> McpEndpoint:
    """Route ``/mcp`` to a stateless MCP server; the app's lifespan must run the returned
    endpoint (``async with endpoint.running()``)."""
    endpoint = McpEndpoint(settings)
    app.router.routes.append(
        # POST only: a stateless server has no stream to open (GET) or session to end (DELETE),
        # so both answer 405, as the transport allows.
        Route(PATH, endpoint=endpoint, methods=["POST"])
    )
    if settings.oidc_issuer:  # RFC 9728: where an MCP client finds the identity provider
        app.router.routes.append(Route(METADATA_PATH, endpoint=_resource_metadata, methods=["GET"]))
    return endpoint


async def _resource_metadata(request: Request) -> JSONResponse:
    return JSONResponse(metadata(request.app.state.service.settings, request.scope))
