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
    passage_terms = terms or [set(c.text.split()) for c in cands]
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


def test_query_mirror_needs_restatement_and_outlying_similarity():
    rng = np.random.default_rng(2)
    cands = [
        Candidate("kb", "internal", 0.8, f"p{i}", 0.2 + 0.01 * i, _unit(rng.standard_normal(8)))
        for i in range(10)
    ]
    mirror = Candidate("web", "external", 0.5, "m", 0.85, _unit(rng.standard_normal(8)))
    close_but_unrelated = Candidate(
        "web", "external", 0.5, "u", 0.85, _unit(rng.standard_normal(8))
    )
    cands += [mirror, close_but_unrelated]
    terms = [set() for _ in range(10)] + [
        {"who", "won", "the", "cup", "in", "1998"},
        {"football", "history"},
    ]
    _run(cands, terms=terms)
    assert [f["kind"] for f in mirror.flags] == ["query_mirror"]
    assert close_but_unrelated.flags == []
    assert not any(c.flags for c in cands[:10])


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
