"""Index versions: list them, build a new one (a reindex job), and switch between them.

A switch (activate, rollback) is one service call: ``version_not_found``, ``invalid_request`` and
``switch_refused`` (naming the running job) come from ``ragwall.api.errors.ERRORS``; a refused
reindex start is ``job_running`` or ``idempotency_key_reused`` (naming the job).

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from ragwall.api.deps import Admin, SvcDep
from ragwall.api.models import ActivateIn, IndexOut, JobOut, SwitchOut
from ragwall.api.routes.common import accepted
from ragwall.service import ReindexChanges

router = APIRouter(tags=["index"])


@router.get("/v1/index", response_model=IndexOut)
def index_versions(svc: SvcDep, who: Admin) -> IndexOut:
    """The active version and every version the registry knows, newest first."""
    return IndexOut(**svc.index_info())


@router.post("/v1/index/reindex", response_model=JobOut, status_code=202)
def reindex(
    svc: SvcDep,
    who: Admin,
    body: ReindexChanges | None = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    """Build a new version from the registered sources while the active one serves, then switch.

    The body names settings to change (the rest come from the environment), and may ask for a
    full ``rebuild`` and a drift ``gate``: the new version is compared with the active one on the
    gate's queries before the switch; a failing gate leaves it ``ready`` (the job fails, its
    report at ``GET /v1/jobs/{id}/report``) unless ``force`` is set. A retried call with the same
    ``Idempotency-Key`` returns the same job (422 ``idempotency_key_reused`` with another body).
    409 ``job_running`` while another reindex or drift job runs."""
    return accepted(svc.start_reindex(who.key_id, body, idempotency_key))


@router.post("/v1/index/rollback", response_model=SwitchOut)
def rollback(svc: SvcDep, who: Admin) -> SwitchOut:
    """Make the previous ready version active again: one switch, no rebuild."""
    return SwitchOut(**svc.rollback(who.key_id))


@router.post("/v1/index/activate", response_model=SwitchOut)
def activate(body: ActivateIn, svc: SvcDep, who: Admin) -> SwitchOut:
    """Make any ready version the active one."""
    return SwitchOut(**svc.activate(who.key_id, body.version))
