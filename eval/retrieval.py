"""Retrieval quality on a BEIR-layout dataset, stage by stage, beside reference BM25s.

The corpus goes through the real ingest pipeline (one file per document) into a scratch embedded
index; each judged query is then answered by the dense branch alone, the BM25 branch alone, their
fusion as the server runs it (its settings: chunks fused inside Qdrant by default), the other
fusion level (documents fused by their best chunks, or chunks), the fusion with the recency boost
(``fused+freshness``: documents are given synthetic ages that say nothing of their relevance, so
the stage measures what the boost costs), and the fusion reranked by the cross-encoder (when one
is configured). bm25s and rank-bm25 run on the same documents in the same
process, as peers, with the same embedding model over whole documents and the RRF (k=60) of bm25s
and that dense ranking: the reference a fused system has to match, measured here rather than
quoted. Every stage is compared with that reference query by query (:func:`versus`), so a gain
within the noise says so.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ragwall.datasets import BeirDataset, document_text, load_beir, write_documents
from ragwall.eval.drift.stats import paired_bootstrap_ci, randomization_p
from ragwall.eval.metrics import mean, mrr_at_k, ndcg_at_k, recall_at_k
from ragwall.retrieval.search import SearchFilter, access_filter
from ragwall.service import Service
from ragwall.settings import Settings

DEPTH = 100  # documents ranked per query (Recall@100)
# Chunks fetched per query: documents are ranked by their best chunk, and a long document has
# several, so 100 chunks hold fewer than 100 documents. Three per document covers the corpora here.
CHUNK_DEPTH = 3 * DEPTH
RERANK_DEPTH = 30  # the API's default candidate count: what a caller's reranking sees
FRESHNESS_HALF_LIFE_DAYS = 180.0  # the recency boost's stage (``fused+freshness``)
MAX_AGE_DAYS = 3 * 365  # the synthetic documents' ages: uniform over three years


PEER = "rrf(bm25s, dense) k=60"  # the reference every stage is compared with, query by query


def _score(ranked: dict[str, list[str]], qrels: dict[str, dict[str, int]], ms: list[float]) -> dict:
    per_query = {q: ndcg_at_k(ranked[q], qrels[q], 10) for q in qrels}
    return {
        "ndcg@10": round(mean(list(per_query.values())), 4),
        "recall@100": round(mean([recall_at_k(ranked[q], qrels[q], 100) for q in qrels]), 4),
        "mrr@10": round(mean([mrr_at_k(ranked[q], qrels[q], 10) for q in qrels]), 4),
        "ms_per_query": round(mean(ms), 2),
        "queries": len(qrels),
        "per_query_ndcg@10": {q: round(v, 6) for q, v in per_query.items()},
    }


def age_documents(folder: Path, now: float) -> None:
    """Give each document file a synthetic age, uniform over :data:`MAX_AGE_DAYS` days and
    drawn from a hash of its name (deterministic, and independent of its relevance), so that
    the ``fused+freshness`` stage measures what the recency boost costs when age says nothing."""
    for path in sorted(folder.iterdir()):
        draw = int.from_bytes(hashlib.sha256(path.name.encode()).digest()[:4], "big") / 2**32
        when = now - draw * MAX_AGE_DAYS * 86400
        os.utime(path, (when, when))


def other_level(level: str) -> str:
    """The stage name of the fusion level the server does not use."""
    return "fused (chunk-level)" if level == "document" else "fused (document-level)"


def versus(peer: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any]:
    """A stage against a peer, query by query: the mean paired difference of nDCG@10 with its 95 %
    bootstrap interval (resampling queries) and a paired randomization p-value, plus how many
    queries each side wins. An interval that contains 0 means the gap is within the noise."""

    base, cand = peer["per_query_ndcg@10"], stage["per_query_ndcg@10"]
    qs = sorted(base)
    a, b = [base[q] for q in qs], [cand[q] for q in qs]
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    lo, hi = paired_bootstrap_ci(a, b)
    return {
        "mean_diff": round(mean(diffs), 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "p": round(randomization_p(a, b), 4),
        "wins": sum(d > 1e-9 for d in diffs),
        "losses": sum(d < -1e-9 for d in diffs),
        "ties": sum(abs(d) <= 1e-9 for d in diffs),
    }


def _dedupe_docs(names: list[str]) -> list[str]:
    seen, out = set(), []
    for name in names:
        doc = Path(name).stem
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
    return out


def _rrf(rankings: list[list[str]], k: int = 60) -> list[str]:
    """Reciprocal rank fusion (Cormack et al. 2009): sum of 1 / (k + rank), rank from 1."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda d: -scores[d])


