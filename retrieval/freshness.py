"""An optional boost for recent documents: ``freshness_half_life_days`` (off by default).

Invariant: the boost only reorders the candidates the engine returned (after fusion and any
rerank), never adds or drops one. Each candidate's rank score ``1 / (RANK_K + rank)`` (rank
from 1) is multiplied by ``1 + BOOST * 2 ** (-age / half_life)``, where age is its document's age
(``doc_modified_ts``) at ``now``, and a stable sort keeps equal scores in their order. A
document as new as the query counts 1.25 times, one a half-life old 1.125 times, an old one as
it was: a new document passes an old one ranked at most about a quarter of its rank plus three
places above it (third passes first; thirteenth passes ninth). A document of unknown age
(ingested before the field existed) is not boosted. The same request at
the same ``now`` gives the same order; as time passes the order may change, by design.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragwall.payload import Key

BOOST = 0.25
RANK_K = 10  # the rank score's constant: small, so a boost moves a document a few places
DAY_S = 86400.0


def freshness_factor(modified_ts: float | None, half_life_days: float, now: float) -> float:
    """The multiplier of a document modified at ``modified_ts`` (epoch seconds)."""
    if modified_ts is None:
        return 1.0
    age_days = max(0.0, now - modified_ts) / DAY_S
    return 1.0 + BOOST * 0.5 ** (age_days / half_life_days)


def boost_recent(
    hits: Sequence[Any], half_life_days: float, now: float, k: int = RANK_K
) -> list[Any]:
    """``hits`` (each with ``provenance`` and ``scores``) reordered by the boost; each hit's
    ``scores["freshness"]`` is its multiplier."""
    keyed = []
    for rank, hit in enumerate(hits):
        ts = hit.provenance.get(Key.DOC_MODIFIED_TS)
        factor = freshness_factor(ts, half_life_days, now)
        hit.scores["freshness"] = round(factor, 6)
        keyed.append((factor / (k + rank + 1), rank, hit))
    keyed.sort(key=lambda item: (-item[0], item[1]))
    return [hit for _score, _rank, hit in keyed]
