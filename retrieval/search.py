"""Hybrid retrieval: dense and BM25 branches searched in Qdrant, fused, optionally reranked.

The access filter (the caller's groups), the request's filters and ``state = live`` form one
Qdrant filter that applies to every branch of the query; nothing is filtered after the engine.

The engine searches each branch under that filter; the rankings are fused with Qdrant's formulas
by :mod:`ragwall.retrieval.candidates`, in one deterministic order. By default chunks are fused
(weighted RRF, or DBSF). ``fuse="document"`` fuses documents instead: each branch's chunks become
a document ranking; the documents are fused by weighted RRF and each is returned as its best
chunk. DBSF is always chunk-level.

Invariant: the same index and the same request give the same hits in the same order. Every tie is
broken the same way: in the candidates (see :mod:`ragwall.retrieval.candidates`), by the
reranker (a stable sort: equal rerank scores keep the fused order), by mirror collapsing and by
the defenses (both keep the order they are given).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ragwall.defend.query import Candidate, DefenseConfig, defend
from ragwall.embed import DenseEncoder
from ragwall.payload import LIVE, Key, provenance
from ragwall.retrieval.candidates import FuseLevel, fetch_candidates
from ragwall.retrieval.freshness import boost_recent
from ragwall.retrieval.sparse import bm25_query_vector, tokenize
from ragwall.retrieval.store import (
    Branch,
    Filter,
    Fusion,
    Match,
    MatchAny,
    Range,
    SparseVec,
    Store,
)
from ragwall.settings import RETRIEVE
from ragwall.telemetry import tracing

#: The most chunks one fetch reads (a document's, or the ids asked for).
MAX_FETCH_CHUNKS = 2000


class QueryEncoder(Protocol):
    def encode_query(self, query: str) -> Any: ...


class Reranker(Protocol):
    model_id: str

    def score(self, query: str, passages: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True)
class SearchFilter:
    """What a caller may narrow a search to. ``None`` means no restriction on that field."""

    sources: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None
    min_trust: float | None = None
    doc_sha256: tuple[str, ...] | None = None
    modified_after: int | None = None  # epoch seconds: documents modified at or after it


def access_filter(
    allowed_groups: Sequence[str] | None,
    request: SearchFilter,
    quarantined_sources: Sequence[str] = (),
    quarantined_docs: Sequence[str] = (),
) -> Filter:
    """The one Qdrant filter for a search.

    ``allowed_groups`` are the caller's (its API key's) groups: a chunk is visible only if it
    shares one. ``None`` means an unrestricted caller. A request's ``groups`` narrow further; they
    can never widen, since both conditions must hold. Quarantined sources and documents are
    excluded by the same filter, so the engine never returns them.
    """
    must: list = [Match(Key.STATE, LIVE)]
    if allowed_groups is not None:
        must.append(MatchAny(Key.GROUPS, tuple(allowed_groups) or ("\x00no-group",)))
    if request.groups is not None:
        must.append(MatchAny(Key.GROUPS, tuple(request.groups) or ("\x00no-group",)))
    if request.sources is not None:
        must.append(MatchAny(Key.SOURCE_ID, tuple(request.sources) or ("\x00no-source",)))
    if request.doc_sha256 is not None:
        must.append(MatchAny(Key.DOC_SHA256, tuple(request.doc_sha256) or ("\x00no-doc",)))
    if request.min_trust is not None:
        must.append(Range(Key.TRUST, gte=request.min_trust))
    if request.modified_after is not None:  # chunks ingested before the field existed: none
        must.append(Range(Key.DOC_MODIFIED_TS, gte=request.modified_after))
    must_not: list = []
    if quarantined_sources:
        must_not.append(MatchAny(Key.SOURCE_ID, tuple(quarantined_sources)))
    if quarantined_docs:
        must_not.append(MatchAny(Key.DOC_SHA256, tuple(quarantined_docs)))
    return Filter(must=tuple(must), must_not=tuple(must_not))


@dataclass
class ScoredChunk:
    id: str
    text: str
    provenance: dict[str, Any]
    trust: float
    scores: dict[str, float | None]
    flags: list[dict[str, str]] = field(default_factory=list)
    vector: list[float] | None = None  # the dense vector, kept only while defenses run
    #: The same passage in other sources (mirrored content), collapsed into this hit.
    also_in: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SearchResult:
    hits: list[ScoredChunk]
    timings_ms: dict[str, float]
    rerank_applied: bool
    rerank_skipped_reason: str | None
    candidates: int
    dropped: int = 0


class HybridSearcher:
    """Embeds the query, runs the fused query in Qdrant, scores its hits per branch, reranks."""

    def __init__(
        self,
        store: Store,
        encoder: DenseEncoder,
        reranker: Reranker | None = None,
        query_encoder: QueryEncoder | None = None,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.reranker = reranker
        # Queries may be embedded by a faster twin of the passage encoder (ONNX int8).
        self.query_encoder: QueryEncoder = query_encoder or encoder

    def search(
        self,
        query: str,
        flt: Filter,
        top_k: int = RETRIEVE.top_k,
        candidates: int = RETRIEVE.candidates,
        fusion: Fusion = "rrf",
        rrf_k: int = 60,
        rerank: bool = False,
        stages: Sequence[str] = ("dense", "bm25"),
        defenses: DefenseConfig | None = None,
        rerank_depth: int | None = None,
        fuse: FuseLevel = "chunk",
        bm25_weight: float = 1.0,
        freshness_half_life_days: float | None = None,
    ) -> SearchResult:
        """Search within ``flt``; with ``defenses`` every candidate is checked and the policy applied.

        Parameters:
            query: the search text.
            flt: the one Qdrant filter (build it with :func:`access_filter`: it carries the
                caller's groups, the request's narrowing and the quarantine).
            top_k: hits to return.
            candidates: candidates each branch fetches (what fusion, the reranker and the
                defenses see).
            fusion: ``rrf`` (reciprocal rank) or ``dbsf`` (distribution-based score fusion).
            rrf_k: the RRF constant.
            rerank: rerank with the configured cross-encoder (skipped, with a reason, if none).
            stages: the branches to run: ``dense``, ``bm25`` or both.
            defenses: the query-time defenses' thresholds and policy; ``None`` runs none.
            rerank_depth: rerank only the top this many candidates; the rest keep fused order.
            fuse: ``document`` (RRF over each branch's documents, one hit per document: its best
                chunk) or ``chunk`` (chunks fused). Only RRF fuses documents.
            bm25_weight: the BM25 branch's RRF weight (the dense branch's is 1).
            freshness_half_life_days: boost recent documents among the candidates
                (:mod:`ragwall.retrieval.freshness`); ``None``: no boost.
        """
        timings: dict[str, float] = {}
        with _stage("embed", timings):
            branches: list[Branch] = []
            if "dense" in stages:
                branches.append(Branch("dense", self.query_encoder.encode_query(query), candidates))
            if "bm25" in stages:
                sparse = bm25_query_vector(tokenize(query))
                if sparse.indices:  # a query of stopwords alone has no BM25 branch
                    branches.append(
                        Branch(
                            "bm25",
                            SparseVec(sparse.indices, sparse.values),
                            candidates,
                            bm25_weight,
                        )
                    )
        if not branches:
            return SearchResult([], timings, False, None, 0)

        with _stage("search", timings):
            want_rerank = rerank and self.reranker is not None
            widen = want_rerank or defenses or freshness_half_life_days
            limit = max(candidates, top_k) if widen else top_k
            fused, by_branch = fetch_candidates(
                self.store, branches, limit, flt, fusion, rrf_k, fuse, defenses is not None
            )
        fused_score_name = "fused" if len(branches) > 1 else branches[0].using

        hits = [
            _scored(
                h,
                dense=by_branch.get("dense", {}).get(h.id),
                sparse=by_branch.get("bm25", {}).get(h.id),
                fused=h.score if fused_score_name == "fused" else None,
            )
            for h in fused
        ]

        applied, skipped = False, None
        if rerank and self.reranker is None:
            skipped = "no reranker is configured (RAGWALL_RERANKER_MODEL)"
        elif want_rerank and hits:
            with _stage("rerank", timings):
                head, tail = hits[: rerank_depth or len(hits)], hits[rerank_depth or len(hits) :]
                try:
                    scores = self.reranker.score(query, [h.text for h in head])
                except Exception as exc:  # a broken model must not take retrieval down
                    skipped = f"reranker failed: {type(exc).__name__}: {exc}"
                else:
                    for h, s in zip(head, scores, strict=True):
                        h.scores["rerank"] = float(s)
                    head.sort(key=lambda h: h.scores["rerank"], reverse=True)
                    hits = head + tail  # below the reranked depth, the fused order stands
                    applied = True
        if freshness_half_life_days:
            hits = boost_recent(hits, freshness_half_life_days, time.time())
        hits = collapse_mirrors(hits)
        n_candidates = len(hits)
        dropped = 0
        if defenses is not None and hits:
            with _stage("defend", timings):
                hits, dropped = _defend(query, hits, defenses)
        for h in hits:
            h.vector = None
        return SearchResult(hits[:top_k], timings, applied, skipped, n_candidates, dropped)

    def fetch(self, flt: Filter, limit: int, defenses: DefenseConfig | None = None) -> SearchResult:
        """The chunks within ``flt`` (an :func:`access_filter`, narrowed to chunk ids or to a
        document), in document order (source, document, chunk index), at most ``limit``.

        With ``defenses``, every chunk is checked and the policy applied as a search's hits are
        (there is no query: the checks that compare chunks with one find nothing). At most
        :data:`MAX_FETCH_CHUNKS` chunks are read; ``candidates`` says how many were found.
        """
        timings: dict[str, float] = {}
        with _stage("fetch", timings):
            found: list = []
            offset: str | None = None
            while len(found) < MAX_FETCH_CHUNKS:
                page, offset = self.store.scroll(
                    flt,
                    limit=min(256, MAX_FETCH_CHUNKS - len(found)),
                    offset=offset,
                    with_vectors=defenses is not None,
                )
                found += page
                if offset is None:
                    break
        found.sort(
            key=lambda h: (
                str(h.payload.get(Key.SOURCE_ID, "")),
                str(h.payload.get(Key.DOC_URI, "")),
                int(h.payload.get(Key.CHUNK_INDEX) or 0),
                h.id,
            )
        )
        hits = [_scored(h) for h in found]
        dropped = 0
        if defenses is not None and hits:
            order = {h.id: i for i, h in enumerate(hits)}
            with _stage("defend", timings):
                hits, dropped = _defend("", hits, defenses)
            hits.sort(key=lambda h: order[h.id])  # document order, whatever the policy moved
        for h in hits:
            h.vector = None
        return SearchResult(hits[:limit], timings, False, None, len(found), dropped)


def _scored(
    h: Any, dense: float | None = None, sparse: float | None = None, fused: float | None = None
) -> ScoredChunk:
    """A stored point as a hit: its text, provenance, trust and scores (the dense vector kept,
    when it was read, for the defenses)."""
    return ScoredChunk(
        id=h.id,
        text=h.payload.get(Key.TEXT, ""),
        provenance=provenance(h.payload),
        trust=float(h.payload.get(Key.TRUST, 0.0)),
        scores={
            "dense": dense,
            "sparse": sparse,
            "fused": fused,
            "rerank": None,
            "freshness": None,
        },
        vector=h.dense,
    )


@contextmanager
def _stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time a stage into ``timings`` (ms), inside a ``ragwall.<name>`` span when tracing."""
    start = time.perf_counter()
    with tracing.span(name):
        yield
    timings[name] = _ms(start)


