"""How the HTTP API answers an error: one table, and the handlers that render it.

Invariants:

- **Every error is rendered as** ``{"error": {"code", "message"}}``, plus any extra field that is
  set (the ``job_id`` that a 409 or an ``idempotency_key_reused`` names), and a request
  validation error's ``details``.
- **A service error's status and code come from :data:`ERRORS` alone**, looked up along the
  exception's class hierarchy, most specific class first: a route never catches a service
  error itself. A :class:`~ragwall.errors.RagwallError` that the table does not name is not
  answered here (it propagates: a 500, as any bug).
- Every refusal (a 4xx) is recorded in the audit trail (``Service.record_refusal``, rate-limited
  there); a 5xx is logged.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragwall.api.guard import ApiError
from ragwall.errors import (
    ApiKeyError,
    ChunkNotFound,
    Conflict,
    Forbidden,
    IdempotencyKeyReused,
    InvalidRequest,
    JobNotFound,
    JobRunning,
    KeyNotFound,
    MassRemoval,
    NotFound,
    RagwallError,
    RateLimited,
    ReportNotFound,
    SourceBusy,
    SourceError,
    SourceExists,
    SourceNotFound,
    StoreError,
    SwitchRefused,
    VersionNotFound,
)

log = logging.getLogger("ragwall.api")

#: A service error's HTTP answer: ``{error class: (status, code)}``. The most specific class of
#: an exception's MRO that is listed here decides.
ERRORS: dict[type[RagwallError], tuple[int, str]] = {
    # sources
    SourceNotFound: (404, "source_not_found"),
    SourceExists: (409, "source_exists"),
    SourceBusy: (409, "ingest_running"),
    MassRemoval: (409, "mass_removal"),  # a sync that would empty a source removes nothing
    SourceError: (422, "invalid_source"),  # a bad id, path, tier, or a path outside the roots
    # jobs, versions, reports
    JobNotFound: (404, "job_not_found"),
    VersionNotFound: (404, "version_not_found"),
    ReportNotFound: (404, "report_not_found"),
    ChunkNotFound: (404, "chunk_not_found"),
    KeyNotFound: (404, "key_not_found"),
    NotFound: (404, "not_found"),
    JobRunning: (409, "job_running"),
    SwitchRefused: (409, "switch_refused"),
    Conflict: (409, "conflict"),
    IdempotencyKeyReused: (422, "idempotency_key_reused"),
    InvalidRequest: (422, "invalid_request"),
    Forbidden: (403, "forbidden"),
    ApiKeyError: (422, "invalid_request"),  # a bad budget or scope for a key
    # budgets (Retry-After and the RateLimit fields: ragwall.api.guard)
    RateLimited: (429, "rate_limited"),
    # the infrastructure
    StoreError: (503, "store_unavailable"),
}

#: Attributes of an error rendered next to its message when they are set.
EXTRA_FIELDS = ("job_id",)


def lookup(exc: RagwallError) -> tuple[int, str] | None:
    """The (status, code) of ``exc`` by :data:`ERRORS`, or None when no class of it is listed."""
    for cls in type(exc).__mro__:
        if cls in ERRORS:
            return ERRORS[cls]
    return None


def error_response(
    status: int,
    code: str,
    message: str,
    details: list | None = None,
    headers: dict | None = None,
    extra: dict | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, **(extra or {})}}
    if details:
        body["error"]["details"] = details
    return JSONResponse(status_code=status, content=body, headers=headers)


def record(request: Request, status: int, code: str) -> None:
    """Audit a refused call (rate-limited by the service)."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        return
    who = getattr(request.state, "principal", None)
    service.record_refusal(who, request.method, request.url.path, status, code)


async def on_ragwall_error(request: Request, exc: RagwallError) -> JSONResponse:
    """A service error, answered as :data:`ERRORS` says (re-raised when it says nothing)."""
    found = lookup(exc)
    if found is None:
        raise exc
    status, code = found
    if status >= 500:
        log.error("store failure: %s", exc)
    elif status >= 400:
        record(request, status, code)
    extra = {f: getattr(exc, f) for f in EXTRA_FIELDS if getattr(exc, f, None) is not None}
    return error_response(status, code, str(exc), extra=extra)


async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = [
        {"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")}
        for e in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
    record(request, 422, "invalid_request")
    return error_response(422, "invalid_request", f"{where}: {first['msg']}", details)


async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    if 400 <= exc.status < 500:
        record(request, exc.status, exc.code)
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers, extra=exc.extra)


async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:
        # FastAPI's "error parsing the body" (invalid UTF-8, JSON nested too deep): the
        # documented answer to a body that is not valid JSON is 422 invalid_request.
        record(request, 422, "invalid_request")
        return error_response(422, "invalid_request", f"body: not valid JSON ({exc.detail})")
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    if 400 <= exc.status_code < 500:
        record(request, exc.status_code, code)
    return error_response(exc.status_code, code, str(exc.detail))


def add_error_handlers(app: FastAPI) -> None:
    """Register the handlers: request validation, the guard's and routes' ``ApiError``,
    Starlette's HTTP errors, and every service error (:data:`ERRORS`)."""
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RagwallError, on_ragwall_error)
