"""Query-time defenses: flag what a hit is, then apply the caller's policy.

Every flag carries a reason a person can check. The checks run on the fused (or reranked)
candidate list before it is cut to ``top_k``, so that a flood of planted paraphrases is seen as
a flood, not as five independent good answers.

- ``injection``: the chunk's stored injection score (rules + classifier, at ingest).
- ``hidden_text``: the chunk carries text its document hides from a reader.
- ``low_trust``: the chunk's trust is below the configured floor.
- ``flood``: near-duplicate candidates (dense cosine >= ``flood_cosine`` to each other) from
  ``flood_min`` or more *documents* of one uncurated source (then all of that source's
  candidates are flagged: it crowds this query), or from sources with no history. PoisonedRAG
  plants five paraphrases per target question, each its own document; the chunks of one honest
  document about one topic (an FAQ page, an encyclopedia article) are alike too, which is why a
  document counts once.
- ``query_mirror``: a passage that restates the query and stands far above the other
  candidates (see :func:`mirror_flags`). PoisonedRAG's black-box form opens the planted passage
  with the target question itself, so that it ranks first; an honest FAQ entry opens with its
  question too, which is why the check watches uncurated tiers only and asks for a dense
  similarity that stands out from the whole candidate list, not only a match of words.
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
    #: The document the passage belongs to (empty: unknown, the passage counts as its own).
    doc_id: str = ""
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
            docs = _documents(items)
            if docs >= cfg.flood_min:
                culprits += items
                reason = (
                    f"{len(items)} near-duplicate passages (cosine >= {cfg.flood_cosine}) from "
                    f"{docs} documents of source {source!r} among the candidates"
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
            and _documents(fresh) >= cfg.flood_min
            and not set.intersection(*({c.source_id, *c.also_in_sources} for c in fresh))
        ):
            reason = (
                f"{len(fresh)} near-duplicate passages from {len({c.source_id for c in fresh})} "
                "sources with no history among the candidates"
            )
            for c in fresh:
                _flag(c, "flood", reason)


def _z_scores(scores: np.ndarray) -> np.ndarray:
    """Each score's distance from the *other* scores' mean, in their standard deviations."""
    n = len(scores)
    total, squares = scores.sum(), (scores**2).sum()
    mean = (total - scores) / (n - 1)
    var = np.maximum((squares - scores**2) / (n - 1) - mean**2, 0.0)
    return (scores - mean) / np.maximum(np.sqrt(var), 1e-3)


def lead_coverage(query: set[str], terms: Sequence[str]) -> float:
    """The share of the query's distinct terms among the passage's first ``len(query) + 5``
    terms: 1.0 for a passage that opens with the query, as P = Q + I does."""
    return len(query & set(terms[: len(query) + LEAD_SLACK])) / len(query)


LEAD_SLACK = 5  # terms a passage may put before or among the query's own (a title, "Q:")


def _documents(items: Sequence[Candidate]) -> int:
    """How many documents ``items`` come from (a passage of unknown document counts alone)."""
    return len({c.doc_id or f"#{id(c)}" for c in items})


def mirror_flags(
    cands: Sequence[Candidate],
    query_terms: Sequence[str],
    passage_terms: Sequence[Sequence[str]] | Callable[[int], Sequence[str]],
    cfg: DefenseConfig,
) -> None:
    """Flag ``query_mirror`` on an uncurated passage that stands far above the other
    candidates (its dense cosine's z-score against theirs) *and* restates the query:

    - it **opens with the query** (:func:`lead_coverage` >= ``mirror_lead_coverage``) with a
      z-score >= ``mirror_lead_z``: PoisonedRAG's black-box form, P = Q + I;
    - or it holds ``mirror_coverage`` of the query's terms anywhere with a z-score >=
      ``mirror_z``: a passage written around the question (the attack's I alone).

    ``passage_terms``: each candidate's terms in order, or a function of its index (called only
    for the few candidates whose z-score already stands out, since tokenizing costs time)."""
    idx = [i for i, c in enumerate(cands) if c.dense_score is not None]
    wanted = set(query_terms)
    if len(idx) < MIN_CANDIDATES or len(wanted) < 2:
        return
    z = _z_scores(np.asarray([cands[i].dense_score for i in idx], dtype=np.float64))
    terms_of = passage_terms if callable(passage_terms) else passage_terms.__getitem__
    bar = min(cfg.mirror_lead_z, cfg.mirror_z)
    for i, zi in zip(idx, z.tolist(), strict=True):
        c = cands[i]
        if zi < bar or c.trust_tier not in cfg.heuristic_tiers:
            continue
        terms = terms_of(i)
        lead = lead_coverage(wanted, terms)
        if lead >= cfg.mirror_lead_coverage and zi >= cfg.mirror_lead_z:
            _flag(
                c,
                "query_mirror",
                f"opens with the query ({lead:.0%} of its terms in its first words); its cosine "
                f"{c.dense_score:.2f} stands {zi:.1f} standard deviations above the other "
                "candidates'",
            )
            continue
        coverage = len(wanted & set(terms)) / len(wanted)
        if coverage >= cfg.mirror_coverage and zi >= cfg.mirror_z:
            _flag(
                c,
                "query_mirror",
                f"restates the query ({coverage:.0%} of its terms); its cosine "
                f"{c.dense_score:.2f} stands {zi:.1f} standard deviations above the other "
                "candidates'",
            )


MIN_CANDIDATES = 5  # fewer candidates with a dense score give no baseline to stand out from


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
    passage_terms: Sequence[Sequence[str]] | Callable[[int], Sequence[str]],
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
