"""The routes' shared dependencies: the service, the caller, and the scope a route needs.

Authentication and scopes are dependencies: ``require("admin")`` refuses a key without that
scope (403 ``forbidden``, with :meth:`Principal.refusal`'s reason) before the handler runs.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from ragwall.api.guard import ApiError, authenticate
from ragwall.service import Principal, Service


def service_of(request: Request) -> Service:
    return request.app.state.service


def principal(request: Request, svc: Annotated[Service, Depends(service_of)]) -> Principal:
    """The caller: authenticated by the request guard before the body was read."""
    who = getattr(request.state, "principal", None)
    if who is not None:
        return who
    # A route reached without the guard (an app assembled by hand) authenticates here.
    return authenticate(svc, {k.lower(): v for k, v in request.headers.items()})


def require(scope: str) -> Callable[[Principal], Principal]:
    """A dependency that admits keys with ``scope`` (admin keys admit every scope)."""

    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.allows(scope):
            raise ApiError(403, "forbidden", who.refusal(scope))
        return who

    return check


SvcDep = Annotated[Service, Depends(service_of)]
Reader = Annotated[Principal, Depends(require("retrieve"))]
Admin = Annotated[Principal, Depends(require("admin"))]
