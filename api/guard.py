"""The request guard, in front of every route (a pure ASGI middleware).

Invariants, in this order:

1. **The key is checked before a byte of the body is read.** A call to ``/v1/…`` or ``/mcp``
   without a valid
   key gets 401 at once (never a 413 or 422 that would reveal how the body is validated), and
   its body is never received. Dev mode admits key-less calls as before.
2. **No request body larger than ``RAGWALL_MAX_REQUEST_BYTES`` is ever held in memory** (an
   admin's ``POST /v1/eval/drift``, which may carry snapshots: ``RAGWALL_MAX_DRIFT_REQUEST_BYTES``), however
   it is framed: a declared ``Content-Length`` over the limit is refused before reading, and a
   chunked (or lying) body is counted as it arrives and refused with 413 as soon as it passes
   the limit. A body within the limit is buffered (at most the limit) and replayed to the app.

3. **Budgets** (``ragwall.service.budgets``): a call is charged once it has passed its scope
   check — by the routes' scope dependency (``ragwall.api.deps``), and here for an MCP tool call
   or resource read (every key may make them; the protocol's handshake costs nothing) — so 401
   and 403 never count. Every response to a caller with a budget carries
   the ``RateLimit-Policy`` and ``RateLimit`` fields (the charge's reading, or an uncharged one
   for a response that did not count), and a 429 ``rate_limited`` carries ``Retry-After``.
4. **A workflow id** for the audit trail: a Ragwall token's ``wf`` claim, or else the
   ``X-Workflow-Id`` header (1-128 printable ASCII characters; any other value is 422).

Each refusal is reported to ``on_refusal`` (the app records it in the audit trail). Scopes are
checked by the routes (``Principal.allows``): an admin key that an older release bound to groups
authenticates as a retrieve key (``ragwall.service.keys``), so every admin route and ``/metrics``
answer it 403 ``forbidden`` with :meth:`Principal.refusal`'s reason.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from ragwall.api.resource_metadata import challenge
from ragwall.errors import RateLimited
from ragwall.service import DEV_PRINCIPAL, WORKFLOW, Principal, Service

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED_PREFIX = "/v1/"
MCP_PATH = "/mcp"
WORKFLOW_HEADER = "x-workflow-id"
#: Where the request state keeps a charged call's RateLimit fields (set by whoever charged it).
RATELIMIT_STATE = "ratelimit_headers"


def protected(path: str) -> bool:
    """Whether a path needs a key: the API (``/v1/…``) and the MCP endpoint (``/mcp``)."""
    return path.startswith(PROTECTED_PREFIX) or path == MCP_PATH or path.startswith(MCP_PATH + "/")


def request_key(headers: dict[str, str]) -> str:
    """The API key of a request: ``Authorization: Bearer …`` or ``X-API-Key``."""
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return headers.get("x-api-key", "").strip()


class ApiError(Exception):
    """An HTTP error with a machine-readable ``code``, raised by the guard and the routes alike;
    rendered as ``{"error": {"code", "message"}}``, plus any ``extra`` fields that are set (such
    as the ``job_id`` a 409 names)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict | None = None,
        **extra: object,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers
        self.extra = {k: v for k, v in extra.items() if v is not None}


def authenticate(service: Service, headers: dict[str, str]) -> Principal:
    """The caller of a protected route, or :class:`ApiError` (401)."""
    key = request_key(headers)
    if not key:
        if service.settings.dev_mode:
            return DEV_PRINCIPAL
        raise ApiError(
            401,
            "unauthorized",
            "an API key is required: 'Authorization: Bearer rw_…' (or 'X-API-Key: rw_…')",
            {"WWW-Authenticate": "Bearer"},
        )
    found = service.authenticate(key)
    if found is None:
        raise ApiError(
            401,
            "unauthorized",
            "the API key or token is invalid, expired or revoked",
            {"WWW-Authenticate": "Bearer"},
        )
    return found


def with_workflow(who: Principal, header: str | None) -> Principal:
    """``who`` with the ``X-Workflow-Id`` header's workflow, unless a token already named one
    (a token's ``wf`` binds); :class:`ApiError` 422 for a malformed header."""
    if header is None or who.workflow_id is not None:
        return who
    if not WORKFLOW.match(header):
        raise ApiError(
            422, "invalid_request", "X-Workflow-Id must be 1-128 printable ASCII characters"
        )
    return dataclasses.replace(who, workflow_id=header)


def charge(service: Service, who: Principal, state: dict[str, Any]) -> None:
    """Charge one call to ``who``'s budget and keep its RateLimit fields in the request
    ``state`` for the response; :class:`ApiError` 429 (with ``Retry-After``) when spent."""
    try:
        state[RATELIMIT_STATE] = service.charge(who)
    except RateLimited as spent:
        state[RATELIMIT_STATE] = spent.headers
        raise ApiError(429, "rate_limited", str(spent), spent.headers) from spent


