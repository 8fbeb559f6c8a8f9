"""What the query-time defenses cost per query, at 100k chunks.

    python bench/defend_query.py [--pad 100000] [--json]

Real chunks first: the Cranfield abstracts (``internal``) and PoisonedRAG's planted passages in
the black-box form, P = Q + I, one per target question (``external``), ingested through the real
pipeline. Then the same shard is padded with ``--pad`` synthetic chunks (random unit vectors,
Zipf-drawn sparse terms, ~1,000-character texts, live ``internal`` payloads: bench/synthetic.py) so that every search runs against an index of that size.

Queries: the 100 target questions (a planted passage heads most candidate lists, so the mirror
check tokenizes it) and Cranfield's 150 dev queries (ordinary lists). Each is asked with the
defenses off and on (30 candidates); after a warm-up pass, the script reports p50 and p99 of the
searcher's ``defend`` stage (flags, flood, mirror, policy) and of the whole search, off and on.
The defend stage sees only the candidate list, so its cost does not grow with the index; the
whole search's does (the candidates' vectors are read for the flood check).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from synthetic import synthetic_chunks  # bench/synthetic.py (run from bench/)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _pad(store, n: int) -> None:  # noqa: ANN001 - an EdgeStore
    extra = {"trust_tier": "internal", "groups": []}
    done = 0
    for step, points in enumerate(
        synthetic_chunks(n, source_id="pad", chunks_per_doc=20, extra=extra)
    ):
        store.upsert(points)
        done += len(points)
        if step % 40 == 0:
            print(f"padded {done:,} of {n:,}", file=sys.stderr, flush=True)
    store.optimize()
    store.flush()


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pad", type=int, default=100_000, help="synthetic chunks to add")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from ragwall.datasets import _jsonl, load_corpus, write_documents
    from ragwall.eval.poisoning import load_attack, planted_text
    from ragwall.retrieval.search import SearchFilter, access_filter
    from ragwall.service import Service
    from ragwall.settings import Settings

    items = load_attack(SHARED / "poisonedrag" / "nq.json")
    cran = SHARED / "cranfield"
    with tempfile.TemporaryDirectory(prefix="ragwall-defend-bench-") as tmp:
        root = Path(tmp)
        settings = Settings(data_dir=root / "data", qdrant_url=None)
        with Service(settings) as svc:
            write_documents(load_corpus(cran), root / "cran")
            svc.add_source("bench", "cran", str(root / "cran"), "internal")
            print("ingesting Cranfield", file=sys.stderr, flush=True)
            svc.ingest("bench", "cran")
            (root / "planted").mkdir()
            for item in items:
                text = planted_text("question+passage", item["question"], item["adv_texts"][0])
                (root / "planted" / f"{item['id']}-0.txt").write_text(text, encoding="utf-8")
            svc.add_source("bench", "planted", str(root / "planted"), "external")
            svc.ingest("bench", "planted")
            searcher = svc.runtime.index.current().searcher
            _pad(searcher.store, args.pad)
            chunks = searcher.store.count()
            queries = [i["question"] for i in items]
            qrels = {
                r.split("\t")[0]
                for r in (cran / "qrels" / "dev.tsv").read_text().split("\n")[1:]
                if r
            }
            queries += [q["text"] for q in _jsonl(cran / "queries.jsonl") if str(q["_id"]) in qrels]
            flt = access_filter(None, SearchFilter())
            on = svc.defense_config("flag")
            timing: dict[str, list[float]] = {"defend": [], "search_off": [], "search_on": []}
            flagged = 0
            for warm in (True, False):
                for q in queries:
                    t = time.perf_counter()
                    searcher.search(q, flt, top_k=10, candidates=30, defenses=None)
                    off_ms = (time.perf_counter() - t) * 1000
                    t = time.perf_counter()
                    res = searcher.search(q, flt, top_k=10, candidates=30, defenses=on)
                    on_ms = (time.perf_counter() - t) * 1000
                    if not warm:
                        timing["search_off"].append(off_ms)
                        timing["search_on"].append(on_ms)
                        timing["defend"].append(res.timings_ms["defend"])
                        flagged += any(
                            f["kind"] == "query_mirror" for h in res.hits for f in h.flags
                        )
    result = {
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "padded_chunks": args.pad,
        "chunks": chunks,
        "queries": len(queries),
        "queries_with_a_mirror_flag": flagged,
        **{f"{k}_p50_ms": _pct(v, 50) for k, v in timing.items()},
        **{f"{k}_p99_ms": _pct(v, 99) for k, v in timing.items()},
        "defend_mean_ms": round(statistics.mean(timing["defend"]), 3),
    }
    for key, value in result.items():
        print(f"{key:<28} {value}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
