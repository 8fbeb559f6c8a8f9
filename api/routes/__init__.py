"""The HTTP routes, by resource: each is request → one service call → response model.

Handlers are plain module-level functions, importable and callable on their own (a test may call
``retrieve(body, service, principal)`` directly). Authentication and scopes are dependencies
(``ragwall.api.deps``): ``require("admin")`` refuses a key without that scope before the handler
runs. No route catches a service error: ``ragwall.api.errors`` answers each by one table.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from fastapi import APIRouter

from ragwall.api.routes import eval, health, index, jobs, keys, retrieve, sources, tokens

router = APIRouter()
for part in (health, retrieve, tokens, keys, sources, index, jobs, eval):
    router.include_router(part.router)

__all__ = ["router"]
