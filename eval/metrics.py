"""Ranking metrics: small pure functions over a ranked list of ids and graded judgements.

nDCG uses exponential gains ``2^rel - 1`` and a ``log2(rank + 1)`` discount (TREC / BEIR
convention); Recall and MRR count a document as relevant when its grade is above 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    gains = [2 ** judged.get(doc, 0) - 1 for doc in ranked[:k]]
    ideal = sorted((2**g - 1 for g in judged.values() if g > 0), reverse=True)[:k]
    best = dcg(ideal)
    return dcg(gains) / best if best > 0 else 0.0


def recall_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int = 100) -> float:
    relevant = {d for d, g in judged.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    for i, doc in enumerate(ranked[:k]):
        if judged.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def detection_rates(labels: Sequence[int], predicted: Sequence[int]) -> dict:
    """Precision, recall and false-positive rate of binary predictions (1 = positive)."""
    pairs = list(zip(labels, predicted, strict=True))
    tp = sum(1 for y, p in pairs if p == 1 and y == 1)
    fp = sum(1 for y, p in pairs if p == 1 and y == 0)
    fn = sum(1 for y, p in pairs if p == 0 and y == 1)
    tn = sum(1 for y, p in pairs if p == 0 and y == 0)
    return {
        "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
        "fpr": round(fp / (fp + tn), 4) if fp + tn else 0.0,
        "n": len(pairs),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }
