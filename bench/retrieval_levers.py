"""Issue 15's retrieval levers on the three judged collections, against the in-process RRF peer.

    python bench/retrieval_levers.py --workdir /tmp/ragwall-levers [--json]

Each collection (Cranfield dev, CISI dev, SciFact train: dev/train queries only, never a held-out
split) is ingested once through the real pipeline into ``WORKDIR/<name>/data`` (reused when
present). The peer is eval's: bm25s over whole documents and MiniLM over whole documents, fused by
RRF (k=60), 100 documents per branch. Every variant runs through the real searcher and engine:

- fusion level (chunks in Qdrant, or documents by their best chunk) x RRF k x BM25 branch weight;
- pseudo-relevance feedback, a second search round: RM3 on the sparse branch (expansion terms from
  the top fused documents' chunks) and Rocchio on the dense branch (the top chunks' vectors);
- what a document-level sparse branch would give: bm25s's whole-document ranking fused with
  Ragwall's dense branch (the index has no document-level sparse vectors: an upper bound).

For each it prints nDCG@10 with the mean paired difference from the peer and its 95 % bootstrap
interval, and Recall@100. The fusion settings are then chosen by leave-one-collection-out: the
setting best on two collections, scored on the third.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ragwall.datasets import load_beir, write_documents  # noqa: E402
from ragwall.eval.drift.stats import paired_bootstrap_ci  # noqa: E402
from ragwall.eval.metrics import ndcg_at_k, recall_at_k  # noqa: E402
from ragwall.eval.retrieval import PEER, _rrf, peer_rankings  # noqa: E402
from ragwall.retrieval.fusion import Ranked, rrf_documents  # noqa: E402
from ragwall.retrieval.search import SearchFilter, access_filter  # noqa: E402
from ragwall.retrieval.sparse import bm25_query_vector, term_index, tokenize  # noqa: E402
from ragwall.retrieval.store import Branch, Query, SparseVec  # noqa: E402
from ragwall.service import Service  # noqa: E402
from ragwall.settings import Settings  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
COLLECTIONS = {
    "cranfield": (SHARED / "cranfield", "dev"),
    "cisi": (SHARED / "cisi", "dev"),
    "scifact": (SHARED / "beir-train" / "scifact", "train"),
}
DEPTH = 100
FUSION_GRID = [
    {"fuse": fuse, "rrf_k": k, "bm25_weight": w}
    for fuse, k, w in itertools.product(("chunk", "document"), (10, 20, 60), (0.5, 1.0, 2.0))
]


def _doc(name: str) -> str:
    return Path(name).stem


def _docs(hits: list) -> list[str]:
    return list(dict.fromkeys(_doc(h.provenance["doc_name"]) for h in hits))[:DEPTH]


def _prf(svc: Service, query: str, flt, m: int, terms: int, lam: float, beta: float) -> list[str]:
    """One feedback round: RM3 (sparse) and/or Rocchio (dense) from the top ``m`` fused hits."""
    searcher = svc.runtime.index.current().searcher
    dense = np.asarray(searcher.query_encoder.encode_query(query), dtype=np.float32)
    q_terms = Counter(tokenize(query))
    sparse = bm25_query_vector(list(q_terms.elements()))
    round_one = [Branch("dense", dense.tolist(), DEPTH)]
    if sparse.indices:
        round_one.append(Branch("bm25", SparseVec(sparse.indices, sparse.values), DEPTH))
    (top,) = searcher.store.query_batch([Query(round_one, m, flt, "rrf", 60, with_dense=True)])
    texts = [h.payload.get("text", "") for h in top]
    vectors = [np.asarray(h.dense, dtype=np.float32) for h in top]
    weights: Counter[int] = Counter(
        {term_index(t): c / sum(q_terms.values()) for t, c in q_terms.items()}
    )
    if lam < 1.0 and texts:
        feedback: Counter[str] = Counter()
        for text in texts:
            toks = tokenize(text)
            for t, c in Counter(toks).items():
                feedback[t] += c / max(len(toks), 1) / len(texts)
        top = feedback.most_common(terms)
        total = sum(v for _, v in top) or 1.0
        weights = Counter({i: lam * v for i, v in weights.items()})
        for t, v in top:
            weights[term_index(t)] += (1 - lam) * v / total
    if beta and vectors:
        centroid = np.mean(vectors, axis=0)
        dense = dense + beta * centroid
        dense /= np.linalg.norm(dense)
    idx = sorted(weights)
    branches = [Branch("dense", dense.tolist(), DEPTH)]
    if idx:
        branches.append(Branch("bm25", SparseVec(idx, [weights[i] for i in idx]), DEPTH))
    (hits,) = searcher.store.query_batch([Query(branches, 3 * DEPTH, flt, "rrf", 60)])
    return list(dict.fromkeys(_doc(h.payload["doc_name"]) for h in hits))[:DEPTH]


def _collection(name: str, workdir: Path) -> dict:
    folder, split = COLLECTIONS[name]
    data = load_beir(folder, split)
    root = workdir / name
    settings = Settings(data_dir=root / "data", qdrant_url=None, query_encoder="torch")
    queries = list(data.qrels)
    with Service(settings) as svc:
        if not (root / "ingested").exists():
            print(f"{name}: ingesting {len(data.corpus)} documents", flush=True)
            write_documents(data.corpus, root / "corpus")
            svc.add_source("eval", "eval", str(root / "corpus"), "verified")
            svc.ingest("eval", "eval")
            (root / "ingested").write_text(datetime.now(UTC).isoformat())
        peers_file = root / "peers.json"
        if peers_file.exists():
            bm25s_ranked, dense_ranked = json.loads(peers_file.read_text())
        else:
            print(f"{name}: peers", flush=True)
            bm25s_ranked, dense_ranked = peer_rankings(data, svc.runtime.encoder)
            peers_file.write_text(json.dumps([bm25s_ranked, dense_ranked]))
        flt = access_filter(None, SearchFilter())
        runs: dict[str, dict[str, list[str]]] = {
            PEER: {q: _rrf([bm25s_ranked[q], dense_ranked[q]])[:DEPTH] for q in queries}
        }
        searcher = svc.runtime.index.current().searcher
        for params in FUSION_GRID:
            runs[json.dumps(params)] = {
                q: _docs(
                    searcher.search(
                        data.queries[q], flt, top_k=3 * DEPTH, candidates=DEPTH, **params
                    ).hits
                )
                for q in queries
            }
        dense_docs = {
            q: _docs(
                searcher.search(
                    data.queries[q], flt, top_k=3 * DEPTH, candidates=3 * DEPTH, stages=("dense",)
                ).hits
            )
            for q in queries
        }
        for k in (20, 60):
            runs[f"document-level sparse (bm25s) + dense, k={k}"] = {
                q: [
                    f.doc
                    for f in rrf_documents(
                        [
                            [Ranked(d, d) for d in dense_docs[q]],
                            [Ranked(d, d) for d in bm25s_ranked[q]],
                        ],
                        k=k,
                    )
                ][:DEPTH]
                for q in queries
            }
        for label, (m, terms, lam, beta) in {
            "prf rm3 (3 docs, 20 terms, lambda 0.7)": (3, 20, 0.7, 0.0),
            "prf rocchio (5 chunks, beta 0.3)": (5, 0, 1.0, 0.3),
        }.items():
            runs[label] = {q: _prf(svc, data.queries[q], flt, m, terms, lam, beta) for q in queries}
    peer = [ndcg_at_k(runs[PEER][q], data.qrels[q], 10) for q in queries]
    out = {}
    for label, ranked in runs.items():
        nd = [ndcg_at_k(ranked[q], data.qrels[q], 10) for q in queries]
        lo, hi = paired_bootstrap_ci(peer, nd)
        out[label] = {
            "ndcg@10": round(float(np.mean(nd)), 4),
            "diff": round(float(np.mean(nd) - np.mean(peer)), 4),
            "ci95": [round(lo, 4), round(hi, 4)],
            "recall@100": round(
                float(np.mean([recall_at_k(ranked[q], data.qrels[q], 100) for q in queries])), 4
            ),
        }
    return {"queries": len(queries), "split": split, "results": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ragwall-levers"))
    parser.add_argument("--collections", nargs="+", default=list(COLLECTIONS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    t = time.perf_counter()
    per = {name: _collection(name, args.workdir) for name in args.collections}
    for name, res in per.items():
        print(
            f"\n{name} ({res['split']}, {res['queries']} queries): nDCG@10, Δ vs {PEER} [95% CI], R@100"
        )
        for label, r in res["results"].items():
            lo, hi = r["ci95"]
            print(
                f"  {label:62s} {r['ndcg@10']:.4f} {r['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}] {r['recall@100']:.4f}"
            )
    grid = [json.dumps(p) for p in FUSION_GRID]
    loco = {}
    for held in per:
        train = [n for n in per if n != held]
        best = max(grid, key=lambda g: np.mean([per[n]["results"][g]["diff"] for n in train]))
        loco[held] = {
            "chosen_on_the_others": json.loads(best),
            "diff": per[held]["results"][best]["diff"],
        }
        print(f"leave {held} out: {best} -> {held} Δ {loco[held]['diff']:+.4f}")
    mean = {g: float(np.mean([per[n]["results"][g]["diff"] for n in per])) for g in grid}
    best = max(grid, key=mean.get)
    print(f"best on all {len(per)}: {best} (mean Δ {mean[best]:+.4f})")
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.now(UTC).date().isoformat(),
        "seconds": round(time.perf_counter() - t),
        "collections": per,
        "leave_one_out": loco,
        "best_on_all": {"setting": json.loads(best), "mean_diff": round(mean[best], 4)},
    }
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
