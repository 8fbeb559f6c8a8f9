"""What one request did, gathered while it runs, for its log line, metrics and span.

The HTTP middleware (``ragwall.telemetry.asgi``) opens a :class:`RequestFacts` for each request and binds it to a context
variable; the service adds to it (stage timings, hit and flag counts) from whatever thread runs
the route: FastAPI copies the context into its worker threads, and the facts object is shared,
not copied. Code outside a request (the CLI, a job thread) finds no facts and records nothing
here.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


@dataclass
class RequestFacts:
    """One request's facts. ``stages_ms`` maps a stage (embed, search, rerank, defend, audit)
    to its milliseconds; ``flags`` counts returned hits' flags by kind."""

    request_id: str
    stages_ms: dict[str, float] = field(default_factory=dict)
    hits: int | None = None
    flags: Counter[str] = field(default_factory=Counter)
    dropped: int | None = None
    demoted: int | None = None
    query: str | None = None
    trace_id: str | None = None


_current: ContextVar[RequestFacts | None] = ContextVar("ragwall_request_facts", default=None)


def new_request_id(offered: str | None = None) -> str:
    """The caller's ``X-Request-ID`` when it is a plain token of 8-64 characters, else a new
    random one (a header is never trusted into logs as it stands)."""
    if offered and _REQUEST_ID.match(offered):
        return offered
    return uuid.uuid4().hex


def current() -> RequestFacts | None:
    """The facts of the request being served in this context, or ``None``."""
    return _current.get()


def bind(facts: RequestFacts | None):  # noqa: ANN201 - a contextvars Token
    """Make ``facts`` current; returns the token :func:`unbind` takes."""
    return _current.set(facts)


def unbind(token) -> None:  # noqa: ANN001 - a contextvars Token
    _current.reset(token)
