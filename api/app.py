"""The HTTP API (FastAPI): retrieval for agents, source administration for admins.

No `from __future__ import annotations` here: FastAPI reads the dependency annotations of the
routes defined inside `create_app` at run time.
"""

import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.audit import AuditLog
from api.keys import DEV_PRINCIPAL, KeyStore, Principal
from api.models import (
    ContextOut,
    ErrorResponse,
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
from defend.query import DefenseConfig
from ingest.pipeline import Ingester
from ingest.sources import make_source
from ingest.state import State
from retrieval.embed import DenseEncoder
from retrieval.errors import ModelError, RagwallError, SourceExists, SourceNotFound, StoreError
from retrieval.search import HybridSearcher, SearchFilter, access_filter
from retrieval.settings import Settings
from retrieval.store import Store, open_store

log = logging.getLogger("ragwall.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


@dataclass
class Services:
    settings: Settings
    state: State
    keys: KeyStore
    audit: AuditLog
    encoder: DenseEncoder
    store: Store
    searcher: HybridSearcher
    ingester: Ingester

    def close(self) -> None:
        for closer in (self.store.close, self.audit.close, self.keys.close, self.state.close):
            try:
                closer()
            except Exception:  # closing must not mask the shutdown
                log.exception("error while closing")


def open_services(settings: Settings) -> Services:
    encoder = DenseEncoder(
        settings.embedding_model, settings.embedding_device, settings.embed_batch_size
    )
    state = State(settings.state_path)
    keys = KeyStore(settings.state_path)
    audit = AuditLog.for_settings(settings)
    store = open_store(settings, encoder.dim)
    reranker = None
    if settings.reranker_model:
        from rerank import load_reranker

        reranker = load_reranker(settings.reranker_model, cache_dir=settings.data_dir / "models")
    searcher = HybridSearcher(store, encoder, reranker, _query_encoder(settings, encoder))
    return Services(
        settings,
        state,
        keys,
        audit,
        encoder,
        store,
        searcher,
        Ingester(settings, state, store, encoder),
    )


def _query_encoder(settings: Settings, encoder: DenseEncoder):  # noqa: ANN202
    """The ONNX int8 query encoder when configured and faithful, else None (PyTorch)."""
    if settings.query_encoder != "onnx":
        return None
    from retrieval.onnx_embed import load_query_encoder

    try:
        return load_query_encoder(encoder, settings.data_dir / "models")
    except ModelError as exc:
        log.warning("queries will be embedded with PyTorch: %s", exc)
        return None


def _error(
    status: int, code: str, message: str, details: list | None = None, headers=None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return JSONResponse(status_code=status, content=body, headers=headers)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The app. Pass ``services`` to share already-open ones (tests); else it opens its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services or open_services(settings or Settings())
        if app.state.services.settings.dev_mode:
            log.warning("RAGWALL_DEV_MODE is on: the API accepts calls without a key")
        try:
            yield
        finally:
            if owned:
                app.state.services.close()

    app = FastAPI(
        title="Ragwall",
        version="0.1.0",
        description="Retrieval that AI agents can trust: every hit with provenance, trust and flags.",
        lifespan=lifespan,
        responses={
            401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
            403: {"model": ErrorResponse, "description": "The key lacks the scope"},
            422: {"model": ErrorResponse, "description": "Invalid request"},
        },
    )

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # noqa: ANN001, ANN202
        limit = request.app.state.services.settings.max_request_bytes
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return _error(413, "request_too_large", f"request bodies are limited to {limit} bytes")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")}
            for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return _error(422, "invalid_request", f"{where}: {first['msg']}", details)

    @app.exception_handler(ApiError)
    async def on_api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(StoreError)
    async def on_store(_: Request, exc: StoreError) -> JSONResponse:
        log.error("store failure: %s", exc)
        return _error(503, "store_unavailable", str(exc))

    def services_dep(request: Request) -> Services:
        return request.app.state.services

    def principal(request: Request, svc: Annotated[Services, Depends(services_dep)]) -> Principal:
        header = request.headers.get("authorization", "")
        key = (
            header[7:].strip()
            if header.lower().startswith("bearer ")
            else request.headers.get("x-api-key", "")
        )
        if not key:
            if svc.settings.dev_mode:
                return DEV_PRINCIPAL
            raise ApiError(
                401,
                "unauthorized",
                "an API key is required: 'Authorization: Bearer rw_…'",
                {"WWW-Authenticate": "Bearer"},
            )
        found = svc.keys.authenticate(key)
        if found is None:
            raise ApiError(
                401,
                "unauthorized",
                "the API key is invalid or revoked",
                {"WWW-Authenticate": "Bearer"},
            )
        return found

    def require(scope: str):  # noqa: ANN202
        def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if not who.allows(scope):
                raise ApiError(
                    403, "forbidden", f"this key has scope {who.scope!r}; {scope!r} is needed"
                )
            return who

        return check

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health, "description": "Not ready"}},
    )
    def readyz(svc: Annotated[Services, Depends(services_dep)]):  # noqa: ANN201
        """Readiness: the index answers and the embedding model is loaded."""
        try:
            points = svc.store.count()
            dim = svc.encoder.dim
        except Exception as exc:
            return JSONResponse(
                status_code=503, content={"status": "unavailable", "detail": {"error": str(exc)}}
            )
        return Health(status="ready", detail={"points": str(points), "embedding_dim": str(dim)})

    @app.post("/v1/retrieve", response_model=RetrieveResponse, tags=["retrieve"])
    def retrieve(
        body: RetrieveRequest,
        svc: Annotated[Services, Depends(services_dep)],
        who: Annotated[Principal, Depends(require("retrieve"))],
    ) -> RetrieveResponse:
        """Hybrid search (dense + BM25 fused by Qdrant), filtered by the key's access groups."""
        request_id = uuid.uuid4().hex
        f = body.filters
        blocked_sources, blocked_docs = svc.state.quarantined()
        flt = access_filter(
            who.groups,
            SearchFilter(
                sources=tuple(f.sources) if f.sources is not None else None,
                groups=tuple(f.groups) if f.groups is not None else None,
                min_trust=f.min_trust,
                doc_sha256=tuple(f.doc_sha256) if f.doc_sha256 is not None else None,
            ),
            blocked_sources,
            blocked_docs,
        )
        s = svc.settings
        want_rerank = s.rerank_by_default if body.rerank is None else body.rerank
        want_defenses = s.defenses_by_default if body.defenses is None else body.defenses
        policy = body.policy or who.policy or s.default_policy
        result = svc.searcher.search(
            body.query,
            flt,
            top_k=body.top_k,
            candidates=body.candidates,
            fusion=body.fusion,
            rrf_k=s.rrf_k,
            rerank=want_rerank,
            defenses=defense_config(s, policy, svc.state) if want_defenses else None,
        )
        context = None
        if body.context:
            context = _context(result.hits, body.max_context_tokens, svc)
        svc.audit.append(
            "retrieve",
            who.key_id,
            request_id=request_id,
            query_sha256=hashlib.sha256(body.query.encode()).hexdigest(),
            filters=f.model_dump(exclude_none=True),
            results=[
                {
                    "id": h.id,
                    "source_id": h.provenance.get("source_id"),
                    "doc_sha256": h.provenance.get("doc_sha256"),
                    "flags": [fl["kind"] for fl in h.flags],
                }
                for h in result.hits
            ],
            dropped=result.dropped,
        )
        reranker = svc.searcher.reranker
        return RetrieveResponse(
            request_id=request_id,
            hits=[
                {
                    "id": h.id,
                    "text": h.text,
                    "trust": h.trust,
                    "scores": h.scores,
                    "flags": h.flags,
                    "provenance": h.provenance,
                }
                for h in result.hits
            ],
            candidates=result.candidates,
            rerank=RerankInfo(
                requested=want_rerank,
                applied=result.rerank_applied,
                model=reranker.model_id if reranker else None,
                skipped_reason=result.rerank_skipped_reason,
            ),
            defenses=want_defenses,
            policy=policy if want_defenses else None,
            dropped=result.dropped,
            context=context,
            timings_ms=result.timings_ms,
        )

    @app.get("/v1/sources", response_model=list[SourceOut], tags=["admin"])
    def list_sources(
        svc: Annotated[Services, Depends(services_dep)],
        who: Annotated[Principal, Depends(require("admin"))],
    ) -> list[SourceOut]:
        return [SourceOut(**s.model_dump()) for s in svc.state.list_sources()]

    @app.post("/v1/sources", response_model=SourceOut, status_code=201, tags=["admin"])
    def add_source(
        body: SourceIn,
        svc: Annotated[Services, Depends(services_dep)],
        who: Annotated[Principal, Depends(require("admin"))],
    ) -> SourceOut:
        try:
            source = make_source(body.id, body.path, body.trust, body.groups)
            svc.state.add_source(source)
        except SourceExists as exc:
            raise ApiError(409, "source_exists", str(exc)) from exc
        except RagwallError as exc:
            raise ApiError(422, "invalid_source", str(exc)) from exc
        svc.audit.append("source.add", who.key_id, source=source.model_dump())
        return SourceOut(**source.model_dump())

    @app.post("/v1/sources/{source_id}/ingest", response_model=IngestSummary, tags=["admin"])
    def ingest_source(
        source_id: str,
        svc: Annotated[Services, Depends(services_dep)],
        who: Annotated[Principal, Depends(require("admin"))],
    ) -> IngestSummary:
        try:
            source = svc.state.get_source(source_id)
        except SourceNotFound as exc:
            raise ApiError(404, "source_not_found", str(exc)) from exc
        report = svc.ingester.ingest(source)
        svc.audit.append(
            "source.ingest",
            who.key_id,
            source_id=source_id,
            run_id=report.run_id,
            summary={k: v for k, v in report.summary().items() if k != "failed"},
            failed=len(report.failed),
        )
        return IngestSummary(**report.summary())

    def _set_quarantine(
        svc: Services, who: Principal, kind: str, value: str, on: bool, reason: str
    ) -> QuarantineOut:
        if kind == "document" and not _SHA256.fullmatch(value):
            raise ApiError(422, "invalid_request", "doc_sha256 must be 64 lowercase hex digits")
        if on:
            changed = svc.state.quarantine(kind, value, reason, datetime.now(UTC).isoformat())
        else:
            changed = svc.state.release(kind, value)
        svc.audit.append(
            f"{kind}.{'quarantine' if on else 'release'}",
            who.key_id,
            **{"source_id" if kind == "source" else "doc_sha256": value},
            reason=reason,
            changed=changed,
        )
        return QuarantineOut(kind=kind, value=value, quarantined=on, changed=changed)

    @app.post("/v1/sources/{source_id}/quarantine", response_model=QuarantineOut, tags=["defend"])
    def quarantine_source(
        source_id: str,
        svc: Annotated[Services, Depends(services_dep)],
        who: Annotated[Principal, Depends(require("admin"))],
        body: QuarantineIn | None = None,
    ) -> QuarantineOut:
        """Kill switch: from the moment this returns, no retrieve returns the source's chunks."""
        try:
            svc.state.get_source(source_id)
        except SourceNotFound as exc:
            raise ApiError(404, "source_not_found", str(exc)) from exc
        return _set_quarantine(svc, who, "source", source_id, True, body.reason if body else "")

    @app.post("/v1/sources/{source_id}/release", response_model=QuarantineOut, tags=["defend"])
    def release_source(
        source_id: str,
        svc: Annotated[Services, Depends(services_dep)],
        who: Annotated[Principal, Depends(require("admin"))],
    ) -> QuarantineOut:
        """Lift a source's quarantine: its chunks are retrievable again."""
        return _set_quarantine(svc, who, "source", source_id, False, "")

    @app.post(
        "/v1/documents/{doc_sha256}/quarantine", response_model=QuarantineOut, tags=["defend"]
    )
    def quarantine_document(
        doc_sha256: str,
        svc: Annotated[Services, Depends(services_dep)],
        who: Annotated[Principal, Depends(require("admin"))],
        body: QuarantineIn | None = None,
    ) -> QuarantineOut:
        """Quarantine one document, by the sha256 of its bytes (a hit's `doc_sha256`)."""
        return _set_quarantine(svc, who, "document", doc_sha256, True, body.reason if body else "")

    @app.post("/v1/documents/{doc_sha256}/release", response_model=QuarantineOut, tags=["defend"])
    def release_document(
        doc_sha256: str,
        svc: Annotated[Services, Depends(services_dep)],
        who: Annotated[Principal, Depends(require("admin"))],
    ) -> QuarantineOut:
        return _set_quarantine(svc, who, "document", doc_sha256, False, "")

    @app.get("/v1/quarantine", tags=["defend"])
    def list_quarantine(
        svc: Annotated[Services, Depends(services_dep)],
        who: Annotated[Principal, Depends(require("admin"))],
    ) -> list[dict[str, str]]:
        return svc.state.quarantine_list()

    return app


