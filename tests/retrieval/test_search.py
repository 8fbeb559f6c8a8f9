"""ragwall.retrieval.search: mirrored passages, fusion levels, branch weights, and one order for
one request."""

from __future__ import annotations

import shutil

import pytest

from ragwall.retrieval.search import (
    HybridSearcher,
    ScoredChunk,
    SearchFilter,
    access_filter,
    collapse_mirrors,
)
from tests.conftest import shared
from tests.retrieval.tied_corpus import QUERY as TIED_QUERY
from tests.retrieval.tied_corpus import write_tied_corpus


def _hit(i: str, text: str, source: str, trust: float) -> ScoredChunk:
    prov = {"source_id": source, "doc_uri": f"/{source}/{i}.md", "doc_sha256": "ab" * 32}
    return ScoredChunk(i, text, prov, trust, {"fused": 1.0})


def test_the_same_passage_from_several_sources_is_one_hit_carried_by_the_most_trusted():
    hits = [
        _hit("a1", "Refunds  need APPROVAL.", "drive", 0.5),
        _hit("b1", "Laptops come from IT.", "drive", 0.5),
        _hit("a2", "refunds need approval.", "wiki", 1.0),
        _hit("a3", "Refunds need approval.", "drive", 0.5),  # a copy within one source stays
    ]
    out = collapse_mirrors(hits)
    assert [h.id for h in out] == ["a2", "b1", "a3"]  # at the best rank, the trusted copy
    assert [(a["id"], a["source_id"]) for a in out[0].also_in] == [("a1", "drive")]
    assert out[1].also_in == [] and out[2].also_in == []


def test_distinct_passages_are_untouched():
    hits = [_hit(str(i), f"passage {i}", "s", 0.8) for i in range(5)]
    assert collapse_mirrors(hits) == hits


# --- fusion levels and branch weights, on the real model and the real embedded engine ---------

QUERY = "United States Trustee supervises standing trustees in bankruptcy cases"


@pytest.fixture(scope="module")
def two_sources(encoder, tmp_path_factory):
    """Two sources of real documents: ``kb`` (group eng) and ``hr`` (group hr), ingested once
    for the module's tests (they only read)."""
    from ragwall.ingest import Ingester, Registry, make_source
    from ragwall.retrieval.backends import open_store
    from ragwall.settings import Settings

    root = tmp_path_factory.mktemp("two-sources")
    settings = Settings(data_dir=root / "data", embed_buffer_chunks=64)
    registry = Registry(settings.state_path)
    store = open_store(settings, encoder.dim)
    ingester = Ingester(settings, registry, store, encoder)
    for source_id, group, names in (
        ("kb", "eng", ["README.md", "handbook-1p.docx", "fake-email.eml", "simple.docx"]),
        ("hr", "hr", ["fake-email.txt", "handbook-1p.docx"]),
    ):
        folder = root / source_id
        folder.mkdir()
        for name in names:
            shutil.copy(shared("docs", name), folder / name)
        source = make_source(source_id, str(folder), "internal", [group])
        registry.add_source(source)
        ingester.ingest(source)
    yield ingester
    store.close()
    registry.close()


def _doc(hit) -> tuple[str, str]:
    return hit.provenance["source_id"], hit.provenance["doc_uri"]