def _passage_key(text: str) -> str:
    """Identity of a passage's text: case and whitespace do not count."""
    return hashlib.sha256(" ".join(text.lower().split()).encode()).hexdigest()


def collapse_mirrors(hits: list[ScoredChunk]) -> list[ScoredChunk]:
    """One hit per passage across sources: the same text from several sources (a file mirrored
    in a wiki and a shared drive) is one item, at its best rank, carried by its most trusted
    copy, the other copies listed in ``also_in``. Copies within one source stay separate hits.

    Invariant: only hits the caller may see are merged (this runs on filtered results), so
    ``also_in`` never reveals a source outside the caller's groups.
    """
    keys = [_passage_key(h.text) for h in hits]
    groups: dict[str, list[ScoredChunk]] = {}
    for key, h in zip(keys, hits, strict=True):
        groups.setdefault(key, []).append(h)
    if all(len(g) == 1 for g in groups.values()):
        return hits
    out: list[ScoredChunk] = []
    merged: set[int] = set()
    for key, h in zip(keys, hits, strict=True):
        if id(h) in merged:
            continue
        copies, seen_sources = [], set()
        for g in sorted(groups[key], key=lambda x: -x.trust):  # the most trusted copy carries it
            source = g.provenance.get(Key.SOURCE_ID)
            if id(g) not in merged and source not in seen_sources:
                seen_sources.add(source)
                copies.append(g)
        if len(copies) <= 1 or h not in copies:
            out.append(h)
            merged.add(id(h))
            continue
        keeper = copies[0]
        keeper.also_in += [_copy_of(other) for other in copies[1:]]
        merged.update(id(c) for c in copies)
        out.append(keeper)
    return out


