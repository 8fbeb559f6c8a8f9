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
    SourceScheduleIn,
    SyncFailure,
)
from ragwall.api.routes.common import accepted
from ragwall.durations import format_duration, parse_duration
from ragwall.service import Source, SyncState

router = APIRouter()


def source_out(source: Source, sync: SyncState | None = None) -> SourceOut:
    """A source with its schedule and last sync (``ragwall.service.syncs``)."""
    out = SourceOut(**source.model_dump())
    if sync is None:
        return out
    nxt = sync.next_sync_at()
    failure = None
    if sync.last_failure_at is not None:
        failure = SyncFailure(
            at=sync.last_failure_at,
            reason=sync.last_failure_reason or "error",
            error=sync.last_failure_error,
        )
    return out.model_copy(
        update={
            "refresh": format_duration(sync.refresh_s) if sync.refresh_s else None,
            "stale_after": format_duration(sync.stale_after_s) if sync.stale_after_s else None,
            "last_sync_at": sync.last_sync_at,
            "last_sync_ok": sync.last_sync_ok,
            "next_sync_at": nxt.isoformat() if nxt is not None else None,
            "last_failure": failure,
        }
    )


def _seconds(text: str | None) -> int | None:
    return None if text is None else int(parse_duration(text).total_seconds())


@router.get("/v1/sources", response_model=list[SourceOut], tags=["admin"])
def list_sources(svc: SvcDep, who: Admin) -> list[SourceOut]:
    """Every source, with its schedule (``refresh``, ``stale_after``) and its syncs
    (``last_sync_at``, ``last_sync_ok``, ``next_sync_at``, ``last_failure``)."""
    return [source_out(s.source, s.sync) for s in svc.list_sources()]


@router.post("/v1/sources", response_model=SourceOut, status_code=201, tags=["admin"])
def add_source(body: SourceIn, svc: SvcDep, who: Admin) -> SourceOut:
    """Register a source; with ``refresh`` (``15m``), the server syncs it on that schedule."""
    refresh, stale_after = _seconds(body.refresh), _seconds(body.stale_after)
    source = svc.add_source(
        who.key_id, body.id, body.path, body.trust, body.groups, refresh_s=refresh,
        stale_after_s=stale_after, kind=body.kind, max_pages=body.max_pages,
    )  # fmt: skip
    return source_out(source, SyncState(source.id, refresh, stale_after))


@router.patch("/v1/sources/{source_id}", response_model=SourceOut, tags=["admin"])
def set_source_schedule(
    source_id: str, body: SourceScheduleIn, svc: SvcDep, who: Admin
) -> SourceOut:
    """Change a source's ``refresh`` and ``stale_after`` (a field left out stays; ``null``
    removes it). The scheduler picks the change up at its next tick."""
    given = body.model_dump(exclude_unset=True)
    changes = {f"{k}_s": _seconds(v) for k, v in given.items()}
    return source_out(*svc.set_source_schedule(who.key_id, source_id, changes))


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
