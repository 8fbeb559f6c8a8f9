"""Query-time defenses: flag what a hit is, then apply the caller's policy.

Every flag carries a reason a person can check. The checks run on the fused (or reranked)
candidate list before it is cut to ``top_k``, so that a flood of planted paraphrases is seen as
a flood, not as five independent good answers.

- ``injection``: the chunk's stored injection score (rules + classifier, at ingest).
- ``hidden_text``: the chunk carries text its document hides from a reader.
- ``low_trust``: the chunk's trust is below the configured floor.
- ``flood``: several near-duplicate candidates (dense cosine >= ``flood_cosine`` to each other)
  come from one uncurated source (then all of that source's candidates are flagged: it crowds
  this query), or from sources with no history. PoisonedRAG plants five paraphrases per target
  question; honest corpora rarely repeat one passage across a candidate list.
- ``query_mirror``: a passage that restates the query (it covers most of the query's terms) with
  a dense similarity far above the corpus' usual for that query (the candidates' median).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ragwall.settings import DefenseConfig, Policy  # noqa: F401 - re-exported


@dataclass
class Candidate:
    """What the defenses need to know of a hit (``retrieval.search.ScoredChunk`` adapts to it)."""

    source_id: str
    trust_tier: str
    trust: float
    text: str
    dense_score: float | None
    vector: Sequence[float] | None
    injection_score: float = 0.0
    injection_reasons: Sequence[str] = ()
    hidden_text: bool = False
    hidden_reasons: Sequence[str] = ()
    #: Other sources holding this very passage (mirrored content collapsed into this hit).
    also_in_sources: Sequence[str] = ()
    flags: list[dict[str, str]] = field(default_factory=list)


def _flag(c: Candidate, kind: str, reason: str) -> None:
    if not any(f["kind"] == kind for f in c.flags):
        c.flags.append({"kind": kind, "reason": reason})


def content_flags(c: Candidate, cfg: DefenseConfig) -> None:
    if c.injection_score >= cfg.injection_threshold:
        why = "; ".join(c.injection_reasons[:3]) or "model"
        _flag(c, "injection", f"injection score {c.injection_score:.2f} ({why})")
    if c.hidden_text:
        _flag(c, "hidden_text", "; ".join(c.hidden_reasons[:2]) or "hidden text")
    if c.trust < cfg.low_trust:
        _flag(c, "low_trust", f"trust {c.trust:.2f} is below {cfg.low_trust:.2f}")


def flood_flags(cands: Sequence[Candidate], cfg: DefenseConfig) -> None:
    idx = [i for i, c in enumerate(cands) if c.vector is not None]
    if len(idx) < cfg.flood_min:
        return
    vecs = np.asarray([cands[i].vector for i in idx], dtype=np.float32)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    sim = vecs @ vecs.T
    # Connected groups of near-duplicates (union-find over pairs above the cosine bar).
    parent = list(range(len(idx)))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    rows, cols = np.nonzero(np.triu(sim >= cfg.flood_cosine, k=1))
    for a, b in zip(rows.tolist(), cols.tolist(), strict=True):
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for local in range(len(idx)):
        groups.setdefault(root(local), []).append(local)
    for members in groups.values():
        if len(members) < cfg.flood_min:
            continue
        group = [cands[idx[m]] for m in members]
        by_source: dict[str, list[Candidate]] = {}
        for c in group:
            if c.trust_tier in cfg.heuristic_tiers:
                by_source.setdefault(c.source_id, []).append(c)
        culprits: list[Candidate] = []
        for source, items in by_source.items():
            if len(items) >= cfg.flood_min:
                culprits += items
                reason = (
                    f"{len(items)} near-duplicate passages (cosine >= {cfg.flood_cosine}) from "
                    f"source {source!r} among the candidates"
                )
                for c in items:
                    _flag(c, "flood", reason)
                # The source crowds this query: its other candidates are suspect too.
                for c in cands:
                    if c.source_id == source and c not in items:
                        _flag(c, "flood", f"from source {source!r}, which floods these candidates")
        fresh = [c for c in group if c.source_id in cfg.new_sources and c.trust_tier != "verified"]
        fresh = [c for c in fresh if c not in culprits]
        # Mirrored content is not a flood: when one source holds every passage of the group
        # (each copy elsewhere is a mirror), no set of sources is pushing one claim together.
        if (
            len({c.source_id for c in fresh}) >= 2
            and len(fresh) >= cfg.flood_min
            and not set.intersection(*({c.source_id, *c.also_in_sources} for c in fresh))
        ):
            reason = (
                f"{len(fresh)} near-duplicate passages from {len({c.source_id for c in fresh})} "
                "sources with no history among the candidates"
            )
            for c in fresh:
                _flag(c, "flood", reason)


def mirror_flags(
    cands: Sequence[Candidate],
    query_terms: Sequence[str],
    passage_terms: Sequence[set[str]] | Callable[[int], set[str]],
    cfg: DefenseConfig,
) -> None:
    """``passage_terms``: each candidate's terms, or a function of its index (called only for
    the few candidates whose similarity already stands out, since tokenizing costs time)."""
    scores = [c.dense_score for c in cands if c.dense_score is not None]
    if len(scores) < 5 or len(set(query_terms)) < 2:
        return
    usual = float(np.median(scores))
    wanted = set(query_terms)
    terms_of = passage_terms if callable(passage_terms) else passage_terms.__getitem__
    for i, c in enumerate(cands):
        if c.dense_score is None or c.trust_tier not in cfg.heuristic_tiers:
            continue
        if c.dense_score < cfg.mirror_min_cosine or c.dense_score - usual < cfg.mirror_margin:
            continue
        coverage = len(wanted & terms_of(i)) / len(wanted)
        if coverage >= cfg.mirror_coverage:
            _flag(
                c,
                "query_mirror",
                f"restates the query ({coverage:.0%} of its terms) with cosine "
                f"{c.dense_score:.2f} against a usual {usual:.2f} for this query",
            )


@dataclass
class Outcome:
    order: list[int]  # indices into the candidates, in final order
    dropped: int


def apply_policy(
    cands: Sequence[Candidate], base_scores: Sequence[float], cfg: DefenseConfig
) -> Outcome:
    """Trust-aware ordering, then the policy: keep flagged hits (flag), sink them, or drop them.

    The ordering keeps the ranking's own order and lets trust move a hit by at most
    ``trust_weight`` of a rank step: each hit's rank score (1 / (1 + rank)) is scaled by
    ``1 - trust_weight * (1 - trust)``, so equal-trust corpora rank exactly as before.
    """
    keyed = []
    for rank, (c, _) in enumerate(zip(cands, base_scores, strict=True)):
        keyed.append((-(1.0 / (1 + rank)) * (1.0 - cfg.trust_weight * (1.0 - c.trust)), rank))
    order = [rank for _, rank in sorted(keyed)]
    if cfg.policy == "flag":
        return Outcome(order, 0)
    clean = [i for i in order if not cands[i].flags]
    flagged = [i for i in order if cands[i].flags]
    if cfg.policy == "demote":
        return Outcome(clean + flagged, 0)
    return Outcome(clean, len(flagged))


def defend(
    cands: Sequence[Candidate],
    base_scores: Sequence[float],
    query_terms: Sequence[str],
    passage_terms: Sequence[set[str]] | Callable[[int], set[str]],
    cfg: DefenseConfig,
) -> Outcome:
    for c in cands:
        content_flags(c, cfg)
    flood_flags(cands, cfg)
    mirror_flags(cands, query_terms, passage_terms, cfg)
    for c in cands:  # query-time signals lower the trust shown in this response
        if any(f["kind"] in ("flood", "query_mirror") for f in c.flags):
            c.trust = round(c.trust * 0.5, 4)
    return apply_policy(cands, base_scores, cfg)