def _copy_of(hit: ScoredChunk) -> dict[str, Any]:
    """Where a collapsed copy of a passage lives (an entry of ``also_in``)."""
    return {
        "id": hit.id,
        "source_id": hit.provenance.get(Key.SOURCE_ID),
        "doc_uri": hit.provenance.get(Key.DOC_URI),
        "doc_name": hit.provenance.get("doc_name"),
        "doc_sha256": hit.provenance.get(Key.DOC_SHA256),
        "trust_tier": hit.provenance.get("trust_tier"),
        "trust": hit.trust,
    }


def _defend(
    query: str, hits: list[ScoredChunk], cfg: DefenseConfig
) -> tuple[list[ScoredChunk], int]:

    cands = [
        Candidate(
            source_id=str(h.provenance.get("source_id", "")),
            trust_tier=str(h.provenance.get("trust_tier", "")),
            trust=h.trust,
            text=h.text,
            dense_score=h.scores.get("dense"),
            vector=h.vector,
            injection_score=float(h.provenance.get("injection_score") or 0.0),
            injection_reasons=h.provenance.get("injection_reasons") or (),
            hidden_text=bool(h.provenance.get("hidden_text")),
            hidden_reasons=h.provenance.get("hidden_reasons") or (),
            also_in_sources=tuple(str(a["source_id"]) for a in h.also_in),
            doc_id=str(h.provenance.get(Key.DOC_SHA256) or ""),
        )
        for h in hits
    ]
    outcome = defend(
        cands,
        [float(i) for i in range(len(hits))],
        tokenize(query),
        lambda i: tokenize(hits[i].text),
        cfg,
    )
    for h, c in zip(hits, cands, strict=True):
        h.flags = c.flags
        h.trust = c.trust
    return [hits[i] for i in outcome.order], outcome.dropped


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
