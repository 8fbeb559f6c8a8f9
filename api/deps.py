"""The routes' shared dependencies: the service, the caller, and the scope a route needs.

Authentication and scopes are dependencies: ``require("admin")`` refuses a key without that
scope (403 ``forbidden``, with :meth:`Principal.refusal`'s reason) before the handler runs, then
charges the call to the key's budget (429 ``rate_limited`` when it is spent;
``ragwall.service.budgets``): a refused call is never charged.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from ragwall.api.guard import WORKFLOW_HEADER, ApiError, authenticate, charge, with_workflow
from ragwall.service import Principal, Service


def service_of(request: Request) -> Service:
    return request.app.state.service


def principal(request: Request, svc: Annotated[Service, Depends(service_of)]) -> Principal:
    """The caller: authenticated by the request guard before the body was read."""
    who = getattr(request.state, "principal", None)
    if who is not None:
        return who
    # A route reached without the guard (an app assembled by hand) authenticates here.
    headers = {k.lower(): v for k, v in request.headers.items()}
    return with_workflow(authenticate(svc, headers), headers.get(WORKFLOW_HEADER))


def require(scope: str) -> Callable[[Principal], Principal]:
    """A dependency that admits keys with ``scope`` (admin keys admit every scope)."""

    def check(
        request: Request,
        svc: Annotated[Service, Depends(service_of)],
        who: Annotated[Principal, Depends(principal)],
    ) -> Principal:
        if not who.allows(scope):
            raise ApiError(403, "forbidden", who.refusal(scope))
        charge(svc, who, request.scope.setdefault("state", {}))
        return who

    return check


SvcDep = Annotated[Service, Depends(service_of)]
Reader = Annotated[Principal, Depends(require("retrieve"))]
Admin = Annotated[Principal, Depends(require("admin"))]
