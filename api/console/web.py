"""What the console's pages and actions share: the caller, the page, the redirect, the flash.

Invariants:

- **Every state-changing request is refused (403, audited, nothing changed) unless** its session
  is live, its key is an admin key that is still valid, and its CSRF token matches the session's
  (:func:`actor`); a page needs a live admin session (:func:`viewer`), else it sends the browser
  to the sign-in page.
- **Every page is rendered with autoescaping** (document names, source ids, reasons and chunk
  text are data, never markup) and sent with a strict Content-Security-Policy (scripts from
  'self' only), ``X-Frame-Options: DENY`` and ``Cache-Control: no-store`` (:func:`secured`).
- **A redirect stays in the console**: a form's ``back`` is followed only when it is an already
  normalised same-site path under ``/admin`` (:func:`local`).
- **An action's refused service call is shown, not raised**: :func:`flash` puts the error's
  message on the session's next page.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

import posixpath
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from ragwall.api.console.session import COOKIE, CSRF_FIELD, CSRF_HEADER
from ragwall.errors import RagwallError
from ragwall.service import ConsoleSession, Service

T = TypeVar("T")

HERE = Path(__file__).parent
PREFIX = "/admin"
#: Console pages run only the console's own script and style, and are never framed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: A drift report runs no script and loads nothing (as ``GET /v1/jobs/{id}/report`` says).
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def ago(iso: str | None) -> str:
    """``2026-01-02T03:04:05+00:00`` → ``5 min ago`` (blank for none)."""
    if not iso:
        return ""
    try:
        then = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    s = max(0.0, (datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{int(s // size)} {unit} ago"
    return f"{int(s)} s ago"


_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
_env.filters["ago"] = ago


class ConsoleRefused(Exception):
    """A console request refused: rendered as a 403 page (JSON under ``/admin/api``) and
    recorded in the audit trail as a refusal."""

    def __init__(self, status: int, code: str, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.key_id = status, code, message, key_id


class SignInNeeded(Exception):
    """A page asked for without a live session: sent to the sign-in page."""

    def __init__(self, expired: bool) -> None:
        super().__init__("sign in")
        self.expired = expired


def secured(response: Response, csp: str = CSP) -> Response:
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def svc_of(request: Request) -> Service:
    return request.app.state.service


def live_session(request: Request) -> tuple[ConsoleSession | None, bool]:
    """The request's live session (a revoked key's sessions end with it), and whether one had
    expired."""
    return svc_of(request).console_session(request.cookies.get(COOKIE))


def viewer(request: Request) -> ConsoleSession:
    """A page's reader: a live admin session, else the sign-in page."""
    session, expired = live_session(request)
    if session is None:
        raise SignInNeeded(expired)
    if session.scope != "admin":
        raise ConsoleRefused(403, "forbidden", "the console needs an admin key", session.key_id)
    return session


async def actor(request: Request) -> ConsoleSession:
    """A state-changing request's caller: a live admin session and its CSRF token."""
    session, expired = live_session(request)
    if session is None:
        code = "session_expired" if expired else "no_session"
        raise ConsoleRefused(403, code, "your console session has ended: sign in again")
    if session.scope != "admin":
        raise ConsoleRefused(403, "forbidden", "the console needs an admin key", session.key_id)
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        token = (await request.form()).get(CSRF_FIELD)
    if not session.csrf_ok(token if isinstance(token, str) else None):
        raise ConsoleRefused(
            403,
            "csrf_failed",
            "the form's security token is missing or stale: reload the page and try again",
            session.key_id,
        )
    return session


Viewer = Annotated[ConsoleSession, Depends(viewer)]
Actor = Annotated[ConsoleSession, Depends(actor)]


def render(
    request: Request,
    template: str,
    session: ConsoleSession | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    page = _env.get_template(template).render(
        session=session,
        csrf=session.csrf if session else "",
        flash=session.take_flash() if session else [],
        path=request.url.path,
        **context,
    )
    return secured(HTMLResponse(page, status_code=status))


def to_page(to: str) -> Response:
    """A 303 to a console page (``to``: a path under ``/admin``)."""
    return secured(RedirectResponse(PREFIX + to, status_code=303))


def local(to: str, default: str) -> str:
    """A console-relative return address: ``to`` when it is a same-site path under the
    console, already normalised (no ``.``/``..`` segment, however encoded, no ``//``, no
    backslash, no scheme or host), else ``default``."""
    if not to or "\\" in to or any(ord(c) < 0x20 or ord(c) == 0x7F for c in to):
        return default
    parts = urlsplit(to)
    path = parts.path
    decoded = unquote(path)
    if parts.scheme or parts.netloc or "\\" in decoded or path.startswith("//"):
        return default
    for p in (path, decoded):  # a path that normalises to another is refused, not followed
        if not p.startswith(PREFIX + "/") or posixpath.normpath(p) != p.rstrip("/"):
            return default
    return path[len(PREFIX) :] + (f"?{parts.query}" if parts.query else "")


def flash(
    session: ConsoleSession,
    call: Callable[[], T],
    refused: type[RagwallError] | tuple[type[RagwallError], ...] = RagwallError,
) -> T | None:
    """Make one service call; when it raises one of ``refused`` (the errors that action
    expects: a bad input, a missing source, a busy one…), say the error's message on the
    session's next page and return None. Any other error propagates (the app answers it)."""
    try:
        return call()
    except refused as exc:
        session.say(str(exc), "error")
        return None
