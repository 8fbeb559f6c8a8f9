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


# --- the filters Ragwall runs, the same on both engines -----------------------------------------

# source, groups, trust, state, hidden text, injection score: as the ingest writes them.
ROWS = [
    ("kb", ["eng"], 0.9, "live", False, 0.0),
    ("kb", ["eng", "hr"], 0.5, "live", True, 0.7),
    ("hr", ["hr"], 0.95, "live", True, 0.0),  # hidden text in a trusted chunk
    ("hr", [], 0.3, "live", False, 0.95),
    ("web", ["eng"], 0.2, "pending", True, 0.1),
    ("web", ["ops"], 0.6, "live", False, 0.5),
]


def _sha(i: int) -> str:
    return f"{i:064x}"


def _contract_points() -> list[PointIn]:
    from ragwall.payload import hidden_flag

    return [
        PointIn(
            pid(i),
            [1.0, float(i), 0.0],
            SparseVec([i + 1], [1.0]),
            {
                "source_id": source,
                "groups": groups,
                "trust": trust,
                "state": state,
                "hidden_text": hidden_flag(hidden),
                "injection_score": inj,
                "doc_sha256": _sha(i),
            },
        )
        for i, (source, groups, trust, state, hidden, inj) in enumerate(ROWS)
    ]


def _cases() -> dict[str, tuple[Filter, list[int]]]:
    """Each filter and the rows it must match, named."""
    from ragwall.payload import LIVE, Key, hidden_flag
    from ragwall.retrieval.search import SearchFilter, access_filter
    from ragwall.retrieval.store import IsEmpty

    def rows(pred) -> list[int]:  # noqa: ANN001
        return [i for i, r in enumerate(ROWS) if pred(*r)]

    hidden = Match(Key.HIDDEN_TEXT, hidden_flag(True))
    return {
        "keyword": (Filter(must=(Match(Key.SOURCE_ID, "kb"),)), rows(lambda s, *_: s == "kb")),
        "list contains": (
            Filter(must=(Match(Key.GROUPS, "hr"),)),
            rows(lambda s, g, *_: "hr" in g),
        ),
        "match any": (
            Filter(must=(MatchAny(Key.GROUPS, ("ops", "zz")),)),
            rows(lambda s, g, *_: "ops" in g),
        ),
        "range gte": (
            Filter(must=(Range(Key.TRUST, gte=0.5),)),
            rows(lambda s, g, t, *_: t >= 0.5),
        ),
        "range lte": (
            Filter(must=(Range(Key.TRUST, lte=0.5),)),
            rows(lambda s, g, t, *_: t <= 0.5),
        ),
        "hidden text": (Filter(must=(hidden,)), rows(lambda *r: r[4])),
        "no hidden text": (
            Filter(must=(Match(Key.HIDDEN_TEXT, hidden_flag(False)),)),
            rows(lambda *r: not r[4]),
        ),
        "console: live hidden text of a source": (
            Filter(must=(Match(Key.STATE, LIVE), hidden, Match(Key.SOURCE_ID, "hr"))),
            rows(lambda s, g, t, st, h, i: st == LIVE and h and s == "hr"),
        ),
        "console: injection": (
            Filter(must=(Match(Key.STATE, LIVE), Range(Key.INJECTION_SCORE, gte=0.5))),
            rows(lambda s, g, t, st, h, i: st == LIVE and i >= 0.5),
        ),
        "must not": (
            Filter(must_not=(Match(Key.STATE, "pending"), hidden)),
            rows(lambda s, g, t, st, h, i: st != "pending" and not h),
        ),
        "no groups": (Filter(must=(IsEmpty(Key.GROUPS),)), rows(lambda s, g, *_: not g)),
        "ids but one": (
            Filter(must=(HasId((pid(1), pid(2))),), must_not=(HasId((pid(2),)),)),
            [1],
        ),
        "access: a group, min trust, a quarantined source": (
            access_filter(["eng"], SearchFilter(min_trust=0.4), quarantined_sources=("web",)),
            rows(lambda s, g, t, st, *_: st == LIVE and "eng" in g and t >= 0.4 and s != "web"),
        ),
        "access: unrestricted, sources, a quarantined document": (
            access_filter(None, SearchFilter(sources=("kb", "hr")), quarantined_docs=(_sha(1),)),
            [0, 2, 3],
        ),
        "access: groups narrowed by the request": (
            access_filter(["eng", "hr"], SearchFilter(groups=("hr",))),
            rows(lambda s, g, t, st, *_: st == LIVE and "hr" in g),
        ),
        "access: a key with no groups sees nothing": (access_filter([], SearchFilter()), []),
    }


def test_both_engines_match_the_same_points_for_every_filter_ragwall_runs(tmp_path):
    """Counts, scrolls and filtered queries agree between the engines, and with the rows."""
    stores = {
        "edge": EdgeStore.open(tmp_path / "shard", dim=3),
        "client": ClientStore.connect(":memory:", "conformance", dim=3),
    }
    try:
        for store in stores.values():
            store.upsert(_contract_points())
        for name, (flt, expected) in _cases().items():
            want = sorted(pid(i) for i in expected)
            for engine, store in stores.items():
                where = f"{name} on {engine}"
                assert store.count(flt) == len(want), where
                page, _ = store.scroll(flt, limit=100)
                assert sorted(h.id for h in page) == want, where
                hits = store.query([Branch("dense", [1.0, 0.0, 0.0], 100)], limit=100, flt=flt)
                assert sorted(h.id for h in hits) == want, where
    finally:
        for store in stores.values():
            store.close()


@pytest.mark.parametrize("backend", ["edge", "client"])
def test_an_older_index_with_boolean_hidden_text_is_rewritten_when_opened(tmp_path, backend):
    from ragwall.payload import Key, provenance

    old = _contract_points()
    for p, row in zip(old, ROWS, strict=True):
        p.payload[Key.HIDDEN_TEXT] = row[4]  # what ingest wrote before: a JSON boolean
    hidden = Filter(must=(Match(Key.HIDDEN_TEXT, 1),))
    if backend == "edge":
        store = EdgeStore.open(tmp_path / "shard", dim=3)
        store.upsert(old)
        store.close()
        store = EdgeStore.open(tmp_path / "shard", dim=3)
    else:
        first = ClientStore.connect(":memory:", "old", dim=3)
        first.upsert(old)
        store = ClientStore(first.client, "old", dim=3)
        store.ensure_collection()
    try:
        assert store.count(hidden) == sum(r[4] for r in ROWS)
        page, _ = store.scroll(None, limit=100)
        assert sorted(h.payload[Key.HIDDEN_TEXT] for h in page) == [0, 0, 0, 1, 1, 1]
        assert {provenance(h.payload)[Key.HIDDEN_TEXT] for h in page} == {True, False}
        assert provenance({Key.HIDDEN_TEXT: True})[Key.HIDDEN_TEXT] is True  # read both forms
    finally:
        store.close()
