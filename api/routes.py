"""The HTTP routes: each is request → one service call → response model.

Handlers are plain module-level functions, importable and callable on their own (a test may call
``retrieve(body, service, principal)`` directly). Authentication and scopes are dependencies:
``require("admin")`` refuses a key without that scope before the handler runs.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ragwall.api.guard import ApiError, authenticate
from ragwall.api.models import (
    ContextOut,
    Health,
    IngestSummary,
    QuarantineIn,
    QuarantineOut,
    RerankInfo,
    RetrieveRequest,
    RetrieveResponse,
    SourceIn,
    SourceOut,
)
from ragwall.errors import RagwallError, SourceBusy, SourceExists, SourceNotFound
from ragwall.retrieval.search import SearchFilter
from ragwall.service import InvalidRequest, Principal, RetrieveParams, Service


def service_of(request: Request) -> Service:
    return request.app.state.service


def principal(request: Request, svc: Annotated[Service, Depends(service_of)]) -> Principal:
    """The caller: authenticated by the request guard before the body was read."""
    who = getattr(request.state, "principal", None)
    if who is not None:
        return who
    # A route reached without the guard (an app assembled by hand) authenticates here.
    return authenticate(svc, {k.lower(): v for k, v in request.headers.items()})


def require(scope: str):  # noqa: ANN201 - a FastAPI dependency
    """A dependency that admits keys with ``scope`` (admin keys admit every scope)."""

    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.allows(scope):
            raise ApiError(
                403, "forbidden", f"this key has scope {who.scope!r}; {scope!r} is needed"
            )
        return who

    return check


SvcDep = Annotated[Service, Depends(service_of)]
Reader = Annotated[Principal, Depends(require("retrieve"))]
Admin = Annotated[Principal, Depends(require("admin"))]

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["health"])
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    tags=["health"],
    responses={503: {"model": Health, "description": "Not ready"}},
)
def readyz(svc: SvcDep):  # noqa: ANN201 - a Health or a 503 response
    """Readiness: the index answers and the embedding model is loaded."""
    try:
        ready = svc.readiness()
    except Exception as exc:
        return JSONResponse(
            status_code=503, content={"status": "unavailable", "detail": {"error": str(exc)}}
        )
    return Health(status="ready", detail={k: str(v) for k, v in ready.items()})


@router.post("/v1/retrieve", response_model=RetrieveResponse, tags=["retrieve"])
def retrieve(body: RetrieveRequest, svc: SvcDep, who: Reader) -> RetrieveResponse:
    """Hybrid search (dense + BM25 fused by Qdrant), filtered by the key's access groups."""
    f = body.filters
    done = svc.retrieve(
        who,
        RetrieveParams(
            query=body.query,
            filters=SearchFilter(
                sources=tuple(f.sources) if f.sources is not None else None,
                groups=tuple(f.groups) if f.groups is not None else None,
                min_trust=f.min_trust,
                doc_sha256=tuple(f.doc_sha256) if f.doc_sha256 is not None else None,
            ),
            top_k=body.top_k,
            candidates=body.candidates,
            fusion=body.fusion,
            rerank=body.rerank,
            defenses=body.defenses,
            policy=body.policy,
            context=body.context,
            max_context_tokens=body.max_context_tokens,
        ),
    )
    result, ctx = done.result, done.context
    return RetrieveResponse(
        request_id=done.request_id,
        hits=[
            {
                "id": h.id,
                "text": h.text,
                "trust": h.trust,
                "scores": h.scores,
                "flags": h.flags,
                "provenance": h.provenance,
                "also_in": h.also_in,
            }
            for h in result.hits
        ],
        candidates=result.candidates,
        rerank=RerankInfo(
            requested=done.rerank_requested,
            applied=result.rerank_applied,
            model=done.reranker_model,
            skipped_reason=result.rerank_skipped_reason,
        ),
        defenses=done.defenses,
        policy=done.policy,
        dropped=result.dropped,
        context=None
        if ctx is None
        else ContextOut(
            text=ctx.text, included=ctx.included, truncated=ctx.truncated, tokens=ctx.tokens
        ),
        timings_ms=result.timings_ms,
    )


@router.get("/v1/sources", response_model=list[SourceOut], tags=["admin"])
def list_sources(svc: SvcDep, who: Admin) -> list[SourceOut]:
    return [SourceOut(**s.source.model_dump()) for s in svc.list_sources()]


@router.post("/v1/sources", response_model=SourceOut, status_code=201, tags=["admin"])
def add_source(body: SourceIn, svc: SvcDep, who: Admin) -> SourceOut:
    try:
        source = svc.add_source(who.key_id, body.id, body.path, body.trust, body.groups)
    except SourceExists as exc:
        raise ApiError(409, "source_exists", str(exc)) from exc
    except RagwallError as exc:
        raise ApiError(422, "invalid_source", str(exc)) from exc
    return SourceOut(**source.model_dump())


@router.post("/v1/sources/{source_id}/ingest", response_model=IngestSummary, tags=["admin"])
def ingest_source(source_id: str, svc: SvcDep, who: Admin) -> IngestSummary:
    try:
        report = svc.ingest(who.key_id, source_id)
    except SourceNotFound as exc:
        raise ApiError(404, "source_not_found", str(exc)) from exc
    except SourceBusy as exc:
        raise ApiError(409, "ingest_running", str(exc)) from exc
    return IngestSummary(**report.summary())


def _quarantine(
    svc: Service, who: Principal, kind: str, value: str, on: bool, reason: str
) -> QuarantineOut:
    try:
        changed = svc.set_quarantine(who.key_id, kind, value, on, reason)
    except SourceNotFound as exc:
        raise ApiError(404, "source_not_found", str(exc)) from exc
    except InvalidRequest as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    return QuarantineOut(kind=kind, value=value, quarantined=on, changed=changed)


@router.post("/v1/sources/{source_id}/quarantine", response_model=QuarantineOut, tags=["defend"])
def quarantine_source(
    source_id: str, svc: SvcDep, who: Admin, body: QuarantineIn | None = None
) -> QuarantineOut:
    """Kill switch: from the moment this returns, no retrieve returns the source's chunks."""
    return _quarantine(svc, who, "source", source_id, True, body.reason if body else "")


@router.post("/v1/sources/{source_id}/release", response_model=QuarantineOut, tags=["defend"])
def release_source(source_id: str, svc: SvcDep, who: Admin) -> QuarantineOut:
    """Lift a source's quarantine: its chunks are retrievable again."""
    return _quarantine(svc, who, "source", source_id, False, "")


@router.post("/v1/documents/{doc_sha256}/quarantine", response_model=QuarantineOut, tags=["defend"])
def quarantine_document(
    doc_sha256: str, svc: SvcDep, who: Admin, body: QuarantineIn | None = None
) -> QuarantineOut:
    """Quarantine one document, by the sha256 of its bytes (a hit's `doc_sha256`)."""
    return _quarantine(svc, who, "document", doc_sha256, True, body.reason if body else "")


@router.post("/v1/documents/{doc_sha256}/release", response_model=QuarantineOut, tags=["defend"])
def release_document(doc_sha256: str, svc: SvcDep, who: Admin) -> QuarantineOut:
    return _quarantine(svc, who, "document", doc_sha256, False, "")


@router.get("/v1/quarantine", tags=["defend"])
def list_quarantine(svc: SvcDep, who: Admin) -> list[dict[str, str]]:
    return svc.quarantine_list()
