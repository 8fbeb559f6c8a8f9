"""Compare two retrieval snapshots of one index: what changed, whether it matters, and why.

:func:`compare` is pure: it reads two :class:`~ragwall.eval.drift.snapshot.Snapshot` objects (and qrels,
gates and an embedding-drift result when given) and returns the drift result as one JSON-ready
dict, the object that ``ragwall eval drift --json`` prints and ``drift.json`` holds.

What is measured, per query, then aggregated:

- **Result-set change**: Jaccard of the top-k *documents* (each document counted once, at its best
  chunk) and of the top-k *chunks* (a chunk is its document's hash and span, so versions with the
  same chunking compare chunk for chunk); RBO (p = 0.9, extrapolated) of the top-k document
  rankings; whether the top document changed.
- **Quality change** (with qrels): nDCG@10 and Recall@k per side over documents, the mean paired
  difference with a 95 % bootstrap interval and a randomization-test p-value.
- **Source-share drift**: per source, the share of queries with one of its chunks among the top-k
  hits, before and after, largest gain first (a new source in many queries' results is how a
  poisoning campaign or a misconfigured source shows).
- **Score and trust drift**: KS tests on the top-k fused and dense scores, the share of top-k hits
  flagged, their mean trust.
- **The most-changed queries**: lowest RBO first, each with its top 3 documents before and after.

Gates (:class:`Gates`) turn the result into a verdict: ``fail`` when any set gate fails.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ragwall.datasets import DatasetError
from ragwall.eval.drift.snapshot import Snapshot, SnapshotHit, check_comparable, select
from ragwall.eval.drift.stats import (
    jaccard,
    ks,
    paired_bootstrap_ci,
    randomization_p,
    rbo,
    summary,
)
from ragwall.eval.metrics import ndcg_at_k, recall_at_k

RBO_P = 0.9
MOST_CHANGED = 10


@dataclass(frozen=True)
class Gates:
    """Thresholds a comparison must meet; ``None`` leaves a gate off.

    Parameters:
        max_ndcg_drop: fail when nDCG@10 falls by more than this *and* the fall is significant
            (randomization p < ``alpha``). Needs qrels.
        min_mean_rbo: fail when the mean RBO is below this.
        max_new_source_share: fail when any source gains more than this share of queries' top-k
            (e.g. 0.05: a source newly in over 5 % of the queries' results).
        alpha: the significance level of the nDCG gate.
    """

    max_ndcg_drop: float | None = None
    min_mean_rbo: float | None = None
    max_new_source_share: float | None = None
    alpha: float = 0.05

    def __post_init__(self) -> None:
        for name in ("max_ndcg_drop", "min_mean_rbo", "max_new_source_share"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be strictly between 0 and 1, not {self.alpha}")


def documents(hits: Sequence[SnapshotHit]) -> list[SnapshotHit]:
    """The first hit of each document, in rank order."""
    seen: set[str] = set()
    out = []
    for h in hits:
        if h.doc_sha256 not in seen:
            seen.add(h.doc_sha256)
            out.append(h)
    return out


def _per_query(
    base: list[SnapshotHit], cand: list[SnapshotHit], k: int, judged: dict[str, int] | None
) -> dict[str, Any]:
    all_b, all_c = documents(base), documents(cand)
    ids_b, ids_c = [h.doc_sha256 for h in all_b[:k]], [h.doc_sha256 for h in all_c[:k]]
    row: dict[str, Any] = {
        "jaccard": jaccard(ids_b, ids_c),
        "jaccard_chunks": jaccard([h.chunk for h in base[:k]], [h.chunk for h in cand[:k]]),
        "rbo": rbo(ids_b, ids_c, RBO_P),
        "top1_changed": (ids_b[:1] != ids_c[:1]),
    }
    if judged is not None:
        # Judged by document id (the file stem); a document ranks at its best chunk.
        rank_b, rank_c = [h.doc for h in all_b], [h.doc for h in all_c]
        row["ndcg_baseline"] = ndcg_at_k(rank_b, judged, 10)
        row["ndcg_candidate"] = ndcg_at_k(rank_c, judged, 10)
        row["recall_baseline"] = recall_at_k(rank_b, judged, k)
        row["recall_candidate"] = recall_at_k(rank_c, judged, k)
    return row


def _quality(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    b = [r[f"{key}_baseline"] for r in rows]
    c = [r[f"{key}_candidate"] for r in rows]
    lo, hi = paired_bootstrap_ci(b, c)
    mean_b, mean_c = statistics.fmean(b), statistics.fmean(c)
    return {
        "baseline": round(mean_b, 4),
        "candidate": round(mean_c, 4),
        "delta": round(mean_c - mean_b, 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "p_value": round(randomization_p(b, c), 4),
    }


def _source_shares(
    base: list[list[SnapshotHit]], cand: list[list[SnapshotHit]], k: int
) -> list[dict[str, Any]]:
    n = len(base)
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    for hits, tally in ((base, before), (cand, after)):
        for q in hits:
            for source in {h.source_id for h in q[:k]}:
                tally[source] = tally.get(source, 0) + 1
    rows = [
        {
            "source": s,
            "before": round(before.get(s, 0) / n, 4),
            "after": round(after.get(s, 0) / n, 4),
            "delta": round((after.get(s, 0) - before.get(s, 0)) / n, 4),
            "new": s not in before,
        }
        for s in sorted(set(before) | set(after))
    ]
    rows.sort(key=lambda r: (-r["delta"], -r["after"], r["source"]))
    return rows


def _score_drift(
    base: list[list[SnapshotHit]], cand: list[list[SnapshotHit]], k: int
) -> dict[str, Any]:
    def values(side: list[list[SnapshotHit]], name: str) -> list[float]:
        return [h.scores[name] for q in side for h in q[:k] if h.scores.get(name) is not None]  # type: ignore[misc]

    def share_flagged(side: list[list[SnapshotHit]]) -> float:
        hits = [h for q in side for h in q[:k]]
        return round(sum(1 for h in hits if h.flags) / len(hits), 4) if hits else 0.0

    def mean_trust(side: list[list[SnapshotHit]]) -> float:
        hits = [h.trust for q in side for h in q[:k]]
        return round(statistics.fmean(hits), 4) if hits else 0.0

    out: dict[str, Any] = {}
    for name in ("fused", "dense", "sparse"):
        b, c = values(base, name), values(cand, name)
        if b or c:
            out[name] = {
                "baseline_mean": round(statistics.fmean(b), 4) if b else None,
                "candidate_mean": round(statistics.fmean(c), 4) if c else None,
                "ks": ks(b, c),
            }
    out["flagged_share"] = {"baseline": share_flagged(base), "candidate": share_flagged(cand)}
    out["mean_trust"] = {"baseline": mean_trust(base), "candidate": mean_trust(cand)}
    return out


def _top3(hits: list[SnapshotHit]) -> list[dict[str, str]]:
    return [{"doc": h.doc_name, "source": h.source_id} for h in documents(hits)[:3]]


def evaluate_gates(result: dict[str, Any], gates: Gates) -> dict[str, Any]:
    """Each set gate with its threshold, the measured value and whether it passed."""
    out: dict[str, Any] = {}
    if gates.max_ndcg_drop is not None:
        q = result.get("ndcg@10")
        if q is None:
            out["max_ndcg_drop"] = {
                "threshold": gates.max_ndcg_drop,
                "value": None,
                "passed": False,
                "why": "needs qrels (--qrels, or --dataset with a split)",
            }
        else:
            drop = -q["delta"]
            significant = q["p_value"] < gates.alpha
            out["max_ndcg_drop"] = {
                "threshold": gates.max_ndcg_drop,
                "value": round(drop, 4),
                "p_value": q["p_value"],
                "alpha": gates.alpha,
                "passed": not (drop > gates.max_ndcg_drop and significant),
            }
    if gates.min_mean_rbo is not None:
        value = result["rbo"]["mean"]
        out["min_mean_rbo"] = {
            "threshold": gates.min_mean_rbo,
            "value": value,
            "passed": value >= gates.min_mean_rbo,
        }
    if gates.max_new_source_share is not None:
        top = result["sources"][0] if result["sources"] else None
        gain = max(0.0, top["delta"]) if top else 0.0
        out["max_new_source_share"] = {
            "threshold": gates.max_new_source_share,
            "value": gain,
            "source": top["source"] if top and gain > 0 else None,
            "passed": gain <= gates.max_new_source_share,
        }
    return out


def compare(
    baseline: Snapshot,
    candidate: Snapshot,
    query_ids: Sequence[str] | None = None,
    qrels: dict[str, dict[str, int]] | None = None,
    top_k: int = 10,
    gates: Gates | None = None,
    embedding: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The drift from ``baseline`` to ``candidate`` over ``query_ids`` (default: the baseline's
    queries); see the module docstring. Raises DatasetError when the snapshots come from two
    indexes or lack some of the queries."""
    check_comparable(baseline, candidate)
    for name, snap in (("baseline", baseline), ("candidate", candidate)):
        if snap.top_k < top_k:
            raise DatasetError(
                f"the {name} snapshot was taken with top_k {snap.top_k}; compare at most that "
                f"deep (--top-k {snap.top_k}), or take it again with --top-k {top_k}"
            )
    ids = list(query_ids) if query_ids is not None else [q.id for q in baseline.queries]
    base_q = select(baseline, ids, "baseline")
    cand_q = select(candidate, ids, "candidate")
    judged = qrels or {}
    rows = []
    for b, c in zip(base_q, cand_q, strict=True):
        row = _per_query(b.hits, c.hits, top_k, judged.get(b.id) if qrels else None)
        rows.append({"id": b.id, "text": b.text, **row})
    result: dict[str, Any] = {
        "queries": len(rows),
        "top_k": top_k,
        "baseline": _side(baseline),
        "candidate": _side(candidate),
        "jaccard@k": summary([r["jaccard"] for r in rows]),
        "jaccard@k_chunks": summary([r["jaccard_chunks"] for r in rows]),
        "rbo": summary([r["rbo"] for r in rows]),
        "top1_changed": round(sum(r["top1_changed"] for r in rows) / len(rows), 4),
    }
    judged_rows = [r for r in rows if "ndcg_baseline" in r and r["id"] in judged]
    if qrels and judged_rows:
        result["ndcg@10"] = {**_quality(judged_rows, "ndcg"), "queries": len(judged_rows)}
        result[f"recall@{top_k}"] = {**_quality(judged_rows, "recall"), "queries": len(judged_rows)}
    base_hits = [q.hits for q in base_q]
    cand_hits = [q.hits for q in cand_q]
    result["sources"] = _source_shares(base_hits, cand_hits, top_k)
    result["scores"] = _score_drift(base_hits, cand_hits, top_k)
    result["embedding"] = embedding or {
        "method": None,
        "why": "needs two index versions (a snapshot file holds no vectors)",
    }
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["rbo"], rows[i]["jaccard"]))
    result["most_changed"] = [
        {
            "id": rows[i]["id"],
            "text": rows[i]["text"],
            "rbo": round(rows[i]["rbo"], 4),
            "jaccard": round(rows[i]["jaccard"], 4),
            "before": _top3(base_hits[i]),
            "after": _top3(cand_hits[i]),
        }
        for i in order[:MOST_CHANGED]
        if rows[i]["rbo"] < 1.0
    ]
    result["per_query"] = [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "text"}
        for r in rows
    ]
    result["gates"] = evaluate_gates(result, gates or Gates())
    result["verdict"] = "pass" if all(g["passed"] for g in result["gates"].values()) else "fail"
    return result


def _side(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "index_version": snapshot.index_version,
        "fingerprint": snapshot.fingerprint,
        "embedding_model": snapshot.embedding_model,
        "taken_at": snapshot.taken_at,
        "ranking": snapshot.ranking,
    }
