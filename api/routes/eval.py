"""``POST /v1/eval/drift``: a drift comparison of two index states, as a background job.

Checked as ``ragwall eval drift`` checks it, before any job starts (``version_not_found``,
``invalid_request``, ``job_running`` from ``ragwall.api.errors.ERRORS``).

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ragwall.api.deps import Admin, SvcDep
from ragwall.api.models import JobOut
from ragwall.api.routes.common import accepted
from ragwall.service import DriftRequest

router = APIRouter(tags=["eval"])


@router.post("/v1/eval/drift", response_model=JobOut, status_code=202)
def eval_drift(body: DriftRequest, svc: SvcDep, who: Admin) -> JSONResponse:
    """Compare two index states (versions, or snapshots given in the body) on the body's queries,
    as a background job: poll ``GET /v1/jobs/{id}``; the result is the comparison, and the report
    is at ``GET /v1/jobs/{id}/report``. Checked as ``ragwall eval drift`` checks it, before any
    job starts: 404 for a version that is unknown or cannot serve (retired, failed), 422 for bad
    input; 409 ``job_running`` while a reindex or drift job runs."""
    return accepted(svc.start_drift(who.key_id, body))
