"""The admin console's pages and actions, under ``/admin``.

Invariants:

- **Each action is one service call** (``Service.add_source``, ``start_ingest``, ``set_quarantine``,
  ``remove_source``, ``start_reindex``, ``activate``, ``rollback``; sign-in and sign-out: ``record_session``),
  made with the signed-in key's id as the actor,
  so the audit trail records the same thing as the HTTP API would; reads come from
  ``ragwall.service.console``.
- **Every state-changing request is refused (403, audited, nothing changed) unless** its session
  is live, its key is an admin key that is still valid, and its CSRF token matches the session's.
- **Every page is rendered with autoescaping** (document names, source ids, reasons and chunk
  text are data, never markup) and sent with a strict Content-Security-Policy (scripts from
  'self' only), ``X-Frame-Options: DENY`` and ``Cache-Control: no-store``.
- The admin key travels only in the sign-in form's body: never in a URL, a cookie or a log. Only
  an unrestricted admin key signs in (a group-bound one is told to be replaced).
- **A redirect stays in the console**: a form's ``back`` is followed only when it is an already
  normalised same-site path under ``/admin`` (:func:`_local`).

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

import hmac
import math
import posixpath
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader

from ragwall.api.console.session import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_COOKIE,
    ConsoleSession,
    SessionStore,
)
from ragwall.errors import RagwallError, SourceBusy, SourceNotFound
from ragwall.service import Conflict, InvalidRequest, NotFound, Service
from ragwall.service import console as views
from ragwall.service.reindex import ReindexChanges
from ragwall.settings import TRUST_TIERS

HERE = Path(__file__).parent
PREFIX = "/admin"
#: Console pages run only the console's own script and style, and are never framed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: A drift report runs no script and loads nothing (as ``GET /v1/jobs/{id}/report`` says).
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'"
FLAGS_PER_PAGE = 50

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
_env.filters["ago"] = lambda iso: _ago(iso)


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


def _svc(request: Request) -> Service:
    return request.app.state.service


def _sessions(request: Request) -> SessionStore:
    return _svc(request).console_sessions


def _key_valid(svc: Service, key_id: str) -> bool:
    return any(k.id == key_id and k.revoked_at is None for k in svc.keys.list())


def _live_session(request: Request) -> tuple[ConsoleSession | None, bool]:
    session, expired = _sessions(request).lookup(request.cookies.get(COOKIE))
    if session is not None and not _key_valid(_svc(request), session.key_id):
        _sessions(request).end(session.id)  # a revoked key's sessions end with it
        return None, True
    return session, expired


def viewer(request: Request) -> ConsoleSession:
    """A page's reader: a live admin session, else the sign-in page."""
    session, expired = _live_session(request)
    if session is None:
        raise SignInNeeded(expired)
    if session.scope != "admin":
        raise ConsoleRefused(403, "forbidden", "the console needs an admin key", session.key_id)
    return session


async def actor(request: Request) -> ConsoleSession:
    """A state-changing request's caller: a live admin session and its CSRF token."""
    session, expired = _live_session(request)
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

router = APIRouter(prefix=PREFIX, include_in_schema=False)


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


def _back(to: str) -> Response:
    return secured(RedirectResponse(PREFIX + to, status_code=303))


# -- sign-in -----------------------------------------------------------------------------------
@router.get("")
def home(request: Request) -> Response:
    return _back("/sources")


@router.get("/login")
def login_page(request: Request, expired: bool = False) -> Response:
    session, _ = _live_session(request)
    if session is not None and session.scope == "admin":
        return _back("/sources")
    return _login_form(request, "your session expired: sign in again" if expired else None)


