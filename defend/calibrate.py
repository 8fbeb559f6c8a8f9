"""Choosing the injection model's threshold and reporting its rates, per dataset.

Invariant: the threshold is chosen on benign texts the model was not fitted on (the ``val``
part of the split, or the other sources in a leave-one-source-out run), and every benign
dataset is held to the false-positive cap on its own, so one large easy set cannot hide a hard
one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ragwall.defend.data import Example


class Caps(Protocol):
    max_fpr: float  # per benign dataset
    max_pooled_fpr: float  # all benign texts together


def choose_threshold(
    logits: np.ndarray, examples: Sequence[Example], caps: Caps
) -> tuple[float, dict]:
    """The lowest logit whose false-positive rates on benign ``examples`` meet both caps.

    Each benign dataset may have ``max_fpr`` of its texts flagged, and at least one (in a set
    of 40 texts, "at most 1 %" would otherwise mean "none", and its single hardest text would
    set the threshold for everything); all benign texts together at most ``max_pooled_fpr``.
    """
    benign = [i for i, e in enumerate(examples) if e.label == 0]
    by_set: dict[str, list[float]] = {}
    for i in benign:
        by_set.setdefault(examples[i].dataset, []).append(float(logits[i]))
    cut = -np.inf
    for values in by_set.values():
        v = np.sort(values)
        allowed = max(1, int(math.floor(len(v) * caps.max_fpr)))  # false positives allowed
        cut = max(cut, v[len(v) - 1 - allowed] if allowed < len(v) else -np.inf)
    pooled = np.sort([float(logits[i]) for i in benign])
    allowed = int(math.floor(len(pooled) * caps.max_pooled_fpr))
    cut = max(cut, pooled[len(pooled) - 1 - allowed])
    cut = float(cut) + 1e-4
    return cut, {name: len(v) for name, v in by_set.items()}


def auc(logits: np.ndarray, examples: Sequence[Example], held: list, val: list) -> float:
    """ROC AUC of the held-out rows' attacks against every benign val text: separability at any
    threshold, apart from the choice of one."""
    from sklearn.metrics import roc_auc_score

    pos = [logits[i] for i in held if examples[i].label == 1]
    neg = [logits[i] for i in val if examples[i].label == 0]
    if not pos or not neg:
        return float("nan")
    y = [1] * len(pos) + [0] * len(neg)
    return round(float(roc_auc_score(y, pos + neg)), 4)


def rates(logits: np.ndarray, examples: Sequence[Example], cut: float) -> dict:
    """Recall per attack dataset, false-positive rate per benign dataset, at ``cut``."""
    out: dict[str, dict] = {}
    for name in sorted({e.dataset for e in examples}):
        idx = [i for i, e in enumerate(examples) if e.dataset == name]
        pos = [i for i in idx if examples[i].label == 1]
        neg = [i for i in idx if examples[i].label == 0]
        row: dict[str, float | int] = {}
        if pos:
            row["recall"] = round(float(np.mean([logits[i] >= cut for i in pos])), 4)
            row["attacks"] = len(pos)
        if neg:
            row["fpr"] = round(float(np.mean([logits[i] >= cut for i in neg])), 4)
            row["benign"] = len(neg)
        out[name] = row
    return out