_SHA256 = re.compile(r"[0-9a-f]{64}")


def defense_config(settings: Settings, policy: str, state: State) -> DefenseConfig:
    """The query-time defenses as the settings describe them, with the sources' history."""
    cutoff = datetime.now(UTC) - timedelta(days=settings.new_source_days)
    new = frozenset(
        src.id for src in state.list_sources() if datetime.fromisoformat(src.created_at) > cutoff
    )
    return DefenseConfig(
        policy=policy,  # type: ignore[arg-type]
        injection_threshold=settings.injection_threshold,
        low_trust=settings.low_trust_threshold,
        flood_min=settings.flood_min,
        flood_cosine=settings.flood_cosine,
        mirror_min_cosine=settings.mirror_min_cosine,
        mirror_margin=settings.mirror_margin,
        mirror_coverage=settings.mirror_coverage,
        trust_weight=settings.trust_weight,
        heuristic_tiers=tuple(settings.heuristic_tiers),
        new_sources=new,
    )


def _context(hits, max_tokens: int, svc: Services) -> ContextOut:  # noqa: ANN001
    from defend.spotlight import Passage, build_context

    counter = _token_counter(svc)
    ctx = build_context(
        [
            Passage(
                id=h.id,
                text=h.text,
                source_id=str(h.provenance.get("source_id", "")),
                doc_name=str(h.provenance.get("doc_name") or h.provenance.get("doc_uri", "")),
                trust=h.trust,
                flags=[f["kind"] for f in h.flags],
                mark=_flagged_span(h),
            )
            for h in hits
        ],
        max_tokens,
        counter,
    )
    return ContextOut(
        text=ctx.text, included=ctx.included, truncated=ctx.truncated, tokens=ctx.tokens
    )


def _flagged_span(hit) -> tuple[int, int] | None:  # noqa: ANN001 - a search hit
    """The characters the injection detector flagged, when this hit carries the flag."""
    span = hit.provenance.get("injection_span")
    if not span or not any(f["kind"] == "injection" for f in hit.flags):
        return None
    return int(span[0]), int(span[1])


def _token_counter(svc: Services):  # noqa: ANN202
    """Tokens by the embedding model's tokenizer: close to, not equal to, an LLM's count."""
    tokenizer = svc.encoder.tokenizer
    return lambda text: len(
        tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
    )
