"""One conformance suite for both stores: the embedded Qdrant Edge shard and qdrant-client."""

from __future__ import annotations

import uuid

import pytest

from ragwall.errors import StoreLocked
from ragwall.retrieval.client_store import ClientStore
from ragwall.retrieval.edge_store import EdgeStore
from ragwall.retrieval.store import (
    Branch,
    Filter,
    HasId,
    Hit,
    Match,
    MatchAny,
    PointIn,
    Range,
    SparseVec,
    Store,
)


def pid(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


@pytest.fixture(params=["edge", "client"])
def store(request, tmp_path):
    if request.param == "edge":
        s = EdgeStore.open(tmp_path / "shard", dim=3)
    else:
        s = ClientStore.connect(":memory:", "conformance", dim=3)
    yield s
    s.close()


def _points() -> list[PointIn]:
    # Dense vectors point along axes; sparse vectors use term ids 1..3.
    rows = [
        (
            [1, 0, 0],
            ([1], [1.0]),
            {"source_id": "a", "groups": ["g1"], "trust": 0.9, "state": "live"},
        ),
        (
            [0.9, 0.1, 0],
            ([2], [1.0]),
            {"source_id": "a", "groups": ["g1", "g2"], "trust": 0.5, "state": "live"},
        ),
        (
            [0, 1, 0],
            ([1, 2], [0.5, 0.5]),
            {"source_id": "b", "groups": ["g2"], "trust": 0.2, "state": "live"},
        ),
        (
            [0, 0, 1],
            ([3], [1.0]),
            {"source_id": "b", "groups": [], "trust": 0.7, "state": "pending"},
        ),
    ]
    return [
        PointIn(pid(i), dense, SparseVec(*sparse), {**payload, "n": i})
        for i, (dense, sparse, payload) in enumerate(rows)
    ]


def test_implements_protocol(store):
    assert isinstance(store, Store)
    assert store.dim == 3


def test_upsert_count_and_filters(store):
    store.upsert(_points())
    assert store.count() == 4
    assert store.count(Filter(must=(Match("source_id", "a"),))) == 2
    assert store.count(Filter(must=(Match("groups", "g2"),))) == 2  # list field contains
    assert store.count(Filter(must=(MatchAny("groups", ("g1", "zz")),))) == 2
    assert store.count(Filter(must=(MatchAny("groups", ("nobody",)),))) == 0
    assert store.count(Filter(must=(Range("trust", gte=0.6),))) == 2
    assert store.count(Filter(must_not=(Match("state", "pending"),))) == 3
    both = Filter(must=(Match("source_id", "a"),)) & Filter(must=(Range("trust", lte=0.6),))
    assert store.count(both) == 1


def test_upsert_same_id_replaces(store):
    store.upsert(_points())
    p = _points()[0]
    p.payload = {**p.payload, "source_id": "c"}
    store.upsert([p])
    assert store.count() == 4
    assert store.count(Filter(must=(Match("source_id", "c"),))) == 1


def test_delete_and_set_payload_by_filter(store):
    store.upsert(_points())
    store.set_payload({"state": "live"}, Filter(must=(Match("source_id", "b"),)))
    assert store.count(Filter(must=(Match("state", "live"),))) == 4
    store.delete(Filter(must=(Match("source_id", "a"),)))
    assert store.count() == 2
    with pytest.raises(ValueError):
        store.delete(Filter())


def test_single_branch_dense_and_sparse(store):
    store.upsert(_points())
    dense = store.query([Branch("dense", [1, 0, 0], 10)], limit=2)
    assert [h.payload["n"] for h in dense] == [0, 1]
    assert dense[0].score == pytest.approx(1.0, abs=1e-5)
    sparse = store.query([Branch("bm25", SparseVec([3], [1.0]), 10)], limit=5)
    assert [h.payload["n"] for h in sparse] == [3]  # only point 3 has term 3


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_fusion_is_done_by_qdrant_with_one_filter_on_both_branches(store, fusion):
    store.upsert(_points())
    branches = [Branch("dense", [1, 0, 0], 10), Branch("bm25", SparseVec([2], [1.0]), 10)]
    fused = store.query(branches, limit=4, fusion=fusion)
    # Point 1 ranks high on both branches, so fusion puts it first.
    assert fused[0].payload["n"] == 1
    only_b = store.query(
        branches, limit=4, flt=Filter(must=(Match("source_id", "b"),)), fusion=fusion
    )
    assert {h.payload["n"] for h in only_b} <= {2, 3}
    assert all(isinstance(h, Hit) and h.payload["source_id"] == "b" for h in only_b)
    none = store.query(branches, limit=4, flt=Filter(must=(MatchAny("groups", ("nobody",)),)))
    assert none == []


def test_has_id_scores_just_those_points_on_each_branch(store):
    store.upsert(_points())
    only = Filter(must=(HasId((pid(2), pid(3))),))
    dense = store.query([Branch("dense", [1, 0, 0], 10)], limit=10, flt=only)
    assert sorted(h.payload["n"] for h in dense) == [2, 3]
    sparse = store.query([Branch("bm25", SparseVec([3], [1.0]), 10)], limit=10, flt=only)
    assert [h.payload["n"] for h in sparse] == [3]
    assert store.count(Filter(must_not=(HasId((pid(0),)),))) == len(_points()) - 1


def test_rrf_scores_follow_k(store):
    store.upsert(_points())
    branches = [Branch("dense", [1, 0, 0], 10), Branch("bm25", SparseVec([1], [1.0]), 10)]
    hits = store.query(branches, limit=1, fusion="rrf", rrf_k=60)
    # Point 0 is first on both branches; Qdrant counts ranks from 0: 2 / (60 + 0).
    assert hits[0].payload["n"] == 0
    assert hits[0].score == pytest.approx(2 / 60, rel=1e-3)


def test_scroll_pages_through_everything(store):
    store.upsert(_points())
    seen, offset = [], None
    while True:
        hits, offset = store.scroll(limit=3, offset=offset, with_payload=["n"])
        seen += [h.payload["n"] for h in hits]
        assert all(set(h.payload) == {"n"} for h in hits)
        if offset is None:
            break
    assert sorted(seen) == [0, 1, 2, 3]
    filtered, _ = store.scroll(Filter(must=(Match("source_id", "b"),)), limit=10)
    assert sorted(h.payload["n"] for h in filtered) == [2, 3]


def test_edge_store_persists_and_is_exclusive(tmp_path):
    path = tmp_path / "shard"
    first = EdgeStore.open(path, dim=3)
    first.upsert(_points())
    with pytest.raises(StoreLocked, match="another process"):
        EdgeStore.open(path, dim=3)
    first.optimize()
    first.close()
    again = EdgeStore.open(path, dim=3)
    try:
        assert again.count() == 4
        assert again.query([Branch("dense", [0, 0, 1], 1)], limit=1)[0].payload["n"] == 3
    finally:
        again.close()


def test_an_unreachable_server_is_a_store_error():
    from ragwall.errors import StoreError

    with pytest.raises(StoreError, match="Qdrant"):
        ClientStore.connect("http://127.0.0.1:9", "nowhere", dim=3)


def test_query_batch_matches_single_queries(store):
    from ragwall.retrieval.store import Query

    store.upsert(_points())
    dense = Branch("dense", [1, 0, 0], 10)
    sparse = Branch("bm25", SparseVec([2], [1.0]), 10)
    flt = Filter(must_not=(Match("state", "pending"),))
    queries = [Query([dense], 3, flt), Query([sparse], 3, flt), Query([dense, sparse], 3, flt)]
    batch = store.query_batch(queries)
    singles = [store.query(q.branches, q.limit, q.flt) for q in queries]
    assert [[h.id for h in r] for r in batch] == [[h.id for h in r] for r in singles]
    assert all(h.payload["state"] == "live" for r in batch for h in r)
