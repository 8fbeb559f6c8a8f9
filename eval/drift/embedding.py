"""Embedding drift between two index versions, measured on their stored vectors.

Chunks are matched across versions by their document's hash and span (``doc_sha256``,
``char_start``, ``char_end``): the same passage of the same bytes. Up to ``sample`` live chunks
are read from the baseline (in point-id order, which is a hash order, so an unbiased sample), and
their matches from the candidate.

- **Same embedding model** (``method: cosine``): the cosine between each matched chunk's old and
  new vector (1.0 when nothing changed; chunks whose text changed score lower), and a
  domain-classifier AUC over the two samples (logistic regression, 5-fold; 0.5 means a
  classifier cannot tell the versions' vectors apart, towards 1.0 means their distributions
  differ, e.g. a large new source).
- **Different models** (``method: linear_cka``): the vectors live in two unrelated spaces (often of
  different sizes), so they are compared by their geometry: linear CKA (Kornblith et al. 2019)
  between the matched chunks' vectors under each model (1.0: the same similarity structure),
  and the mean overlap of each chunk's 10 nearest neighbours under the two models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ragwall.payload import LIVE, Key
from ragwall.retrieval.store import Filter, Match, MatchAny, Store

SAMPLE = 2000
PAGE = 256
NEIGHBOURS = 10
_SPAN_FIELDS = [Key.DOC_SHA256, Key.CHAR_START, Key.CHAR_END]


def _key(payload: dict[str, Any]) -> tuple[str, Any, Any]:
    return (payload.get(Key.DOC_SHA256), payload.get(Key.CHAR_START), payload.get(Key.CHAR_END))


def _read(store: Store, flt: Filter, limit: int) -> dict[tuple, np.ndarray]:
    out: dict[tuple, np.ndarray] = {}
    offset = None
    while len(out) < limit:
        page, offset = store.scroll(
            flt, limit=min(PAGE, limit - len(out)), offset=offset,
            with_payload=_SPAN_FIELDS, with_vectors=True,
        )  # fmt: skip
        for hit in page:
            if hit.dense is not None:
                out.setdefault(_key(hit.payload), np.asarray(hit.dense, dtype=np.float32))
        if offset is None:
            break
    return out


def _unit(m: np.ndarray) -> np.ndarray:
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centered kernel alignment of two representations of the same n items."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def neighbour_overlap(x: np.ndarray, y: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Mean share of each item's k nearest neighbours (cosine) shared by the two spaces."""
    n = len(x)
    if n <= k:
        return 1.0
    sx, sy = _unit(x) @ _unit(x).T, _unit(y) @ _unit(y).T
    np.fill_diagonal(sx, -np.inf)
    np.fill_diagonal(sy, -np.inf)
    nx = np.argpartition(-sx, k, axis=1)[:, :k]
    ny = np.argpartition(-sy, k, axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(nx, ny, strict=True)]))


def domain_auc(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a classifier telling ``a``'s rows from ``b``'s."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    n = min(len(a), len(b))
    if n < 10:
        return 0.5
    x = np.vstack([a[:n], b[:n]])
    y = np.array([0] * n + [1] * n)
    clf = LogisticRegression(max_iter=1000, C=1.0)
    return float(np.mean(cross_val_score(clf, x, y, cv=5, scoring="roc_auc")))


def embedding_drift(
    baseline: Store,
    candidate: Store,
    baseline_model: str,
    candidate_model: str,
    sample: int = SAMPLE,
) -> dict[str, Any]:
    """Compare the stored vectors of two versions (see the module docstring)."""
    live = Filter(must=(Match(Key.STATE, LIVE),))
    old = _read(baseline, live, sample)
    docs = tuple(sorted({k[0] for k in old if k[0]}))
    new: dict[tuple, np.ndarray] = {}
    for i in range(0, len(docs), 500):
        flt = Filter(must=(Match(Key.STATE, LIVE), MatchAny(Key.DOC_SHA256, docs[i : i + 500])))
        new.update(_read(candidate, flt, 10 * sample))
    matched = [k for k in old if k in new]
    out: dict[str, Any] = {
        "sampled": len(old),
        "matched": len(matched),
        "same_model": baseline_model == candidate_model,
    }
    if len(matched) < 2:
        out.update(method=None, why="fewer than 2 chunks have the same document and span in both")
        return out
    x = np.stack([old[k] for k in matched])
    y = np.stack([new[k] for k in matched])
    if baseline_model == candidate_model and x.shape[1] == y.shape[1]:
        cos = np.sum(_unit(x) * _unit(y), axis=1)
        others = _read(candidate, live, sample)
        out.update(
            method="cosine",
            cosine={
                "mean": round(float(cos.mean()), 6),
                "p10": round(float(np.percentile(cos, 10)), 6),
                "min": round(float(cos.min()), 6),
                "share_below_0.99": round(float((cos < 0.99).mean()), 4),
            },
            domain_auc=round(
                domain_auc(np.stack(list(old.values())), np.stack(list(others.values()))), 4
            ),
        )
    else:
        out.update(
            method="linear_cka",
            linear_cka=round(linear_cka(x, y), 4),
            neighbour_overlap_at_10=round(neighbour_overlap(x, y), 4),
        )
    return out
