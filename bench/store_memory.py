"""Memory of the embedded store alone while it indexes N points, one build at the end vs in steps.

No model runs: the points are bench/synthetic.py's (random unit vectors, realistic payloads,
Zipf-drawn sparse vectors).
This isolates what the Qdrant Edge shard costs, so the settings `RAGWALL_OPTIMIZE_EVERY_CHUNKS`
and `RAGWALL_SEGMENT_MAX_KB` can be judged on their own.

    python bench/store_memory.py --points 120000 --every 0        # one index build at the end
    python bench/store_memory.py --points 120000 --every 20000    # what ingest does by default
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from synthetic import synthetic_chunks  # bench/synthetic.py (run from bench/)


def _status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) // 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=120_000)
    parser.add_argument(
        "--every", type=int, default=20_000, help="build every N points; 0: at the end"
    )
    parser.add_argument("--segment-max-kb", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from ragwall.retrieval.edge_store import EdgeStore
    from ragwall.retrieval.store import Branch

    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="ragwall-store-mem-"))
    store = EdgeStore.open(work / "shard", 384, segment_max_kb=args.segment_max_kb)
    batch, since, t0, build_s = 512, 0, time.perf_counter(), 0.0
    try:
        for points in synthetic_chunks(args.points, batch=batch, seed=1):
            store.upsert(points)
            since += batch
            if args.every and since >= args.every:
                t = time.perf_counter()
                store.optimize()
                store.flush()
                build_s += time.perf_counter() - t
                since = 0
        t = time.perf_counter()
        store.optimize()
        store.flush()
        build_s += time.perf_counter() - t
        total_s = time.perf_counter() - t0
        after = _status()
        q = rng.standard_normal(384).astype(np.float32)
        q /= np.linalg.norm(q)
        t = time.perf_counter()
        for _ in range(100):
            store.query([Branch("dense", q, 30)], 30)
        query_ms = (time.perf_counter() - t) * 10
        segments = len(list((work / "shard" / "segments").iterdir()))
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "points": args.points,
        "every": args.every,
        "segment_max_kb": args.segment_max_kb,
        "segments": segments,
        "peak_rss_mib": after["VmHWM"],
        "rss_after_mib": after["VmRSS"],
        "anon_after_mib": after["RssAnon"],
        "total_s": round(total_s, 1),
        "index_build_s": round(build_s, 1),
        "dense_query_ms": round(query_ms, 2),
    }
    for key, value in result.items():
        print(f"{key:<16} {value}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
