"""Retrieve: search within what the caller may see, with the defenses, audited and observed.

Invariants:

- **The access filter binds every search**: a caller sees the sources of its groups (a
  group-less source only by an unrestricted key), minus quarantined sources and documents
  (``ragwall.retrieval.search.access_filter``), and no chunk below its key's trust floor
  (``min_trust``, ``ragwall.service.names.with_floor``), whatever filters it asks for.
- **Every retrieve appends one audit record** with the query's hash (never its text), the filters
  and what was returned; its ``request_id`` is the HTTP request's (``ragwall.telemetry.facts``),
  so the response, its log line and its audit record share it.
- **Observed here, not in the front doors**: per-stage time, hits, flags, dropped and demoted
  hits go to the metrics and to the request's log line.
- A retrieve runs on the index version it leased when it began (``ragwall.service.index``).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ragwall.defend.spotlight import Context, Passage, build_context
from ragwall.embed import DenseEncoder
from ragwall.ingest.registry import Registry
from ragwall.retrieval.search import SearchFilter, SearchResult, access_filter
from ragwall.service.index import IndexHandle
from ragwall.service.keys import Principal
from ragwall.service.names import check_names, with_floor
from ragwall.service.runtime import Runtime
from ragwall.service.staleness import KIND as STALE
from ragwall.service.staleness import flag_stale, utc_now
from ragwall.settings import RETRIEVE, DefenseConfig, Settings
from ragwall.telemetry import Metrics, tracing
from ragwall.telemetry import current as current_request


@dataclass(frozen=True)
class RetrieveParams:
    """One retrieve, as any front door asks for it. ``None`` means "the server's default"."""

    query: str
    filters: SearchFilter = SearchFilter()
    top_k: int = RETRIEVE.top_k
    candidates: int = RETRIEVE.candidates
    fusion: str = RETRIEVE.fusion
    rerank: bool | None = None
    defenses: bool | None = None
    policy: str | None = None
    #: Boost recent documents (``ragwall.retrieval.freshness``); ``None``: the server's setting.
    freshness_half_life_days: float | None = None
    context: bool = False
    max_context_tokens: int = RETRIEVE.max_context_tokens
    #: Refuse source and group names the caller cannot see (``ragwall.service.names``) instead
    #: of searching them to nothing: what an agent's MCP call asks for.
    strict_names: bool = False


@dataclass(frozen=True)
class Retrieval:
    """What a retrieve found, and how it was served."""

    request_id: str
    index_version: str
    result: SearchResult
    rerank_requested: bool
    reranker_model: str | None
    defenses: bool
    policy: str | None
    context: Context | None


def defense_config(settings: Settings, registry: Registry, policy: str) -> DefenseConfig:
    """The query-time defenses as the settings describe them, with the sources' history."""
    s = settings
    cutoff = datetime.now(UTC) - timedelta(days=s.new_source_days)
    new = frozenset(
        src.id for src in registry.list_sources() if datetime.fromisoformat(src.created_at) > cutoff
    )
    return DefenseConfig(
        policy=policy,  # type: ignore[arg-type]
        injection_threshold=s.injection_threshold,
        low_trust=s.low_trust_threshold,
        flood_min=s.flood_min,
        flood_cosine=s.flood_cosine,
        mirror_coverage=s.mirror_coverage,
        mirror_z=s.mirror_z,
        mirror_lead_coverage=s.mirror_lead_coverage,
        mirror_lead_z=s.mirror_lead_z,
        trust_weight=s.trust_weight,
        heuristic_tiers=tuple(s.heuristic_tiers),
        new_sources=new,
    )


