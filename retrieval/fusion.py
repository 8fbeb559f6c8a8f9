"""Fusion of per-branch rankings: small pure functions, Qdrant's formulas, a total order.

Chunk-level fusion (:func:`fuse_chunks`, the default) computes what Qdrant's own fusion of
prefetches computes (RRF with weights, or DBSF), over rankings the search has put in a
deterministic order; the engine leaves equal scores in an arbitrary order (it gathers fused
points in a hash map), so Ragwall fuses them itself and breaks every tie the same way: by fused
score, then the best rank in any branch, then the point id.

Document-level reciprocal rank fusion:

Peers rank whole documents; Ragwall indexes chunks. Fusing chunk lists lets one long document's
chunks crowd a branch's candidates and splits a document's evidence over several entries, so
document-level fusion (``RAGWALL_FUSE_LEVEL=document``; chunks are the default) works on
documents:

1. each branch's chunk ranking becomes a document ranking, a document taking the rank of its best
   chunk in that branch (the first ``depth`` distinct documents are kept);
2. a document's fused score is ``sum(1 / (k - 1 + rank_b / weight_b))`` over the branches that
   found it, ranks from 1: reciprocal rank fusion (Cormack et al. 2009) exactly as Qdrant computes
   it for chunks (its rank counts from 0, and a weight divides the rank), so ``rrf_k`` and the
   branch weights mean the same at both levels. Ties are broken by the best rank in any branch,
   then by first appearance;
3. a document is represented by its best chunk: the one with the highest chunk-level RRF score
   over the same lists (same formula, ``k`` and weights), so every hit still carries one
   passage and its provenance. One hit per document.

Invariants: fusion only reorders what the engine returned; it never adds a chunk that no branch
found, so the access filter applied by the engine to every branch still bounds the result. The
same rankings always fuse to the same order.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Ranked:
    """One chunk of a branch's ranking and the document it belongs to."""

    chunk_id: str
    doc: Hashable


@dataclass(frozen=True)
class FusedDoc:
    """A fused document: its score and the chunk that represents it."""

    doc: Hashable
    chunk_id: str
    score: float


def rrf_term(rank: int, k: int, weight: float = 1.0) -> float:
    """One branch's RRF contribution at ``rank`` (from 1), as Qdrant weighs it."""
    return 1.0 / (k - 1 + rank / weight)


@dataclass(frozen=True)
class FusedChunk:
    """A fused chunk: its score and its best (lowest, from 1) rank in any branch."""

    chunk_id: str
    score: float
    best_rank: int


def dbsf_normalise(scores: Sequence[float]) -> list[float]:
    """Qdrant's DBSF normalisation of one branch's scores: ``(s - lo) / (hi - lo)`` with
    ``lo, hi = mean -/+ 3 * sample standard deviation``; 0.5 for a single score or when all are
    equal."""
    n = len(scores)
    if n < 2:
        return [0.5] * n
    mean = math.fsum(scores) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in scores) / (n - 1))
    lo, hi = mean - 3.0 * std, mean + 3.0 * std
    if hi == lo:
        return [0.5] * n
    return [(x - lo) / (hi - lo) for x in scores]


def fuse_chunks(
    branches: Sequence[Sequence[tuple[str, float]]],
    fusion: Literal["rrf", "dbsf"] = "rrf",
    k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[FusedChunk]:
    """Fuse per-branch chunk rankings (each ``(chunk id, score)``, best first, no id twice) into
    one, best first, ties broken by the best rank in any branch, then the chunk id.

    ``rrf``: ``sum(1 / (k - 1 + rank_b / weight_b))``, as Qdrant weighs it. ``dbsf``: the sum of
    each branch's :func:`dbsf_normalise`-d scores (weights do not apply, as in Qdrant).
    """
    weights = [1.0] * len(branches) if weights is None else list(weights)
    if len(weights) != len(branches):
        raise ValueError(f"{len(weights)} weights for {len(branches)} branches")
    if fusion not in ("rrf", "dbsf"):
        raise ValueError(f"unknown fusion {fusion!r}; use 'rrf' or 'dbsf'")
    score: dict[str, float] = {}
    best: dict[str, int] = {}
    for ranking, w in zip(branches, weights, strict=True):
        if fusion == "rrf":
            terms = [rrf_term(rank, k, w) for rank in range(1, len(ranking) + 1)]
        else:
            terms = dbsf_normalise([s for _, s in ranking])
        for rank, ((chunk_id, _), term) in enumerate(zip(ranking, terms, strict=True), start=1):
            score[chunk_id] = score.get(chunk_id, 0.0) + term
            best[chunk_id] = min(best.get(chunk_id, rank), rank)
    order = sorted(score, key=lambda c: (-score[c], best[c], c))
    return [FusedChunk(c, score[c], best[c]) for c in order]


def document_ranking(chunks: Sequence[Ranked], depth: int | None = None) -> list[Hashable]:
    """Distinct documents in order of their best chunk; the first ``depth`` of them."""
    seen: dict[Hashable, None] = {}
    for c in chunks:
        if c.doc not in seen:
            seen[c.doc] = None
            if depth is not None and len(seen) >= depth:
                break
    return list(seen)


def rrf_documents(
    branches: Sequence[Sequence[Ranked]],
    k: int = 60,
    weights: Sequence[float] | None = None,
    depth: int | None = None,
) -> list[FusedDoc]:
    """Fuse per-branch chunk rankings into documents, best first (see the module docstring).

    Parameters:
        branches: each branch's chunks, best first.
        k: the RRF constant.
        weights: one weight per branch (default 1 each).
        depth: documents taken from each branch (default: all it returned).
    """
    weights = [1.0] * len(branches) if weights is None else list(weights)
    if any(w <= 0 for w in weights):
        raise ValueError(f"branch weights must be positive, got {weights}")
    if len(weights) != len(branches):
        raise ValueError(f"{len(weights)} weights for {len(branches)} branches")
    doc_score: dict[Hashable, float] = {}
    best_rank: dict[Hashable, int] = {}
    chunk_score: dict[str, float] = {}
    chunk_doc: dict[str, Hashable] = {}
    for chunks, w in zip(branches, weights, strict=True):
        ranking = document_ranking(chunks, depth)
        kept = set(ranking)
        for rank, doc in enumerate(ranking, start=1):
            doc_score[doc] = doc_score.get(doc, 0.0) + rrf_term(rank, k, w)
            best_rank[doc] = min(best_rank.get(doc, rank), rank)
        for rank, c in enumerate(chunks, start=1):
            if c.doc in kept:
                chunk_score[c.chunk_id] = chunk_score.get(c.chunk_id, 0.0) + rrf_term(rank, k, w)
                chunk_doc[c.chunk_id] = c.doc
    best_chunk: dict[Hashable, str] = {}
    for chunk_id, doc in chunk_doc.items():  # first-seen order breaks ties between chunks
        if doc not in best_chunk or chunk_score[chunk_id] > chunk_score[best_chunk[doc]]:
            best_chunk[doc] = chunk_id
    order = sorted(doc_score, key=lambda d: (-doc_score[d], best_rank[d]))
    return [FusedDoc(d, best_chunk[d], doc_score[d]) for d in order]
