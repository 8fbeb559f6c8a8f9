"""A query's candidates from the engine, in one deterministic order.

The engine searches every branch (dense, BM25) under the one filter; the branches' rankings are
fused here with Qdrant's formulas (:mod:`ragwall.retrieval.fusion`: RRF or DBSF over chunks, or
RRF over documents).

Invariant: the same index and the same query give the same candidates in the same order. Nothing
depends on the engine's order among equal scores (Qdrant's own fusion gathers points in a hash map
with a random seed, so its fused ties come back in any order, and equal branch scores may too):

- a branch's hits are ordered by score, then point id, and a tie at the branch's limit is read
  whole (the branch asks for more until its last hit scores below the cut, up to
  :data:`MAX_FETCH`), so which of the tied points make the cut is the same every time;
- fusion sees every candidate of every branch and breaks its ties by the best rank in any branch,
  then the point id, so the cut at the requested count is deterministic too.

Two engine round trips per fused search: the branches (ids and scores only, or the fields that
name a document), then, for the chosen hits alone, one query per branch restricted to their ids
that gives each branch's own score (a chunk without any query term has no BM25 score), the dense
one (it scores every point) bringing the payloads and vectors. A single branch is one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ragwall.payload import Key
from ragwall.retrieval.fusion import Ranked, fuse_chunks, rrf_documents
from ragwall.retrieval.store import Branch, Filter, Fusion, HasId, Hit, Query, Store

FuseLevel = Literal["document", "chunk"]
#: What names a document in a ranking: a source's document at one address.
DOC_FIELDS: tuple[str, ...] = (Key.SOURCE_ID, Key.DOC_URI)
#: Chunks a branch fetches per document it should yield (a long document has several).
CHUNKS_PER_DOC = 3
#: Hits a branch fetches past its limit, so that a tie at the limit is usually seen whole at once.
TIE_MARGIN = 8
#: The most hits a branch fetches to see a tie at its limit whole (past it, the tied points
#: fetched are cut by id; the engine chose which of the tie it returned).
MAX_FETCH = 4096


def rank_branches(
    store: Store,
    branches: Sequence[Branch],
    flt: Filter,
    limits: Sequence[int],
    with_payload: bool | tuple[str, ...] = False,
    with_dense: bool = False,
) -> list[list[Hit]]:
    """Each branch's top ``limits[i]`` hits under ``flt``, by score then point id (see the
    module docstring); the branches run as one batch, and again for those cut inside a tie."""
    fetch = [n + TIE_MARGIN for n in limits]
    out: list[list[Hit]] = [[] for _ in branches]
    todo = list(range(len(branches)))
    while todo:
        results = store.query_batch(
            [
                Query(
                    [Branch(branches[i].using, branches[i].vector, fetch[i])],
                    fetch[i],
                    flt,
                    with_payload=with_payload,
                    with_dense=with_dense,
                )
                for i in todo
            ]
        )
        again = []
        for i, hits in zip(todo, results, strict=True):
            hits.sort(key=lambda h: (-h.score, h.id))
            n = limits[i]
            tie_runs_on = len(hits) >= fetch[i] > n and hits[n - 1].score == hits[-1].score
            if tie_runs_on and fetch[i] < MAX_FETCH:
                fetch[i] = min(2 * fetch[i], MAX_FETCH)
                again.append(i)
            else:
                out[i] = hits[:n]
        todo = again
    return out


def _score_and_carry(
    store: Store, branches: Sequence[Branch], ids: tuple[str, ...], flt: Filter, with_dense: bool
) -> tuple[dict[str, Hit], dict[str, dict[str, float]]]:
    """The chosen points' payloads (and dense vectors) and each branch's own score for them:
    one query per branch restricted to ``ids`` (and still to ``flt``)."""
    only = flt & Filter(must=(HasId(ids),))
    # The dense branch first: it scores every point, so it carries payloads and vectors.
    ordered = sorted(branches, key=lambda b: b.using != "dense")
    found = store.query_batch(
        [
            Query(
                [Branch(b.using, b.vector, len(ids))],
                len(ids),
                only,
                with_payload=i == 0,
                with_dense=with_dense and i == 0,
            )
            for i, b in enumerate(ordered)
        ]
    )
    carrier = {h.id: h for h in found[0]}
    by_branch = {
        b.using: {h.id: h.score for h in hits} for b, hits in zip(ordered, found, strict=True)
    }
    return carrier, by_branch


def fetch_candidates(
    store: Store,
    branches: Sequence[Branch],
    limit: int,
    flt: Filter,
    fusion: Fusion = "rrf",
    rrf_k: int = 60,
    fuse: FuseLevel = "chunk",
    with_dense: bool = False,
) -> tuple[list[Hit], dict[str, dict[str, float]]]:
    """The top ``limit`` hits (each with its payload, and its dense vector when asked; its score
    the fused one, or the branch's own for a single branch) and each branch's scores for them.

    ``fuse="document"`` (RRF only) fuses documents: each branch fetches ``CHUNKS_PER_DOC`` chunks
    per document it should yield, and each fused document is its best chunk.
    """
    if not branches:
        return [], {}
    if len(branches) == 1:
        (hits,) = rank_branches(store, branches, flt, [limit], True, with_dense)
        return hits, {branches[0].using: {h.id: h.score for h in hits}}
    weights = [b.weight for b in branches]
    if fusion == "rrf" and fuse == "document":
        ranked = rank_branches(
            store, branches, flt, [b.limit * CHUNKS_PER_DOC for b in branches], DOC_FIELDS
        )
        docs = rrf_documents(
            [
                [Ranked(h.id, tuple(h.payload.get(f) for f in DOC_FIELDS)) for h in r]
                for r in ranked
            ],
            k=rrf_k,
            weights=weights,
            depth=max(b.limit for b in branches),
        )[:limit]
        chosen = [(d.chunk_id, d.score) for d in docs]
    else:
        ranked = rank_branches(store, branches, flt, [b.limit for b in branches])
        fused = fuse_chunks([[(h.id, h.score) for h in r] for r in ranked], fusion, rrf_k, weights)[
            :limit
        ]
        chosen = [(f.chunk_id, f.score) for f in fused]
    if not chosen:
        return [], {}
    carrier, by_branch = _score_and_carry(
        store, branches, tuple(c for c, _ in chosen), flt, with_dense
    )
    hits = [
        Hit(c, score, carrier[c].payload, carrier[c].dense) for c, score in chosen if c in carrier
    ]
    return hits, by_branch
