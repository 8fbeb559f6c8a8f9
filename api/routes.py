"""The HTTP routes: each is request → one service call → response model.

Handlers are plain module-level functions, importable and callable on their own (a test may call
``retrieve(body, service, principal)`` directly). Authentication and scopes are dependencies:
``require("admin")`` refuses a key without that scope before the handler runs.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from ragwall.api.guard import ApiError, authenticate, authorize_metrics
from ragwall.api.models import (
    ActivateIn,
    ContextOut,
    Health,
    IndexOut,
    JobOut,
    QuarantineIn,
    QuarantineOut,
    RerankInfo,
    RetrieveRequest,
    RetrieveResponse,
    SourceIn,
    SourceOut,
    SourceRemoved,
    SwitchOut,
)
from ragwall.errors import (
    IdempotencyKeyReused,
    RagwallError,
    SourceBusy,
    SourceExists,
    SourceNotFound,
)
from ragwall.retrieval.search import SearchFilter
from ragwall.service import (
    Conflict,
    InvalidRequest,
    NotFound,
    Principal,
    RetrieveParams,
    Service,
)
from ragwall.service.drift import DriftRequest
from ragwall.service.reindex import ReindexChanges
from ragwall.telemetry import CONTENT_TYPE


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
            raise ApiError(403, "forbidden", who.refusal(scope))
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


@router.get(
    "/metrics",
    tags=["health"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request, svc: SvcDep) -> Response:
    """Prometheus metrics (text format). Scraped with the ``RAGWALL_METRICS_TOKEN`` as a bearer
    token, or with an admin key; 401 without either."""
    if not svc.settings.telemetry:
        raise ApiError(404, "metrics_off", "metrics are off on this server (RAGWALL_TELEMETRY=0)")
    authorize_metrics(svc, {k.lower(): v for k, v in request.headers.items()})
    return Response(svc.metrics.exposition(), media_type=CONTENT_TYPE)


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
        index_version=done.index_version,
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


@router.delete("/v1/sources/{source_id}", response_model=SourceRemoved, tags=["admin"])
def remove_source(source_id: str, svc: SvcDep, who: Admin) -> SourceRemoved:
    """Remove a source and every chunk it contributed (from every ready version, so a rollback
    does not bring it back). 404 for an unknown source; 409 while it is being ingested."""
    try:
        chunks = svc.remove_source(who.key_id, source_id)
    except SourceNotFound as exc:
        raise ApiError(404, "source_not_found", str(exc)) from exc
    except SourceBusy as exc:
        raise ApiError(409, "ingest_running", str(exc)) from exc
    return SourceRemoved(source_id=source_id, chunks=chunks)


@router.post(
    "/v1/sources/{source_id}/ingest", response_model=JobOut, status_code=202, tags=["admin"]
)
def ingest_source(
    source_id: str,
    svc: SvcDep,
    who: Admin,
    force: bool = False,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    """Ingest a source into the active version, as a background job: poll ``GET /v1/jobs/{id}``
    (progress: documents done of total); its result is the ingest's summary (``documents``,
    ``chunks``, ``unchanged``, ``removed``, ``failed``, ...). ``force=true`` re-processes unchanged
    files too (after a parser or detector change for this source). A retried call with the same
    ``Idempotency-Key`` returns the same job. 404 for an unknown source; 409 ``ingest_running``
    while the source is being ingested (the running job is named)."""
    try:
        job = svc.start_ingest(who.key_id, source_id, force, idempotency_key)
    except SourceNotFound as exc:
        raise ApiError(404, "source_not_found", str(exc)) from exc
    except RagwallError as exc:
        raise _job_refused(exc) from exc
    return _accepted(job)


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


# -- index versions and jobs ---------------------------------------------------------------------
def _job_out(job) -> JobOut:  # noqa: ANN001 - a JobRecord
    result = job.result or {}
    return JobOut(
        job_id=job.id,
        kind=job.kind,
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


def _job_refused(exc: RagwallError) -> ApiError:
    """A refused job start, as the API answers it (every job route maps errors here)."""
    if isinstance(exc, IdempotencyKeyReused):
        return ApiError(422, "idempotency_key_reused", str(exc), job_id=exc.job_id)
    if isinstance(exc, SourceBusy):
        return ApiError(409, "ingest_running", str(exc), job_id=exc.job_id)
    if isinstance(exc, Conflict):
        return ApiError(409, "job_running", str(exc), job_id=exc.job_id)
    if isinstance(exc, NotFound):
        return ApiError(404, "version_not_found", str(exc))
    if isinstance(exc, InvalidRequest):
        return ApiError(422, "invalid_request", str(exc))
    raise exc


def _accepted(job) -> JSONResponse:  # noqa: ANN001 - a JobRecord
    """202 with the job, and where to poll it."""
    return JSONResponse(
        _job_out(job).model_dump(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"}
    )


@router.get("/v1/index", response_model=IndexOut, tags=["index"])
def index_versions(svc: SvcDep, who: Admin) -> IndexOut:
    """The active version and every version the registry knows, newest first."""
    return IndexOut(**svc.index_info())


@router.post("/v1/index/reindex", response_model=JobOut, status_code=202, tags=["index"])
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
    try:
        job = svc.start_reindex(who.key_id, body, idempotency_key)
    except RagwallError as exc:
        raise _job_refused(exc) from exc
    return _accepted(job)


@router.get("/v1/jobs/{job_id}", response_model=JobOut, tags=["index"])
def get_job(job_id: str, svc: SvcDep, who: Admin) -> JobOut:
    try:
        return _job_out(svc.job(job_id))
    except NotFound as exc:
        raise ApiError(404, "job_not_found", str(exc)) from exc


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
    try:
        path = svc.job_report(job_id, name)
    except NotFound as exc:
        raise ApiError(404, "report_not_found", str(exc)) from exc
    media = "text/html; charset=utf-8" if format == "html" else "application/json"
    headers = {"Cache-Control": "no-store"}
    if format == "html":  # a report runs no script and loads nothing: say so to the browser
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return FileResponse(path, media_type=media, headers=headers)


@router.post("/v1/eval/drift", response_model=JobOut, status_code=202, tags=["eval"])
def eval_drift(body: DriftRequest, svc: SvcDep, who: Admin) -> JSONResponse:
    """Compare two index states (versions, or snapshots given in the body) on the body's queries,
    as a background job: poll ``GET /v1/jobs/{id}``; the result is the comparison, and the report
    is at ``GET /v1/jobs/{id}/report``. Checked as ``ragwall eval drift`` checks it, before any
    job starts: 404 for a version that is unknown or cannot serve (retired, failed), 422 for bad
    input; 409 ``job_running`` while a reindex or drift job runs."""
    try:
        job = svc.start_drift(who.key_id, body)
    except RagwallError as exc:
        raise _job_refused(exc) from exc
    return _accepted(job)


@router.delete("/v1/jobs/{job_id}", response_model=JobOut, status_code=202, tags=["index"])
def cancel_job(job_id: str, svc: SvcDep, who: Admin) -> JobOut:
    """Cancel a running job: a reindex stops at its next document and deletes its partial
    version, a drift comparison stops at its next query, an ingest stops at once (its parser
    workers are killed, its pending chunks cleared). The job ends ``cancelled``."""
    try:
        return _job_out(svc.cancel_job(who.key_id, job_id))
    except NotFound as exc:
        raise ApiError(404, "job_not_found", str(exc)) from exc


def _switch(call) -> SwitchOut:  # noqa: ANN001 - a zero-argument service call
    try:
        return SwitchOut(**call())
    except NotFound as exc:
        raise ApiError(404, "version_not_found", str(exc)) from exc
    except InvalidRequest as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    except Conflict as exc:
        raise ApiError(409, "switch_refused", str(exc), job_id=exc.job_id) from exc


@router.post("/v1/index/rollback", response_model=SwitchOut, tags=["index"])
def rollback(svc: SvcDep, who: Admin) -> SwitchOut:
    """Make the previous ready version active again: one switch, no rebuild."""
    return _switch(lambda: svc.rollback(who.key_id))


@router.post("/v1/index/activate", response_model=SwitchOut, tags=["index"])
def activate(body: ActivateIn, svc: SvcDep, who: Admin) -> SwitchOut:
    """Make any ready version the active one."""
    return _switch(lambda: svc.activate(who.key_id, body.version))