def peer_rankings(
    data: BeirDataset, encoder: Any
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The peers' rankings (top DEPTH documents per judged query): bm25s (stemmed, English
    stopwords) and the embedding model over whole documents (the model truncates long ones)."""
    ranked = _peer_runs(data, encoder)
    return ranked["bm25s"][0], ranked["dense"][0]


def _peer_runs(data: BeirDataset, encoder: Any) -> dict[str, tuple[dict[str, list[str]], list]]:
    import bm25s
    import Stemmer

    ids = list(data.corpus)
    texts = [document_text(data.corpus[i]) for i in ids]
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    ranked, ms = {}, []
    for q in data.qrels:
        t = time.perf_counter()
        tokens = bm25s.tokenize(
            [data.queries[q]], stopwords="en", stemmer=stemmer, show_progress=False
        )
        docs, _ = retriever.retrieve(tokens, k=min(DEPTH, len(ids)), show_progress=False)
        ms.append((time.perf_counter() - t) * 1000)
        ranked[q] = [ids[i] for i in docs[0]]
    out = {"bm25s": (ranked, ms)}
    doc_vectors = encoder.encode(texts)  # whole documents (the model truncates long ones)
    ranked, ms = {}, []
    for q in data.qrels:
        t = time.perf_counter()
        sims = doc_vectors @ encoder.encode_query(data.queries[q])
        ranked[q] = [ids[i] for i in np.argsort(-sims)[:DEPTH]]
        ms.append((time.perf_counter() - t) * 1000)
    out["dense"] = (ranked, ms)
    return out


def _peers(data: BeirDataset, encoder: Any) -> dict[str, dict]:
    import Stemmer
    from rank_bm25 import BM25Okapi

    runs = _peer_runs(data, encoder)
    (bm25_ranked, bm25_ms), (dense_ranked, dense_ms) = runs["bm25s"], runs["dense"]
    out: dict[str, dict] = {
        "bm25s": _score(bm25_ranked, data.qrels, bm25_ms),
        "dense (same model, whole documents)": _score(dense_ranked, data.qrels, dense_ms),
    }
    fused = {q: _rrf([bm25_ranked[q], dense_ranked[q]])[:DEPTH] for q in data.qrels}
    out[PEER] = _score(fused, data.qrels, [a + b for a, b in zip(bm25_ms, dense_ms, strict=True)])
    ids = list(data.corpus)
    texts = [document_text(data.corpus[i]) for i in ids]
    stemmer = Stemmer.Stemmer("english")
    split_tokens = [[stemmer.stemWord(w) for w in t.lower().split()] for t in texts]
    okapi = BM25Okapi(split_tokens)
    ranked, ms = {}, []
    for q in data.qrels:
        t = time.perf_counter()
        scores = okapi.get_scores([stemmer.stemWord(w) for w in data.queries[q].lower().split()])
        ms.append((time.perf_counter() - t) * 1000)
        ranked[q] = [ids[i] for i in np.argsort(-scores)[:DEPTH]]
    out["rank-bm25"] = _score(ranked, data.qrels, ms)
    return out


def evaluate_retrieval(
    dataset: Path,
    split: str,
    reranker_model: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Ingest the corpus into a scratch index and score every stage; returns the results."""

    data = load_beir(dataset, split)
    say = progress or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="ragwall-eval-") as tmp:
        root = Path(tmp)
        docs = root / "corpus"
        write_documents(data.corpus, docs)
        age_documents(docs, time.time())
        # Queries embedded by the model itself (not its int8 twin); the reranker, if any, is
        # the one under test, not the environment's.
        settings = Settings(
            data_dir=root / "data",
            qdrant_url=None,
            query_encoder="torch",
            reranker_model=reranker_model,
        )
        with Service(settings) as svc:
            encoder = svc.runtime.encoder
            say(f"ingesting {len(data.corpus)} documents")
            t = time.perf_counter()
            svc.add_source("eval", "eval", str(docs), "verified")
            report = svc.ingest("eval", "eval")
            ingest_s = time.perf_counter() - t
            searcher = svc.runtime.index.current().searcher
            reranker = searcher.reranker
            flt = access_filter(None, SearchFilter())
            stages: dict[str, dict[str, Any]] = {
                "dense": {"stages": ("dense",)},
                "bm25": {"stages": ("bm25",)},
                "fused": {"stages": ("dense", "bm25")},
                # The other fusion level (issue 15's lever), beside the server's.
                other_level(settings.fuse_level): {
                    "stages": ("dense", "bm25"),
                    "fuse": "chunk" if settings.fuse_level == "document" else "document",
                },
            }
            # Recency boost (issue 29) over ages that say nothing of relevance: what it costs.
            stages["fused+freshness"] = {
                "stages": ("dense", "bm25"),
                "freshness_half_life_days": FRESHNESS_HALF_LIFE_DAYS,
            }
            if reranker is not None:  # the top RERANK_DEPTH fused hits reranked, the rest kept
                stages["fused+rerank"] = {
                    "stages": ("dense", "bm25"),
                    "rerank": True,
                    "rerank_depth": RERANK_DEPTH,
                }
            results: dict[str, dict] = {}
            say("peers: bm25s, rank-bm25, dense over whole documents, their RRF")
            peers = _peers(data, encoder)
            for name, kwargs in stages.items():
                say(f"stage {name}: {len(data.qrels)} queries")
                ranked, ms = {}, []
                for q in data.qrels:
                    t = time.perf_counter()
                    res = searcher.search(
                        data.queries[q],
                        flt,
                        top_k=CHUNK_DEPTH,
                        # Fusion reads each branch's top DEPTH chunks (deeper lists would change
                        # the fused order); a single branch simply returns more.
                        candidates=DEPTH if len(kwargs["stages"]) > 1 else CHUNK_DEPTH,
                        rrf_k=settings.rrf_k,
                        bm25_weight=settings.bm25_weight,
                        **{"fuse": settings.fuse_level, **kwargs},
                    )
                    ms.append((time.perf_counter() - t) * 1000)
                    ranked[q] = _dedupe_docs([h.provenance["doc_name"] for h in res.hits])[:DEPTH]
                results[name] = _score(ranked, data.qrels, ms)
    return {
        "dataset": str(dataset),
        "split": split,
        "documents": len(data.corpus),
        "chunks": report.chunks,
        "ingest_s": round(ingest_s, 1),
        "stages": results,
        "peers": peers,
        "versus_peer": {"peer": PEER, **{n: versus(peers[PEER], m) for n, m in results.items()}},
        # The recency boost on and off, query by query (ages synthetic: ``age_documents``).
        "freshness": {
            "half_life_days": FRESHNESS_HALF_LIFE_DAYS,
            "max_age_days": MAX_AGE_DAYS,
            **versus(results["fused"], results["fused+freshness"]),
        },
        "reranker": reranker_model,
    }
