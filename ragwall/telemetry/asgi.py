"""The observing ASGI middleware: every HTTP request gets a request id, a metrics sample, one
structured log line and (when tracing is on) a server span.

Invariants:

* The app it wraps keeps its service at ``app.state.service`` (``.metrics`` is recorded into).
* It is the outermost Ragwall middleware, so requests the guard refuses (401, 413) are counted
  and logged like any other.
* Labels and log fields are bounded and secret-free: the route is the route's template
  (``/v1/jobs/{job_id}``, or ``unmatched``), never the raw path; the caller is its key id, never
  the key; the query text is logged only with ``RAGWALL_LOG_QUERIES=1``.
* The request id a response carries in ``X-Request-ID`` is the one in its log line, its audit
  record and (for a retrieve) its body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.routing import Match

from ragwall.telemetry import tracing
from ragwall.telemetry.facts import RequestFacts, bind, new_request_id, unbind
from ragwall.telemetry.logs import event

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("ragwall.request")

#: Probes and scrapes: logged at DEBUG, so a log at INFO is not one line per health check.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


HTTP_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)


def method_label(scope: Scope) -> str:
    """The request's method as a label: a standard one as sent, anything else ``other``, so an
    anonymous client cannot mint new series (``curl -X ZZMETHOD1``)."""
    method = scope.get("method", "")
    return method if method in HTTP_METHODS else "other"


def route_template(scope: Scope) -> str:
    """The template of the route that served (or would have served) the request."""
    route = scope.get("route")
    if route is None:  # refused before routing (the guard): match it the way the router would
        for candidate in _routes(scope["app"]):
            match, _ = candidate.matches(scope)
            if match == Match.FULL:
                route = candidate
                break
    return getattr(route, "path", None) or "unmatched"


def _routes(app: Any) -> list[Any]:
    """The app's routes, with included routers' routes in place of the routers (cached)."""
    cached = getattr(app.state, "observe_routes", None)
    if cached is None:
        cached = app.state.observe_routes = _flatten(app.router.routes)
    return cached


def _flatten(routes: list[Any]) -> list[Any]:
    out: list[Any] = []
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's include_router wrapper
        out.extend(_flatten(inner.routes) if inner is not None else [route])
    return out


class Observe:
    """See the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        offered = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        facts = RequestFacts(request_id=new_request_id(offered.decode("latin-1")))
        status = 500
        rid = facts.request_id.encode()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            await send(message)

        token = bind(facts)
        try:
            if tracing.enabled():
                await self._traced(scope, receive, observed_send, facts, lambda: status)
            else:
                await self.app(scope, receive, observed_send)
        finally:
            unbind(token)
            self._record(scope, facts, status, time.perf_counter() - start)

    async def _traced(self, scope: Scope, receive: Receive, send: Send, facts, status) -> None:  # noqa: ANN001
        from opentelemetry.trace import SpanKind, Status, StatusCode

        method = method_label(scope)
        with tracing.tracer().start_as_current_span(
            method,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "ragwall.request_id": facts.request_id},
        ) as span:
            facts.trace_id = tracing.trace_id()
            try:
                await self.app(scope, receive, send)
            finally:
                route = route_template(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status())
                if status() >= 500:
                    span.set_status(Status(StatusCode.ERROR))

    def _record(self, scope: Scope, facts: RequestFacts, status: int, seconds: float) -> None:
        route = route_template(scope)
        method = method_label(scope)
        service = getattr(scope["app"].state, "service", None)
        if service is not None:
            service.metrics.request(method, route, status, seconds)
        who = (scope.get("state") or {}).get("principal")
        fields: dict[str, Any] = {
            "request_id": facts.request_id,
            "trace_id": facts.trace_id,
            "method": method,
            "route": route,
            "status": status,
            "key_id": getattr(who, "key_id", None),
            "duration_ms": round(seconds * 1000, 3),
            "stages_ms": facts.stages_ms or None,
            "hits": facts.hits,
            "flags": dict(facts.flags) if facts.hits is not None else None,
            "dropped": facts.dropped,
            "demoted": facts.demoted,
            "query": facts.query,
        }
        level = logging.DEBUG if route in QUIET_ROUTES and status < 400 else logging.INFO
        if status >= 500:
            level = logging.ERROR
        event(log, "request", level, **fields)
