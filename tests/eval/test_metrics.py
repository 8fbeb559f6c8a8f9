"""Ranking metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from ragwall.eval.metrics import mrr_at_k, ndcg_at_k, recall_at_k


def test_ndcg_graded_exponential_gains():
    judged = {"a": 3, "b": 1, "c": 2}
    ranked = ["b", "x", "a"]
    dcg = (2**1 - 1) / math.log2(2) + 0 + (2**3 - 1) / math.log2(4)
    ideal = (2**3 - 1) / math.log2(2) + (2**2 - 1) / math.log2(3) + (2**1 - 1) / math.log2(4)
    assert ndcg_at_k(ranked, judged, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(["a", "c", "b"], judged, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], judged, 10) == 0.0
    assert ndcg_at_k(["b", "a"], judged, 1) == pytest.approx(1 / 7)
    assert ndcg_at_k(["a"], {"a": 0}, 10) == 0.0  # nothing relevant: 0, not a division error


def test_recall_and_mrr():
    judged = {"a": 1, "b": 2, "z": 0}
    assert recall_at_k(["a", "x", "b"], judged, 2) == 0.5
    assert recall_at_k(["a", "x", "b"], judged, 100) == 1.0
    assert mrr_at_k(["x", "z", "b"], judged, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y"], judged, 10) == 0.0
    assert mrr_at_k(["x", "b"], judged, 1) == 0.0


def test_detection_rates():
    from ragwall.eval.metrics import detection_rates

    r = detection_rates([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    assert r["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 1}
    assert (r["precision"], r["recall"], r["fpr"], r["n"]) == (0.6667, 0.6667, 0.5, 5)
    assert detection_rates([0, 0], [0, 0])["precision"] == 0.0  # nothing predicted positive
