"""The console's pages and actions: sources (and quarantine), index versions, jobs, flagged
chunks, drift reports and the audit chain.

Invariants:

- **Each action is one service call** (``Service.add_source``, ``start_ingest``,
  ``set_quarantine``, ``remove_source``, ``start_reindex``, ``activate``, ``rollback``), made with
  the signed-in key's id as the actor, so the audit trail records the same thing as the HTTP API
  would; the errors an action expects are shown on the next page (``web.flash``), and it
  redirects (303) to a console page. Reads are ``Service`` calls too (``console_sources``,
  ``recent_jobs``, ``drift_jobs``, ``flagged``, ``audit_status``…).
- Every action needs an :data:`~ragwall.api.console.web.Actor` (a live admin session and its
  CSRF token), every page a :data:`~ragwall.api.console.web.Viewer`.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

import math
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from ragwall.api.console.web import (
    PREFIX,
    REPORT_CSP,
    Actor,
    Viewer,
    flash,
    local,
    render,
    secured,
    svc_of,
    to_page,
)
from ragwall.errors import RagwallError, SourceBusy, SourceNotFound
from ragwall.service import (
    Conflict,
    ConsoleSession,
    FlaggedPage,
    InvalidRequest,
    NotFound,
    ReindexChanges,
)
from ragwall.settings import TRUST_TIERS

FLAGS_PER_PAGE = 50

router = APIRouter(prefix=PREFIX, include_in_schema=False)


# -- sources -----------------------------------------------------------------------------------
@router.get("/sources")
def sources_page(request: Request, session: Viewer) -> Response:
    return render(
        request,
        "sources.html",
        session,
        rows=svc_of(request).console_sources(),
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
    svc = svc_of(request)
    # Refused: SourceExists, a bad id, path or tier.
    source = flash(
        session,
        lambda: svc.add_source(
            session.key_id, source_id.strip(), path.strip(), trust, wanted
        ),  # fmt: skip
    )
    if source is not None:
        session.say(f"source {source.id} added; ingest it to index its documents")
    return to_page("/sources")


@router.post("/sources/{source_id}/ingest")
def ingest(
    request: Request, session: Actor, source_id: str, force: Annotated[bool, Form()] = False
) -> Response:
    """Start an ingest job and show it on the jobs page (its progress, then its summary)."""
    svc = svc_of(request)
    job = flash(
        session,
        lambda: svc.start_ingest(session.key_id, source_id, force),
        (SourceNotFound, SourceBusy),
    )
    if job is None:
        return to_page("/sources")
    session.say(f"ingest job {job.id} of {source_id} started")
    return to_page("/jobs")


@router.post("/sources/{source_id}/remove")
def remove_source(request: Request, session: Actor, source_id: str) -> Response:
    """Remove a source and its chunks (``Service.remove_source``; the page asks first)."""
    svc = svc_of(request)
    n = flash(
        session, lambda: svc.remove_source(session.key_id, source_id), (SourceNotFound, SourceBusy)
    )
    if n is not None:
        session.say(f"source {source_id} removed with its {n} chunks")
    return to_page("/sources")


def _quarantine(
    request: Request, session: ConsoleSession, kind: str, value: str, on: bool, reason: str
) -> None:
    svc = svc_of(request)
    changed = flash(
        session,
        lambda: svc.set_quarantine(session.key_id, kind, value, on, reason),
        (SourceNotFound, InvalidRequest),
    )
    if changed is not None:
        what, verb = f"{kind} {value}", "quarantined" if on else "released"
        session.say(f"{what} {verb}" if changed else f"{what} was already {verb}")


@router.post("/sources/{source_id}/quarantine")
def quarantine_source(
    request: Request,
    session: Actor,
    source_id: str,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    _quarantine(request, session, "source", source_id, True, reason)
    return to_page("/sources")


@router.post("/sources/{source_id}/release")
def release_source(request: Request, session: Actor, source_id: str) -> Response:
    _quarantine(request, session, "source", source_id, False, "")
    return to_page("/sources")


@router.post("/documents/{doc_sha256}/quarantine")
def quarantine_document(
    request: Request,
    session: Actor,
    doc_sha256: str,
    reason: Annotated[str, Form(max_length=500)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    _quarantine(request, session, "document", doc_sha256, True, reason)
    return to_page(local(back, "/flags"))


@router.post("/documents/{doc_sha256}/release")
def release_document(
    request: Request,
    session: Actor,
    doc_sha256: str,
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    _quarantine(request, session, "document", doc_sha256, False, "")
    return to_page(local(back, "/flags"))


# -- index versions and jobs ---------------------------------------------------------------------
@router.get("/index")
def index_page(request: Request, session: Viewer) -> Response:
    svc = svc_of(request)
    return render(request, "index.html", session, info=svc.index_info(), job=svc.latest_reindex())


@router.post("/index/reindex")
def start_reindex(
    request: Request, session: Actor, rebuild: Annotated[bool, Form()] = False
) -> Response:
    svc = svc_of(request)
    job = flash(
        session,
        lambda: svc.start_reindex(session.key_id, ReindexChanges(rebuild=rebuild)),
        (InvalidRequest, Conflict),
    )
    if job is not None:
        session.say(f"reindex job {job.id} started")
    return to_page("/index")


def _switched(session: ConsoleSession, done: dict | None) -> Response:
    if done is not None:
        session.say(f"{done['active']} is active (was {done['previous']})")
    return to_page("/index")


#: What a switch (activate, rollback) is refused with: shown on the index page.
SWITCH_REFUSED = (NotFound, InvalidRequest, Conflict)


@router.post("/index/activate")
def activate(
    request: Request, session: Actor, version: Annotated[str, Form(max_length=40)]
) -> Response:
    svc = svc_of(request)
    done = flash(session, lambda: svc.activate(session.key_id, version), SWITCH_REFUSED)
    return _switched(session, done)


@router.post("/index/rollback")
def rollback(request: Request, session: Actor) -> Response:
    svc = svc_of(request)
    return _switched(session, flash(session, lambda: svc.rollback(session.key_id), SWITCH_REFUSED))


@router.get("/jobs")
def jobs_page(request: Request, session: Viewer) -> Response:
    return render(request, "jobs.html", session, jobs=svc_of(request).recent_jobs())


@router.get("/api/jobs/{job_id}")
def job_progress(request: Request, session: Viewer, job_id: str) -> Response:
    """A job's state and progress, for the progress bar (polled by console.js)."""
    try:
        job = svc_of(request).job(job_id)
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
    svc = svc_of(request)
    try:
        page = svc.flagged(kind, after or None, FLAGS_PER_PAGE, source or None)
    except (ValueError, RagwallError) as exc:
        session.say(f"cannot list flagged chunks: {exc}", "error")
        page = FlaggedPage(kind, [], 0, None)
    return render(
        request,
        "flags.html",
        session,
        page=page,
        kind=kind,
        source=source or "",
        first=not after,
        pages=max(1, math.ceil((page.total or 0) / FLAGS_PER_PAGE)),
        sources=[s.source.id for s in svc.list_sources()],
        here=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
    )


@router.get("/drift")
def drift_page(request: Request, session: Viewer) -> Response:
    return render(request, "drift.html", session, jobs=svc_of(request).drift_jobs())


@router.get("/reports/{job_id}")
def report(request: Request, session: Viewer, job_id: str) -> Response:
    """A drift job's (or a gated reindex's) HTML report, with the API's report CSP."""
    try:
        path = svc_of(request).job_report(job_id, "report.html")
    except (NotFound, InvalidRequest):
        session.say(f"job {job_id} has no report (yet)", "error")
        return to_page("/drift")
    return secured(FileResponse(path, media_type="text/html; charset=utf-8"), REPORT_CSP)


@router.get("/audit")
def audit_page(request: Request, session: Viewer) -> Response:
    return render(request, "audit.html", session, audit=svc_of(request).audit_status())