def test_document_fusion_returns_each_document_once_at_its_best_chunk(two_sources):
    searcher = HybridSearcher(two_sources.store, two_sources.encoder)
    flt = access_filter(["eng"], SearchFilter())
    by_chunk = searcher.search(QUERY, flt, top_k=12, candidates=30, fuse="chunk").hits
    by_doc = searcher.search(QUERY, flt, top_k=12, candidates=30, fuse="document").hits
    # Chunk fusion lets a long document fill several places; document fusion names it once.
    assert len({_doc(h) for h in by_chunk}) < len(by_chunk)
    assert len({_doc(h) for h in by_doc}) == len(by_doc) >= 3
    # The engine applied the caller's groups to every branch: nothing from hr.
    assert {h.provenance["source_id"] for h in by_doc} == {"kb"}
    assert by_doc[0].provenance["doc_name"] == "handbook-1p.docx"
    for h in by_doc:
        assert h.scores["dense"] is not None and h.text and h.provenance["chunk_index"] >= 0
    fused = [h.scores["fused"] for h in by_doc]
    assert fused == sorted(fused, reverse=True)
    # The score is the RRF of the document's rank in each branch (dense alone, then bm25 alone).
    dense = searcher.search(QUERY, flt, top_k=90, candidates=90, stages=("dense",)).hits
    bm25 = searcher.search(QUERY, flt, top_k=90, candidates=90, stages=("bm25",)).hits
    ranks = [list(dict.fromkeys(_doc(h) for h in hits)) for hits in (dense, bm25)]
    top = _doc(by_doc[0])
    expected = sum(1 / (60 + r.index(top)) for r in ranks if top in r)  # Qdrant's RRF form
    assert by_doc[0].scores["fused"] == pytest.approx(expected, rel=1e-6)
    # The same passage held by two sources: the hr copy stays invisible to eng even as a mirror.
    assert all(a["source_id"] == "kb" for h in by_doc for a in h.also_in)


@pytest.mark.parametrize("fuse", ["chunk", "document"])
def test_branch_weight_moves_the_fused_order_towards_that_branch(two_sources, fuse):
    searcher = HybridSearcher(two_sources.store, two_sources.encoder)
    flt = access_filter(["eng"], SearchFilter())  # one source: no mirrors to collapse
    query = "email meeting schedule"
    key = _doc if fuse == "document" else (lambda h: h.id)

    def order(**kw) -> list:
        # k = 2: a weight divides the rank, so it only tells against a small k (as in Qdrant).
        hits = searcher.search(query, flt, top_k=10, candidates=30, fuse=fuse, rrf_k=2, **kw).hits
        return [key(h) for h in hits]

    dense_first = key(searcher.search(query, flt, top_k=1, stages=("dense",)).hits[0])
    bm25_first = key(searcher.search(query, flt, top_k=1, stages=("bm25",)).hits[0])
    assert dense_first != bm25_first  # the branches disagree on this query
    towards_bm25, towards_dense = order(bm25_weight=50.0), order(bm25_weight=0.02)
    assert towards_bm25 != towards_dense
    gain_bm25 = towards_dense.index(bm25_first) - towards_bm25.index(bm25_first)
    gain_dense = towards_bm25.index(dense_first) - towards_dense.index(dense_first)
    assert gain_bm25 >= 0 and gain_dense >= 0 and gain_bm25 + gain_dense > 0


# --- one request, one order: ties broken the same way every time -------------------------------


@pytest.fixture
def tied(ingester, tmp_path):
    """The tied corpus (``tests/retrieval/tied_corpus.py``) in the real embedded engine."""
    from ragwall.ingest import make_source

    source = make_source("tied", str(write_tied_corpus(tmp_path / "tied")), "internal", ["g"])
    ingester.state.add_source(source)
    assert not ingester.ingest(source).failed
    return ingester


def test_twenty_identical_searches_return_one_order_though_fused_scores_tie(tied):
    from ragwall.defend.query import DefenseConfig

    searcher = HybridSearcher(tied.store, tied.encoder)
    flt = access_filter(["g"], SearchFilter())
    cases = {
        "the cut falls inside a tie": {"top_k": 7, "candidates": 8},
        "deep": {"top_k": 30, "candidates": 30},
        "document fusion": {"top_k": 10, "candidates": 30, "fuse": "document"},
        "defended": {"top_k": 10, "candidates": 30, "defenses": DefenseConfig(policy="demote")},
        "dbsf": {"top_k": 10, "candidates": 30, "fusion": "dbsf"},
    }
    for name, kw in cases.items():
        runs = [[h.id for h in searcher.search(TIED_QUERY, flt, **kw).hits] for _ in range(20)]
        assert all(run == runs[0] for run in runs), name
    # The engine's fusion would have ordered these ties at random (4 orders in 20 in issue 24).
    hits = searcher.search(TIED_QUERY, flt, top_k=30, candidates=30).hits
    fused = [h.scores["fused"] for h in hits]
    assert len(fused) - len(set(fused)) >= 10
    assert fused == sorted(fused, reverse=True)
    assert all(h.scores["dense"] is not None for h in hits)  # each branch scored every hit
