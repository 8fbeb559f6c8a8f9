"""BM25 sparse vectors for Qdrant.

Small pure functions. A document's vector holds, per term, the BM25 term-frequency saturation
``tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``; a query's vector holds each term's count in
the query. The collection stores the sparse vector with Qdrant's IDF modifier, so the engine multiplies
in ``idf = ln(1 + (N - n + 0.5) / (n + 0.5))`` from its live document frequencies, and the dot
product of query and document is their BM25 score (the Lucene variant that bm25s uses too).

Tokenization follows bm25s: lower case, ``\\b\\w\\w+\\b`` words, English stopwords removed,
Snowball (PyStemmer) English stems. A term's index is a stable 32-bit hash of its stem.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import Stemmer
from bm25s.stopwords import STOPWORDS_EN

TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")
STOPWORDS: frozenset[str] = frozenset(STOPWORDS_EN)
_STEMMER = Stemmer.Stemmer("english")


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _STEMMER.stemWord(word)


def tokenize(text: str) -> list[str]:
    """Stemmed, stopword-free terms of ``text`` in order."""
    return [_stem(w) for w in TOKEN_PATTERN.findall(text.lower()) if w not in STOPWORDS]


@lru_cache(maxsize=200_000)
def term_index(term: str) -> int:
    """Stable unsigned 32-bit index of ``term`` (blake2b; the same on every machine and run)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "little")


def bm25_document_vector(
    terms: list[str], avg_len: float, k1: float = 1.2, b: float = 0.75
) -> SparseVector:
    """The BM25 document-side weights of a tokenized passage (IDF is applied by Qdrant)."""
    if not terms:
        return SparseVector([], [])
    doc_len = len(terms)
    norm = k1 * (1.0 - b + b * doc_len / max(avg_len, 1e-9))
    weights: dict[int, float] = {}
    for term, tf in Counter(terms).items():
        idx = term_index(term)
        # Two stems hashing to one index is vanishingly rare; if it happens, their weights add.
        weights[idx] = weights.get(idx, 0.0) + tf * (k1 + 1.0) / (tf + norm)
    indices = sorted(weights)
    return SparseVector(indices, [weights[i] for i in indices])


def bm25_query_vector(terms: list[str]) -> SparseVector:
    """The query side: each distinct term weighted by its count in the query (as bm25s sums)."""
    counts: dict[int, float] = {}
    for term in terms:
        idx = term_index(term)
        counts[idx] = counts.get(idx, 0.0) + 1.0
    indices = sorted(counts)
    return SparseVector(indices, [counts[i] for i in indices])
