"""Query-time flags and policies on hand-built candidate lists (real vectors, no index)."""

from __future__ import annotations

import numpy as np

from ragwall.defend.query import Candidate, DefenseConfig, defend


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def _cands(rng, n_clean=10, flood_source="web", n_flood=4, tier="external"):
    base = rng.standard_normal(16)
    cands = [
        Candidate("kb", "internal", 0.8, f"clean passage {i}", 0.3, _unit(rng.standard_normal(16)))
        for i in range(n_clean)
    ]
    for i in range(n_flood):
        vec = _unit(base + 0.1 * rng.standard_normal(16))
        cands.insert(i, Candidate(flood_source, tier, 0.5, f"planted {i}", 0.5, vec))
    return cands


def _run(cands, cfg=DefenseConfig(), query="who won the cup", terms=None):
    q = query.split()
    passage_terms = terms or [c.text.split() for c in cands]
    return defend(cands, list(range(len(cands))), q, passage_terms, cfg)


def test_flood_from_one_source_is_flagged_and_trust_halved():
    cands = _cands(np.random.default_rng(0))
    _run(cands)
    flood = [c for c in cands if any(f["kind"] == "flood" for f in c.flags)]
    assert {c.text for c in flood} == {f"planted {i}" for i in range(4)}
    assert all(c.trust == 0.25 for c in flood)
    assert "4 near-duplicate passages" in flood[0].flags[0]["reason"]


def test_no_flood_below_the_minimum_or_from_verified_sources():
    rng = np.random.default_rng(1)
    few = _cands(rng, n_flood=2)
    _run(few)
    assert not any(c.flags for c in few)
    vouched = _cands(rng, tier="verified")
    _run(vouched)
    assert not any(c.flags for c in vouched)


def _mirror_case(score, terms, tier="external"):
    """29 ordinary candidates (cosine 0.30 +- 0.05) and one passage under test, last."""
    rng = np.random.default_rng(2)
    scores = 0.3 + 0.05 * rng.standard_normal(29)
    cands = [
        Candidate("kb", "internal", 0.8, f"p{i}", float(x), None) for i, x in enumerate(scores)
    ]
    cands.append(Candidate("web", tier, 0.5, "under test", score, None))
    _run(cands, terms=[["filler"]] * 29 + [terms], query="who won the world cup in 1998")
    assert not any(c.flags for c in cands[:29])
    return cands[-1]


QUERY = ["who", "won", "the", "world", "cup", "in", "1998"]


def test_a_passage_that_opens_with_the_query_and_stands_out_is_a_mirror():
    # P = Q + I: the question itself, then the planted answer; z = (0.5 - 0.3) / 0.05 = 4
    planted = _mirror_case(0.5, [*QUERY, "france", "beat", "brazil"])
    assert [f["kind"] for f in planted.flags] == ["query_mirror"]
    assert "opens with the query" in planted.flags[0]["reason"]
    assert planted.trust == 0.25  # halved in this response


def test_no_mirror_without_standing_out_or_from_a_curated_source():
    assert _mirror_case(0.36, [*QUERY, "france"]).flags == []  # z about 1: an ordinary hit
    assert _mirror_case(0.5, [*QUERY, "france"], tier="internal").flags == []  # a curated FAQ
    assert _mirror_case(0.5, [*QUERY, "france"], tier="verified").flags == []


def test_restating_the_query_later_in_the_passage_needs_a_higher_bar():
    later = ["football", "history", "tells", "us", "that", "in", "one", "famous", "final", *QUERY]
    assert _mirror_case(0.5, later).flags == []  # z about 4 < mirror_z (5)
    far = _mirror_case(0.7, later)  # z about 8
    assert [f["kind"] for f in far.flags] == ["query_mirror"]
    assert "restates the query" in far.flags[0]["reason"]
    assert _mirror_case(0.7, ["football", "history", "1998"]).flags == []  # few query terms


