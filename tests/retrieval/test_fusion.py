"""ragwall.retrieval.fusion: chunk-level RRF and DBSF (Qdrant's formulas, one total order) and
document-level RRF over per-branch chunk rankings."""

from __future__ import annotations

import random

import pytest

from ragwall.eval.retrieval import _rrf
from ragwall.retrieval.fusion import Ranked, document_ranking, fuse_chunks, rrf_documents


def _branch(*pairs: str) -> list[Ranked]:
    """``"c1:a"`` is chunk c1 of document a."""
    return [Ranked(*p.split(":")) for p in pairs]


def test_a_document_takes_the_rank_of_its_best_chunk():
    chunks = _branch("a1:a", "a2:a", "b1:b", "a3:a", "c1:c")
    assert document_ranking(chunks) == ["a", "b", "c"]
    assert document_ranking(chunks, depth=2) == ["a", "b"]


def test_scores_are_weighted_reciprocal_ranks_of_documents():
    dense = _branch("a1:a", "b1:b", "a2:a")
    bm25 = _branch("b2:b", "c1:c")
    fused = rrf_documents([dense, bm25], k=60, weights=[1.0, 2.0])
    got = {f.doc: f.score for f in fused}
    # Qdrant's form: 1 / (k - 1 + rank / weight), rank from 1 (1 / (k + rank) from 0).
    assert got["a"] == pytest.approx(1 / 60)
    assert got["b"] == pytest.approx(1 / 61 + 1 / (59 + 1 / 2))
    assert got["c"] == pytest.approx(1 / (59 + 2 / 2))
    assert [f.doc for f in fused] == ["b", "a", "c"]


@pytest.mark.parametrize("backend", ["edge", "client"])
def test_the_formula_is_the_engines(tmp_path, backend):
    """Qdrant's own RRF over two branches (the embedded engine, and qdrant-client's local mode)
    gives the scores rrf_term computes, weights included."""
    import uuid

    from ragwall.retrieval.client_store import ClientStore
    from ragwall.retrieval.edge_store import EdgeStore
    from ragwall.retrieval.fusion import rrf_term
    from ragwall.retrieval.store import Branch, PointIn, Query, SparseVec

    if backend == "edge":
        store = EdgeStore.open(tmp_path / "shard", 2)
    else:
        store = ClientStore.connect(":memory:", "fusion", 2)
    ids = {n: str(uuid.uuid5(uuid.NAMESPACE_URL, n)) for n in "abc"}
    store.upsert(
        [  # dense order a, b, c; bm25 order c, b, a
            PointIn(ids["a"], [1.0, 0.0], SparseVec([7], [0.1]), {"state": "live"}),
            PointIn(ids["b"], [0.8, 0.6], SparseVec([7], [1.0]), {"state": "live"}),
            PointIn(ids["c"], [0.0, 1.0], SparseVec([7], [5.0]), {"state": "live"}),
        ]
    )
    try:
        for k, w in ((60, 1.0), (2, 50.0), (5, 0.3)):
            branches = [Branch("dense", [1.0, 0.1], 3), Branch("bm25", SparseVec([7], [1.0]), 3, w)]
            (hits,) = store.query_batch([Query(branches, 3, None, "rrf", k)])
            engine = {h.id: h.score for h in hits}
            dense, bm25 = ["a", "b", "c"], ["c", "b", "a"]
            for n in "abc":
                ours = rrf_term(dense.index(n) + 1, k) + rrf_term(bm25.index(n) + 1, k, w)
                assert engine[ids[n]] == pytest.approx(ours, rel=1e-5), (k, w, n)
    finally:
        store.close()


def test_each_document_is_carried_by_its_best_chunk_across_branches():
    # b1 is b's best chunk in dense, b2 in bm25; b2 also ranks in dense, so it wins overall.
    dense = _branch("b1:b", "b2:b", "a1:a")
    bm25 = _branch("b2:b", "a1:a")
    fused = rrf_documents([dense, bm25])
    assert [(f.doc, f.chunk_id) for f in fused] == [("b", "b2"), ("a", "a1")]


def test_a_long_document_does_not_crowd_out_the_others():
    long_doc = [f"l{i}:long" for i in range(8)]
    dense = _branch(*long_doc, "x1:x", "y1:y")
    bm25 = _branch("y1:y", *long_doc[:3], "x1:x")
    fused = rrf_documents([dense, bm25], depth=3)
    assert [f.doc for f in fused] == ["long", "y", "x"]  # one entry each, all three kept


