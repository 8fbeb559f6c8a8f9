"""Sources, their ingest jobs, and the quarantine of sources and documents (admin keys only).

Each route is one service call; its errors are answered by ``ragwall.api.errors.ERRORS``
(``source_not_found``, ``source_exists``, ``invalid_source``, ``ingest_running`` naming the
running job, ``idempotency_key_reused``, ``invalid_request``).

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from ragwall.api.deps import Admin, SvcDep
from ragwall.api.models import (
    JobOut,
    QuarantineIn,
    QuarantineOut,
    SourceIn,
    SourceOut,
    SourceRemoved,
)
from ragwall.api.routes.common import accepted

router = APIRouter()


@router.get("/v1/sources", response_model=list[SourceOut], tags=["admin"])
def list_sources(svc: SvcDep, who: Admin) -> list[SourceOut]:
    return [SourceOut(**s.source.model_dump()) for s in svc.list_sources()]


@router.post("/v1/sources", response_model=SourceOut, status_code=201, tags=["admin"])
def add_source(body: SourceIn, svc: SvcDep, who: Admin) -> SourceOut:
    source = svc.add_source(who.key_id, body.id, body.path, body.trust, body.groups)
    return SourceOut(**source.model_dump())


@router.delete("/v1/sources/{source_id}", response_model=SourceRemoved, tags=["admin"])
def remove_source(source_id: str, svc: SvcDep, who: Admin) -> SourceRemoved:
    """Remove a source and every chunk it contributed (from every ready version, so a rollback
    does not bring it back). 404 for an unknown source; 409 while it is being ingested."""
    return SourceRemoved(source_id=source_id, chunks=svc.remove_source(who.key_id, source_id))


@router.post(
    "/v1/sources/{source_id}/ingest", response_model=JobOut, status_code=202, tags=["admin"]
)
def ingest_source(
    source_id: str,
    svc: SvcDep,
    who: Admin,
    force: bool = False,
    allow_mass_removal: bool = False,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    """Ingest a source into the active version, as a background job: poll ``GET /v1/jobs/{id}``
    (progress: documents done of total); its result is the ingest's summary (``documents``,
    ``chunks``, ``unchanged``, ``removed``, ``failed``, ...). ``force=true`` re-processes unchanged
    files too (after a parser or detector change for this source). A retried call with the same
    ``Idempotency-Key`` returns the same job. 404 for an unknown source; 409 ``ingest_running``
    while the source is being ingested (the running job is named). A sync that would remove more
    than ``RAGWALL_MAX_REMOVAL_SHARE`` of the source's live documents changes nothing: the job
    fails with result ``{"reason": "mass_removal", …}``; ``allow_mass_removal=true`` removes
    them on purpose."""
    return accepted(
        svc.start_ingest(who.key_id, source_id, force, idempotency_key, allow_mass_removal)
    )


@router.post("/v1/sources/{source_id}/quarantine", response_model=QuarantineOut, tags=["defend"])
def quarantine_source(
    source_id: str, svc: SvcDep, who: Admin, body: QuarantineIn | None = None
) -> QuarantineOut:
    """Kill switch: from the moment this returns, no retrieve returns the source's chunks."""
    reason = body.reason if body else ""
    changed = svc.set_quarantine(who.key_id, "source", source_id, True, reason)
    return QuarantineOut(kind="source", value=source_id, quarantined=True, changed=changed)


@router.post("/v1/sources/{source_id}/release", response_model=QuarantineOut, tags=["defend"])
def release_source(source_id: str, svc: SvcDep, who: Admin) -> QuarantineOut:
    """Lift a source's quarantine: its chunks are retrievable again."""
    changed = svc.set_quarantine(who.key_id, "source", source_id, False, "")
    return QuarantineOut(kind="source", value=source_id, quarantined=False, changed=changed)


@router.post("/v1/documents/{doc_sha256}/quarantine", response_model=QuarantineOut, tags=["defend"])
def quarantine_document(
    doc_sha256: str, svc: SvcDep, who: Admin, body: QuarantineIn | None = None
) -> QuarantineOut:
    """Quarantine one document, by the sha256 of its bytes (a hit's `doc_sha256`)."""
    reason = body.reason if body else ""
    changed = svc.set_quarantine(who.key_id, "document", doc_sha256, True, reason)
    return QuarantineOut(kind="document", value=doc_sha256, quarantined=True, changed=changed)


@router.post("/v1/documents/{doc_sha256}/release", response_model=QuarantineOut, tags=["defend"])
def release_document(doc_sha256: str, svc: SvcDep, who: Admin) -> QuarantineOut:
    changed = svc.set_quarantine(who.key_id, "document", doc_sha256, False, "")
    return QuarantineOut(kind="document", value=doc_sha256, quarantined=False, changed=changed)


@router.get("/v1/quarantine", tags=["defend"])
def list_quarantine(svc: SvcDep, who: Admin) -> list[dict[str, str]]:
    return svc.quarantine_list()
