"""Background jobs (ingest, reindex, drift): list them, poll one, read its report, cancel it.

An unknown job is 404 ``job_not_found``; a job without a report (yet) 404 ``report_not_found``
(``ragwall.api.errors.ERRORS``).

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from ragwall.api.deps import Admin, SvcDep
from ragwall.api.models import JobOut
from ragwall.api.routes.common import job_out

router = APIRouter()


JobKind = Literal["ingest", "reindex", "drift"]


@router.get("/v1/jobs", response_model=list[JobOut], tags=["index"])
def list_jobs(
    svc: SvcDep,
    who: Admin,
    kind: Annotated[list[JobKind] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[JobOut]:
    """The newest jobs, newest first, running ones with their live progress: ingests (the
    scheduler's syncs among them, actor ``scheduler``), reindexes and drift comparisons.
    ``kind`` (repeatable) keeps those kinds only."""
    return [job_out(j) for j in svc.recent_jobs(limit, tuple(kind or ()))]


@router.get("/v1/jobs/{job_id}", response_model=JobOut, tags=["index"])
def get_job(job_id: str, svc: SvcDep, who: Admin) -> JobOut:
    return job_out(svc.job(job_id))


@router.get(
    "/v1/jobs/{job_id}/report",
    tags=["eval"],
    responses={200: {"content": {"text/html": {}, "application/json": {}}}},
)
def job_report(
    job_id: str,
    svc: SvcDep,
    who: Admin,
    format: Annotated[Literal["html", "json"], Query()] = "html",
) -> FileResponse:
    """A drift job's (or a gated reindex's) report: ``report.html`` with its plots, or
    ``drift.json`` with ``?format=json``."""
    name = "report.html" if format == "html" else "drift.json"
    path = svc.job_report(job_id, name)
    media = "text/html; charset=utf-8" if format == "html" else "application/json"
    headers = {"Cache-Control": "no-store"}
    if format == "html":  # a report runs no script and loads nothing: say so to the browser
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return FileResponse(path, media_type=media, headers=headers)


@router.delete("/v1/jobs/{job_id}", response_model=JobOut, status_code=202, tags=["index"])
def cancel_job(job_id: str, svc: SvcDep, who: Admin) -> JobOut:
    """Cancel a running job: a reindex stops at its next document and deletes its partial
    version, a drift comparison stops at its next query, an ingest stops at once (its parser
    workers are killed, its pending chunks cleared). The job ends ``cancelled``."""
    return job_out(svc.cancel_job(who.key_id, job_id))