def test_ties_break_by_best_rank_then_first_appearance():
    # a: ranks (1, 3), b: (3, 1) -> equal scores and equal best rank: first seen (a) leads;
    # c: (2, 2) scores less than both: 2/61 = 0.0327869 < 1/60 + 1/62 = 0.0327957.
    dense = _branch("a1:a", "c1:c", "b1:b")
    bm25 = _branch("b1:b", "c1:c", "a1:a")
    assert [f.doc for f in rrf_documents([dense, bm25])] == ["a", "b", "c"]


def test_one_chunk_per_document_matches_the_reference_rrf():
    """With one chunk per document, document fusion is plain RRF (eval's reference; Qdrant's
    k=60 with ranks from 0 is the reference's k=59 with ranks from 1)."""
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(200)]
    for _ in range(20):
        lists = [rng.sample(docs, 60), rng.sample(docs, 60)]
        fused = rrf_documents([_branch(*(f"{d}:{d}" for d in lst)) for lst in lists])
        scores = {f.doc: f.score for f in fused}
        reference = _rrf(lists, k=59)
        assert set(scores) == set(reference)
        # Same order up to exact ties (which each side breaks its own way).
        ref_scores = [scores[d] for d in reference]
        assert ref_scores == sorted(ref_scores, reverse=True)
        assert scores[reference[0]] == pytest.approx(
            sum(1 / (59 + lst.index(reference[0]) + 1) for lst in lists if reference[0] in lst)
        )


def test_weights_must_match_branches():
    with pytest.raises(ValueError, match="2 weights for 1 branches"):
        rrf_documents([_branch("a:a")], weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        rrf_documents([_branch("a:a")], weights=[0.0])
    assert rrf_documents([]) == [] and rrf_documents([[], []]) == []


def test_chunk_fusion_breaks_ties_by_best_rank_then_id():
    # Weight 2 halves BM25 ranks: z (dense 1st) and a (BM25 2nd) both score 1 / 60.
    dense, bm25 = [("z", 0.9), ("m", 0.8)], [("p", 5.0), ("a", 4.0)]
    fused = fuse_chunks([dense, bm25], "rrf", k=60, weights=[1.0, 2.0])
    assert [(f.chunk_id, f.best_rank) for f in fused] == [("p", 1), ("z", 1), ("a", 2), ("m", 2)]
    assert fused[1].score == fused[2].score == 1 / 60  # z before a: its best rank is better
    # Equal scores and equal best ranks: the id decides, whatever order the branches came in.
    for dense, bm25 in (([("y", 0.9)], [("x", 2.0)]), ([("x", 0.9)], [("y", 2.0)])):
        assert [f.chunk_id for f in fuse_chunks([dense, bm25], "rrf")] == ["x", "y"]
        assert [f.chunk_id for f in fuse_chunks([dense, bm25], "dbsf")] == ["x", "y"]


@pytest.mark.parametrize("backend", ["edge", "client"])
def test_dbsf_is_the_engines(tmp_path, backend):
    """fuse_chunks' DBSF gives the scores and order Qdrant's own DBSF gives (no ties here)."""
    import uuid

    from ragwall.retrieval.client_store import ClientStore
    from ragwall.retrieval.edge_store import EdgeStore
    from ragwall.retrieval.store import Branch, PointIn, Query, SparseVec

    if backend == "edge":
        store = EdgeStore.open(tmp_path / "shard", 2)
    else:
        store = ClientStore.connect(":memory:", "fusion", 2)
    rows = [([1.0, 0.0], 0.1), ([0.8, 0.6], 1.0), ([0.0, 1.0], 5.0), ([0.6, 0.8], 2.5)]
    store.upsert(
        [
            PointIn(str(uuid.UUID(int=i + 1)), vec, SparseVec([7], [w]), {"state": "live"})
            for i, (vec, w) in enumerate(rows)
        ]
    )
    try:
        branches = [Branch("dense", [1.0, 0.2], 4), Branch("bm25", SparseVec([7], [1.0]), 3)]
        (engine,) = store.query_batch([Query(branches, 4, None, "dbsf")])
        alone = store.query_batch([Query([b], b.limit, None) for b in branches])
        ours = fuse_chunks([[(h.id, h.score) for h in hits] for hits in alone], "dbsf")
        assert [f.chunk_id for f in ours] == [h.id for h in engine]
        for f, h in zip(ours, engine, strict=True):
            assert f.score == pytest.approx(h.score, rel=1e-5)
    finally:
        store.close()