class Retriever:
    """Runs retrieves.

    Parameters:
        rt: the runtime (index, registry, audit, settings).
        metrics: where each retrieve is counted.
    """

    def __init__(self, rt: Runtime, metrics: Metrics) -> None:
        self.rt = rt
        self.metrics = metrics

    def retrieve(
        self, who: Principal, params: RetrieveParams, action: str = "retrieve"
    ) -> Retrieval:
        """Search within what ``who`` may see (its groups, minus quarantined content).

        ``params`` fields left ``None`` take the server's settings (rerank, defenses), and the
        policy falls back from the request to the key's to the server's. ``action`` names the
        audit record (``retrieve``; ``mcp.search`` for an agent's MCP call).
        """
        with self.rt.index.lease() as active:
            return self._retrieve(who, params, active, action)

    def _retrieve(
        self, who: Principal, params: RetrieveParams, active: IndexHandle, action: str
    ) -> Retrieval:
        if params.strict_names:
            check_names(self.rt.registry, who, params.filters, self.rt.settings.trust_priors)
        request_id = current_request_id()
        blocked_sources, blocked_docs = self.rt.registry.quarantined()
        asked = with_floor(who, params.filters)
        flt = access_filter(who.groups, asked, blocked_sources, blocked_docs)
        s = self.rt.settings
        want_rerank = s.rerank_by_default if params.rerank is None else params.rerank
        want_defenses = s.defenses_by_default if params.defenses is None else params.defenses
        policy = params.policy or who.policy or s.default_policy
        result = active.searcher.search(
            params.query,
            flt,
            top_k=params.top_k,
            candidates=params.candidates,
            fusion=params.fusion,  # type: ignore[arg-type]
            rrf_k=s.rrf_k,
            fuse=s.fuse_level,
            bm25_weight=s.bm25_weight,
            rerank=want_rerank,
            defenses=defense_config(s, self.rt.registry, policy) if want_defenses else None,
            freshness_half_life_days=params.freshness_half_life_days or s.freshness_half_life_days,
        )
        flag_stale(result.hits, self.rt.syncs.all(), utc_now())  # informational (staleness)
        context = (
            self._context(result, params.max_context_tokens, active.encoder)
            if params.context
            else None
        )
        audit_start = time.perf_counter()
        with tracing.span("audit"):
            self._audit_retrieve(who, params, request_id, active.name, result, action)
        timings = {**result.timings_ms, "audit": _ms_since(audit_start)}
        self._observe_retrieve(params, policy if want_defenses else None, result, timings)
        reranker = active.searcher.reranker
        return Retrieval(
            request_id=request_id,
            index_version=active.name,
            result=result,
            rerank_requested=want_rerank,
            reranker_model=reranker.model_id if reranker else None,
            defenses=want_defenses,
            policy=policy if want_defenses else None,
            context=context,
        )

    def _audit_retrieve(
        self,
        who: Principal,
        params: RetrieveParams,
        request_id: str,
        index_version: str,
        result: SearchResult,
        action: str,
    ) -> None:
        self.rt.audit.append(
            action,
            who.key_id,
            request_id=request_id,
            index_version=index_version,
            query_sha256=hashlib.sha256(params.query.encode()).hexdigest(),
            filters={k: v for k, v in asdict(params.filters).items() if v is not None},
            results=audited_hits(result.hits),
            context_tokens=context_tokens(result.hits),
            dropped=result.dropped,
            **who.audit_context(),
        )

    def _observe_retrieve(
        self,
        params: RetrieveParams,
        policy: str | None,
        result: SearchResult,
        timings: dict[str, float],
    ) -> None:
        """A retrieve's metrics, and its facts for the request's log line."""
        if not self.rt.settings.telemetry:
            return
        kinds = [kind for h in result.hits for kind in {f["kind"] for f in h.flags}]
        sunk = [h for h in result.hits if any(f["kind"] != STALE for f in h.flags)]
        demoted = len(sunk) if policy == "demote" else 0  # a stale flag sinks nothing
        self.metrics.retrieve(timings, len(result.hits), kinds, result.dropped, demoted)
        facts = current_request()
        if facts is not None:
            facts.stages_ms.update(timings)
            facts.hits = len(result.hits)
            facts.flags.update(kinds)
            facts.dropped, facts.demoted = result.dropped, demoted
            if self.rt.settings.log_queries:
                facts.query = params.query

    def _context(self, result: SearchResult, max_tokens: int, encoder: DenseEncoder) -> Context:
        tokenizer = encoder.tokenizer

        def count(text: str) -> int:
            # The embedding model's tokenizer: close to, not equal to, an LLM's count.
            return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

        return build_context(
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
                for h in result.hits
            ],
            max_tokens,
            count,
        )


def audited_hits(hits: list[Any]) -> list[dict[str, Any]]:
    """What an audit record keeps of the hits it returned: ids, where from, flags (no text)."""
    return [
        {
            "id": h.id,
            "source_id": h.provenance.get("source_id"),
            "doc_sha256": h.provenance.get("doc_sha256"),
            "flags": [fl["kind"] for fl in h.flags],
        }
        for h in hits
    ]


def context_tokens(hits: list[Any]) -> int:
    """The tokens of text the hits hand a caller (the embedding model's tokenizer, counted at
    ingest): what ``ragwall usage`` reports as context returned."""
    return sum(int(h.provenance.get("token_count") or 0) for h in hits)


def current_request_id() -> str:
    """The HTTP request's id (``ragwall.telemetry.facts``), or a fresh one outside a request."""
    facts = current_request()
    return facts.request_id if facts is not None else uuid.uuid4().hex


def _flagged_span(hit: Any) -> tuple[int, int] | None:
    """The characters the injection detector flagged, when this hit carries the flag."""
    span = hit.provenance.get("injection_span")
    if not span or not any(f["kind"] == "injection" for f in hit.flags):
        return None
    return int(span[0]), int(span[1])


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