def _login_form(request: Request, error: str | None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", None, status, error=error, login_csrf=token)
    _cookie(request, response, LOGIN_COOKIE, token, max_age=600)
    return response


def _cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@router.post("/login")
def login(
    request: Request,
    key: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Sign in with an admin key (posted in the form body, never in a URL)."""
    svc = _svc(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf.encode()):
        raise ConsoleRefused(
            403, "csrf_failed", "the sign-in form is stale: reload the page and sign in again"
        )
    who = svc.authenticate(key.strip()) if key.strip() else None
    if who is None:
        svc.record_refusal(None, "POST", request.url.path, 401, "unauthorized")
        return _login_form(request, "that key is invalid or revoked", status=401)
    if not who.allows("admin"):
        svc.record_refusal(who.key_id, "POST", request.url.path, 403, "forbidden")
        why = who.refusal("admin") if who.group_bound_admin else (
            f"key {who.key_id} has scope {who.scope!r}: the console needs an admin key"
        )  # fmt: skip
        return _login_form(request, why, status=403)
    minutes = svc.settings.console_session_minutes
    session = _sessions(request).create(who.key_id, who.scope, minutes)
    svc.record_session(who.key_id, "sign_in")
    response = _back("/sources")
    _cookie(request, response, COOKIE, session.id, max_age=minutes * 60)
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
def logout(request: Request, session: Actor) -> Response:
    _sessions(request).end(session.id)
    _svc(request).record_session(session.key_id, "sign_out")
    response = _back("/login")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# -- sources -----------------------------------------------------------------------------------
@router.get("/sources")
def sources_page(request: Request, session: Viewer) -> Response:
    return render(
        request,
        "sources.html",
        session,
        rows=views.sources(_svc(request)),
        tiers=TRUST_TIERS,
    )


@router.post("/sources")
def add_source(
    request: Request,
    session: Actor,
    source_id: Annotated[str, Form(max_length=200)],
    path: Annotated[str, Form(max_length=4000)],
    trust: Annotated[str, Form(max_length=40)] = "internal",
    groups: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    wanted = [g.strip() for g in groups.split(",") if g.strip()]
    try:
        source = _svc(request).add_source(session.key_id, source_id.strip(), path.strip(), trust,
                                          wanted)  # fmt: skip
    except RagwallError as exc:  # SourceExists, a bad id, path or tier
        session.say(str(exc), "error")
    else:
        session.say(f"source {source.id} added; ingest it to index its documents")
    return _back("/sources")


@router.post("/sources/{source_id}/ingest")
def ingest(
    request: Request, session: Actor, source_id: str, force: Annotated[bool, Form()] = False
) -> Response:
    """Start an ingest job and show it on the jobs page (its progress, then its summary)."""
    try:
        job = _svc(request).start_ingest(session.key_id, source_id, force)
    except (SourceNotFound, SourceBusy) as exc:
        session.say(str(exc), "error")
        return _back("/sources")
    session.say(f"ingest job {job.id} of {source_id} started")
    return _back("/jobs")


@router.post("/sources/{source_id}/remove")
def remove_source(request: Request, session: Actor, source_id: str) -> Response:
    """Remove a source and its chunks (``Service.remove_source``; the page asks first)."""
    try:
        n = _svc(request).remove_source(session.key_id, source_id)
    except (SourceNotFound, SourceBusy) as exc:
        session.say(str(exc), "error")
    else:
        session.say(f"source {source_id} removed with its {n} chunks")
    return _back("/sources")


def _quarantine(
    request: Request, session: ConsoleSession, kind: str, value: str, on: bool, reason: str
) -> bool:
    try:
        changed = _svc(request).set_quarantine(session.key_id, kind, value, on, reason)
    except (SourceNotFound, InvalidRequest) as exc:
        session.say(str(exc), "error")
        return False
    what = f"{kind} {value}"
    verb = "quarantined" if on else "released"
    session.say(f"{what} {verb}" if changed else f"{what} was already {verb}")
    return changed


@router.post("/sources/{source_id}/quarantine")
def quarantine_source(
    request: Request,
    session: Actor,
    source_id: str,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    _quarantine(request, session, "source", source_id, True, reason)
    return _back("/sources")


@router.post("/sources/{source_id}/release")
def release_source(request: Request, session: Actor, source_id: str) -> Response:
    _quarantine(request, session, "source", source_id, False, "")
    return _back("/sources")


@router.post("/documents/{doc_sha256}/quarantine")
def quarantine_document(
    request: Request,
    session: Actor,
    doc_sha256: str,
    reason: Annotated[str, Form(max_length=500)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    _quarantine(request, session, "document", doc_sha256, True, reason)
    return _back(_local(back, "/flags"))


@router.post("/documents/{doc_sha256}/release")
def release_document(
    request: Request,
    session: Actor,
    doc_sha256: str,
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    _quarantine(request, session, "document", doc_sha256, False, "")
    return _back(_local(back, "/flags"))


def _local(back: str, default: str) -> str:
    """A console-relative return address: ``back`` when it is a same-site path under the
    console, already normalised (no ``.``/``..`` segment, however encoded, no ``//``, no
    backslash, no scheme or host), else ``default``."""
    if not back or "\\" in back or any(ord(c) < 0x20 or ord(c) == 0x7F for c in back):
        return default
    parts = urlsplit(back)
    path = parts.path
    decoded = unquote(path)
    if parts.scheme or parts.netloc or "\\" in decoded or path.startswith("//"):
        return default
    for p in (path, decoded):  # a path that normalises to another is refused, not followed
        if not p.startswith(PREFIX + "/") or posixpath.normpath(p) != p.rstrip("/"):
            return default
    return path[len(PREFIX) :] + (f"?{parts.query}" if parts.query else "")


# -- index versions and jobs ---------------------------------------------------------------------
@router.get("/index")
def index_page(request: Request, session: Viewer) -> Response:
    svc = _svc(request)
    return render(
        request, "index.html", session, info=svc.index_info(), job=views.latest_reindex(svc)
    )


@router.post("/index/reindex")
def start_reindex(
    request: Request, session: Actor, rebuild: Annotated[bool, Form()] = False
) -> Response:
    try:
        job = _svc(request).start_reindex(session.key_id, ReindexChanges(rebuild=rebuild))
    except (InvalidRequest, Conflict) as exc:
        session.say(str(exc), "error")
    else:
        session.say(f"reindex job {job.id} started")
    return _back("/index")


def _switch(session: ConsoleSession, call) -> None:  # noqa: ANN001 - a zero-argument call
    try:
        done = call()
    except (NotFound, InvalidRequest, Conflict) as exc:
        session.say(str(exc), "error")
    else:
        session.say(f"{done['active']} is active (was {done['previous']})")


@router.post("/index/activate")
def activate(
    request: Request, session: Actor, version: Annotated[str, Form(max_length=40)]
) -> Response:
    _switch(session, lambda: _svc(request).activate(session.key_id, version))
    return _back("/index")


@router.post("/index/rollback")
def rollback(request: Request, session: Actor) -> Response:
    _switch(session, lambda: _svc(request).rollback(session.key_id))
    return _back("/index")


@router.get("/jobs")
def jobs_page(request: Request, session: Viewer) -> Response:
    return render(request, "jobs.html", session, jobs=views.jobs(_svc(request)))


@router.get("/api/jobs/{job_id}")
def job_progress(request: Request, session: Viewer, job_id: str) -> Response:
    """A job's state and progress, for the progress bar (polled by console.js)."""
    try:
        job = _svc(request).job(job_id)
    except NotFound:
        return secured(JSONResponse({"error": "no such job"}, status_code=404))
    p = job.progress or {}
    return secured(
        JSONResponse(
            {
                "job_id": job.id,
                "kind": job.kind,
                "state": job.state,
                "stage": p.get("stage"),
                "done": p.get("documents_done"),
                "total": p.get("documents_total"),
                "eta_s": p.get("eta_s"),
                "error": job.error,
                "version": (job.result or {}).get("version"),
            }
        )
    )


# -- flags, drift reports, audit -----------------------------------------------------------------
@router.get("/flags")
def flags_page(
    request: Request,
    session: Viewer,
    kind: Annotated[str, Query(pattern="^(injection|hidden)$")] = "injection",
    after: Annotated[str | None, Query(max_length=100)] = None,
    source: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    svc = _svc(request)
    try:
        page = views.flagged(svc, kind, after or None, FLAGS_PER_PAGE, source or None)
    except (ValueError, RagwallError) as exc:
        session.say(f"cannot list flagged chunks: {exc}", "error")
        page = views.FlaggedPage(kind, [], 0, None)
    return render(
        request,
        "flags.html",
        session,
        page=page,
        kind=kind,
        source=source or "",
        first=not after,
        pages=max(1, math.ceil((page.total or 0) / FLAGS_PER_PAGE)),
        sources=[s.id for s in svc.state.list_sources()],
        here=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
    )


@router.get("/drift")
def drift_page(request: Request, session: Viewer) -> Response:
    return render(request, "drift.html", session, jobs=views.drift_jobs(_svc(request)))


@router.get("/reports/{job_id}")
def report(request: Request, session: Viewer, job_id: str) -> Response:
    """A drift job's (or a gated reindex's) HTML report, with the API's report CSP."""
    try:
        path = _svc(request).job_report(job_id, "report.html")
    except (NotFound, InvalidRequest):
        session.say(f"job {job_id} has no report (yet)", "error")
        return _back("/drift")
    return secured(FileResponse(path, media_type="text/html; charset=utf-8"), REPORT_CSP)


@router.get("/audit")
def audit_page(request: Request, session: Viewer) -> Response:
    checker = getattr(request.app.state, "console_audit", None)
    if checker is None or checker.svc is not _svc(request):
        checker = request.app.state.console_audit = views.AuditChecker(_svc(request))
    return render(request, "audit.html", session, audit=checker.status())


# -- assembly ------------------------------------------------------------------------------------
def favicon() -> Response:
    """``/favicon.ico``: nothing, cacheably (pages name their icon; browsers that ask anyway
    get a 204, not a 404 that the audit trail would record as a refusal)."""
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})


def _ago(iso: str | None) -> str:
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


async def _on_refused(request: Request, exc: ConsoleRefused) -> Response:
    _svc(request).record_refusal(exc.key_id, request.method, request.url.path, exc.status, exc.code)
    if request.url.path.startswith(PREFIX + "/api/"):
        body = {"error": {"code": exc.code, "message": exc.message}}
        return secured(JSONResponse(body, status_code=exc.status))
    return render(request, "error.html", None, exc.status, code=exc.code, message=exc.message)


async def _on_sign_in(request: Request, exc: SignInNeeded) -> Response:
    if request.url.path.startswith(PREFIX + "/api/"):
        _svc(request).record_refusal(None, request.method, request.url.path, 403, "no_session")
        body = {"error": {"code": "no_session", "message": "sign in to the console"}}
        return secured(JSONResponse(body, status_code=403))
    return _back("/login?expired=1" if exc.expired else "/login")


def add_console(app: FastAPI) -> None:
    """Serve the console at ``/admin`` (pages, actions, and its static CSS and script)."""
    app.include_router(router)
    app.add_api_route("/favicon.ico", favicon, include_in_schema=False)
    app.mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(ConsoleRefused, _on_refused)
    app.add_exception_handler(SignInNeeded, _on_sign_in)