def test_policies_flag_demote_drop():
    def fresh():
        cands = _cands(np.random.default_rng(3), n_flood=3)
        return cands

    cands = fresh()
    out = _run(cands, DefenseConfig(policy="flag", trust_weight=0.0))
    assert out.order == list(range(len(cands))) and out.dropped == 0
    cands = fresh()
    out = _run(cands, DefenseConfig(policy="demote", trust_weight=0.0))
    assert [cands[i].text for i in out.order[-3:]] == ["planted 0", "planted 1", "planted 2"]
    cands = fresh()
    out = _run(cands, DefenseConfig(policy="drop"))
    assert out.dropped == 3 and all(not cands[i].flags for i in out.order)


def test_stored_signals_become_flags():
    c = Candidate(
        "kb",
        "internal",
        0.2,
        "x",
        0.3,
        None,
        0.9,
        ["override_instructions: …"],
        True,
        ["display:none: 'x'"],
    )
    _run([c])
    kinds = {f["kind"] for f in c.flags}
    assert kinds == {"injection", "hidden_text", "low_trust"}
    assert "override_instructions" in next(f for f in c.flags if f["kind"] == "injection")["reason"]


def test_trust_reorders_within_its_weight_only():
    rng = np.random.default_rng(4)
    cands = [
        Candidate("s", "internal", t, str(i), 0.3, None) for i, t in enumerate([0.1, 1.0, 1.0])
    ]
    out = _run(cands, DefenseConfig(trust_weight=0.0, low_trust=0.0))
    assert out.order == [0, 1, 2]
    out = _run(cands, DefenseConfig(trust_weight=0.6, low_trust=0.0))
    assert out.order == [1, 0, 2]  # 1 * (1 - 0.6 * 0.9) = 0.46 < 1/2: rank 0 falls below rank 1
    del rng


def test_mirrored_passages_in_new_sources_are_not_a_flood():
    """The same similar passages in two new sources (a wiki and its mirror): one source holds
    every passage, so nobody is pushing a claim. Different paraphrases split across two new
    sources still are a flood."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal(16)
    similar = [_unit(base + 0.05 * rng.standard_normal(16)) for _ in range(4)]
    fresh = DefenseConfig(new_sources=frozenset({"wiki", "drive"}))
    mirrored = [
        Candidate(src, "internal", 0.8, f"p{i}", 0.5, v, also_in_sources=(other,))
        for i, (v, src, other) in enumerate(
            zip(
                similar,
                ["wiki", "drive", "wiki", "drive"],
                ["drive", "wiki", "drive", "wiki"],
                strict=False,
            )
        )
    ]
    _run(mirrored, fresh)
    assert not any(c.flags for c in mirrored)
    planted = [
        Candidate(src, "internal", 0.8, f"p{i}", 0.5, v)
        for i, (v, src) in enumerate(zip(similar, ["wiki", "drive", "wiki", "drive"], strict=False))
    ]
    _run(planted, fresh)
    assert all(f["kind"] == "flood" for c in planted for f in c.flags) and all(
        c.flags for c in planted
    )


def test_alike_chunks_of_one_document_are_not_a_flood():
    """An honest page about one topic has alike chunks; five planted documents are a flood."""
    one_page = _cands(np.random.default_rng(5), n_flood=5)
    for c in one_page[:5]:
        c.doc_id = "faq-page"
    _run(one_page)
    assert not any(c.flags for c in one_page)
    two_pages = _cands(np.random.default_rng(5), n_flood=5)
    for i, c in enumerate(two_pages[:5]):
        c.doc_id = f"page-{i % 2}"
    _run(two_pages)
    assert not any(c.flags for c in two_pages)  # 2 documents < flood_min (3)
    planted = _cands(np.random.default_rng(5), n_flood=5)
    for i, c in enumerate(planted[:5]):
        c.doc_id = f"planted-{i}"
    _run(planted)
    flood = [c for c in planted if c.flags]
    assert len(flood) == 5 and "from 5 documents" in flood[0].flags[0]["reason"]
