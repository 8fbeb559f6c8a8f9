"""What the job routes share: a job as the API shows it, and the 202 that starts one.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from typing import Any

from fastapi.responses import JSONResponse

from ragwall.api.models import JobOut


def job_out(job: Any) -> JobOut:
    """A ``JobRecord`` as the API shows it (with where its report is, when it has one)."""
    result = job.result or {}
    return JobOut(
        job_id=job.id,
        kind=job.kind,
        actor=job.actor,
        state=job.state,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        params=job.params,
        progress=job.progress,
        version=result.get("version"),
        previous=result.get("previous"),
        result=job.result,
        error=job.error,
        report=f"/v1/jobs/{job.id}/report" if job.kind == "drift" or "gate" in result else None,
    )


def accepted(job: Any) -> JSONResponse:
    """202 with the job, and where to poll it."""
    return JSONResponse(
        job_out(job).model_dump(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"}
    )
