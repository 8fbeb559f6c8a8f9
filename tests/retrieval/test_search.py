"""ragwall.retrieval.search: collapsing the same passage from several sources into one hit."""

from __future__ import annotations

from ragwall.retrieval.search import ScoredChunk, collapse_mirrors


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
