"""``POST /v1/retrieve``: request → one ``Service.retrieve`` call → response model.

Hybrid search (dense + BM25 fused by Qdrant), filtered by the key's access groups; a retrieve
key (or an admin key) may call it.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from fastapi import APIRouter

from ragwall.api.deps import Reader, SvcDep
from ragwall.api.models import ContextOut, RerankInfo, RetrieveRequest, RetrieveResponse
from ragwall.retrieval.search import SearchFilter
from ragwall.service import RetrieveParams

router = APIRouter(tags=["retrieve"])


@router.post("/v1/retrieve", response_model=RetrieveResponse)
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
                modified_after=f.modified_after_ts(),
            ),
            top_k=body.top_k,
            candidates=body.candidates,
            fusion=body.fusion,
            rerank=body.rerank,
            defenses=body.defenses,
            policy=body.policy,
            freshness_half_life_days=body.freshness_half_life_days,
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
