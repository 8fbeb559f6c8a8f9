"""The admin console under ``/admin``: sign-in, sign-out, and the assembly of its pages.

Invariants:

- **Sign-in and sign-out are one service call each** (``Service.sign_in``, ``Service.sign_out``:
  the session and its audit record), made with the key's id as the actor; the pages and actions
  are ``ragwall.api.console.pages``, what they share ``ragwall.api.console.web``.
- The admin key travels only in the sign-in form's body: never in a URL, a cookie or a log. Only
  an unrestricted admin key signs in (a group-bound one is told to be replaced).
- The sign-in form is protected by its own CSRF cookie (``LOGIN_COOKIE``); a refused console
  request is a 403 page (JSON under ``/admin/api``) recorded in the audit trail as a refusal.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ragwall.api.console import pages
from ragwall.api.console.session import COOKIE, LOGIN_COOKIE
from ragwall.api.console.web import (
    HERE,
    PREFIX,
    Actor,
    ConsoleRefused,
    SignInNeeded,
    live_session,
    render,
    secured,
    svc_of,
    to_page,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


# -- sign-in -----------------------------------------------------------------------------------
@router.get("")
def home(request: Request) -> Response:
    return to_page("/sources")


@router.get("/login")
def login_page(request: Request, expired: bool = False) -> Response:
    session, _ = live_session(request)
    if session is not None and session.scope == "admin":
        return to_page("/sources")
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
    svc = svc_of(request)
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
        svc.record_refusal(who, "POST", request.url.path, 403, "forbidden")
        why = who.refusal("admin") if who.group_bound_admin else (
            f"key {who.key_id} has scope {who.scope!r}: the console needs an admin key"
        )  # fmt: skip
        return _login_form(request, why, status=403)
    if who.token_id is not None:  # an admin token: the console takes keys only
        svc.record_refusal(who, "POST", request.url.path, 403, "forbidden")
        return _login_form(request, "the console takes an API key, not an access token", 403)
    session = svc.sign_in(who)
    response = to_page("/sources")
    _cookie(
        request, response, COOKIE, session.id, max_age=svc.settings.console_session_minutes * 60
    )
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
def logout(request: Request, session: Actor) -> Response:
    svc_of(request).sign_out(session)
    response = to_page("/login")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# -- assembly ------------------------------------------------------------------------------------
def favicon() -> Response:
    """``/favicon.ico``: nothing, cacheably (pages name their icon; browsers that ask anyway
    get a 204, not a 404 that the audit trail would record as a refusal)."""
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})


async def _on_refused(request: Request, exc: ConsoleRefused) -> Response:
    svc_of(request).record_refusal(
        exc.key_id, request.method, request.url.path, exc.status, exc.code
    )
    if request.url.path.startswith(PREFIX + "/api/"):
        body = {"error": {"code": exc.code, "message": exc.message}}
        return secured(JSONResponse(body, status_code=exc.status))
    return render(request, "error.html", None, exc.status, code=exc.code, message=exc.message)


async def _on_sign_in(request: Request, exc: SignInNeeded) -> Response:
    if request.url.path.startswith(PREFIX + "/api/"):
        svc_of(request).record_refusal(None, request.method, request.url.path, 403, "no_session")
        body = {"error": {"code": "no_session", "message": "sign in to the console"}}
        return secured(JSONResponse(body, status_code=403))
    return to_page("/login?expired=1" if exc.expired else "/login")


def add_console(app: FastAPI) -> None:
    """Serve the console at ``/admin`` (pages, actions, and its static CSS and script)."""
    app.include_router(router)
    app.include_router(pages.router)
    app.add_api_route("/favicon.ico", favicon, include_in_schema=False)
    app.mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(ConsoleRefused, _on_refused)
    app.add_exception_handler(SignInNeeded, _on_sign_in)