def authorize_metrics(service: Service, headers: dict[str, str]) -> str:
    """Who may read ``/metrics``: the ``RAGWALL_METRICS_TOKEN`` bearer (a Prometheus server),
    or an admin key. Returns ``"metrics-token"`` or the key's id; raises :class:`ApiError`
    (401 without a valid credential, 403 for a key without the admin scope)."""
    token = service.settings.metrics_token
    offered = request_key(headers)
    if (
        token is not None
        and offered
        and hmac.compare_digest(offered.encode(), token.get_secret_value().encode())
    ):
        return "metrics-token"
    who = authenticate(service, headers)
    if not who.allows("admin"):
        raise ApiError(
            403, "forbidden", f"{who.refusal('admin')}; metrics need an unrestricted admin key "
            "or the RAGWALL_METRICS_TOKEN",
        )  # fmt: skip
    return who.key_id


class RequestGuard:
    """Authenticate, then read the body within the limit; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        on_refusal: Callable[[Scope, Principal | None, ApiError], None] | None = None,
    ) -> None:
        self.app = app
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service: Service = scope["app"].state.service
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        who: Principal | None = None
        try:
            if protected(scope["path"]):
                who = authenticate(service, headers)
                who = with_workflow(who, headers.get(WORKFLOW_HEADER))  # a 422 names the key
                scope.setdefault("state", {})["principal"] = who
            body = await _read_body(receive, headers, body_limit(service, scope, who))
            limited = who is not None and who.budget.limited
            if limited and _is_mcp(scope["path"]) and _mcp_work(body):
                charge(service, who, scope["state"])
        except ApiError as refused:
            if refused.status == 401 and _is_mcp(scope["path"]):  # where to get a token
                refused.headers = {"WWW-Authenticate": challenge(service.settings, scope)}
            if who is not None and who.budget.limited and refused.status != 429:
                refused.headers = {**(service.budget_headers(who) or {}), **(refused.headers or {})}
            if self.on_refusal is not None:
                self.on_refusal(scope, who, refused)
            await _respond(send, refused)
            return
        if who is not None and who.budget.limited:
            send = _with_ratelimit_fields(send, service, who, scope["state"])
        await self.app(scope, _replay(body, receive), send)


def _is_mcp(path: str) -> bool:
    return path == MCP_PATH or path.startswith(MCP_PATH + "/")


#: The MCP messages that do work and so spend a budget; the protocol's own (initialize,
#: notifications, tools/list, ping) do not, so a session's handshake costs nothing.
MCP_CHARGED = frozenset({"tools/call", "resources/read"})


def _mcp_work(body: bytes) -> bool:
    """Whether an MCP request body asks for work (:data:`MCP_CHARGED`). A body that is not
    JSON-RPC is the SDK's to refuse (and is audited there), so it is not charged."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return False
    messages = message if isinstance(message, list) else [message]
    return any(isinstance(m, dict) and m.get("method") in MCP_CHARGED for m in messages)


def _with_ratelimit_fields(
    send: Send, service: Service, who: Principal, state: dict[str, Any]
) -> Send:
    """``send``, adding the RateLimit fields to the response's headers: the charged call's, or
    an uncharged reading when nothing charged this one (a 403, an unknown route)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            fields = state.get(RATELIMIT_STATE) or service.budget_headers(who) or {}
            known = {k.lower() for k, _ in message.get("headers", [])}
            extra = [
                (k.lower().encode(), v.encode()) for k, v in fields.items()
                if k.lower().encode() not in known
            ]  # fmt: skip
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending


#: Routes that take larger bodies from admin keys (drift snapshots), and the setting that bounds them.
LARGE_BODY_ROUTES = frozenset({("POST", "/v1/eval/drift")})


def body_limit(service: Service, scope: Scope, who: Principal | None) -> int:
    """``RAGWALL_MAX_DRIFT_REQUEST_BYTES`` for an admin's drift request (it may carry two
    snapshots), ``RAGWALL_MAX_REQUEST_BYTES`` for everything else."""
    settings = service.settings
    route = (scope["method"], scope["path"])
    if route in LARGE_BODY_ROUTES and who is not None and who.scope == "admin":
        return max(settings.max_drift_request_bytes, settings.max_request_bytes)
    return settings.max_request_bytes


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise _too_large(limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "request_too_large", f"request bodies are limited to {limit} bytes")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replay


async def _respond(send: Send, refused: ApiError) -> None:
    body = json.dumps({"error": {"code": refused.code, "message": refused.message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (refused.headers or {}).items()]
    if refused.status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is never read
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
