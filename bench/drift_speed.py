"""Drift-eval speed at 100k chunks: a 200-query comparison between two index versions.

    python bench/drift.py --workdir /tmp/bench-drift          # first: a real Cranfield index
    python bench/drift_speed.py --source /tmp/bench-drift --chunks 100000

This box embeds about 13 chunks/s, so a 100k-chunk index cannot be embedded here in a session.
The two versions are built instead from a real index's stored points: every live chunk of
``--source``'s ``--version`` (text, payload, dense and BM25 vectors as the pipeline wrote them) is
written ``--chunks / n`` times, each copy with its own point id and document hash, into two new
embedded versions of a fresh data dir; the candidate's dense vectors get a small Gaussian
perturbation (sigma 0.02, renormalised) so that it ranks differently. The comparison then runs
the real path on them: 200 queries (Cranfield dev + PoisonedRAG questions) snapshotted on each
version through the real searcher (fusion in Qdrant over 100k points), the embedding-drift sample,
and the statistics. Nothing in the comparison knows the points were copied.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ragwall.eval.drift.queries import QuerySet, load_dataset_queries  # noqa: E402
from ragwall.ingest.pipeline import pipeline_fingerprint  # noqa: E402
from ragwall.ingest.state import State  # noqa: E402
from ragwall.payload import LIVE, Key  # noqa: E402
from ragwall.retrieval.store import Filter, Match, PointIn, Stores, version_location  # noqa: E402
from ragwall.service import Service  # noqa: E402
from ragwall.service.drift import Side  # noqa: E402
from ragwall.service.reindex import version_config  # noqa: E402
from ragwall.settings import Settings  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NS = uuid.UUID("0b5a1f0e-6c1e-4c55-8f0a-3f3b1c2d9e77")


def _source_points(source: Path, version: int) -> list:
    settings = Settings(data_dir=source / "data", qdrant_url=None)
    state = State(settings.state_path)
    record = state.get_version(version)
    assert record is not None and record.state in ("active", "ready"), f"no version {version}"
    stores = Stores(settings)
    store = stores.open(record.location, 384)
    points, offset = [], None
    live = Filter(must=(Match(Key.STATE, LIVE),))
    while True:
        page, offset = store.scroll(live, 512, offset, with_vectors=True)
        points += page
        if offset is None:
            break
    store.close()
    state.close()
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/tmp/bench-drift"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-drift-100k"))
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument(
        "--version",
        type=int,
        default=2,
        help="the source's version to copy (bench/drift.py "
        "leaves v2, the identical rebuild at the default chunk size, ready)",
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    base = _source_points(args.source, args.version)
    copies = max(1, round(args.chunks / len(base)))
    shutil.rmtree(args.workdir, ignore_errors=True)
    settings = Settings(data_dir=args.workdir / "data", qdrant_url=None)
    state = State(settings.state_path)
    stores = Stores(settings)
    config = version_config(settings, settings)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for version, noise in ((1, 0.0), (2, 0.02)):
        location = version_location(settings, version)
        store = stores.open(location, len(base[0].dense))
        batch: list[PointIn] = []
        for c in range(copies):
            for hit in base:
                dense = np.asarray(hit.dense, dtype=np.float32)
                if noise:
                    dense = dense + rng.normal(0, noise, dense.shape).astype(np.float32)
                    dense /= np.linalg.norm(dense)
                payload = dict(hit.payload)
                sha = hashlib.sha256(f"{payload[Key.DOC_SHA256]}-{c}".encode()).hexdigest()
                payload[Key.DOC_SHA256] = sha
                payload["doc_name"] = f"{c}-{payload['doc_name']}"
                pid = str(uuid.uuid5(NS, f"{hit.id}-{c}"))
                batch.append(PointIn(pid, dense.tolist(), hit.sparse, payload))
                if len(batch) >= 1024:
                    store.upsert(batch)
                    batch = []
        if batch:
            store.upsert(batch)
        store.optimize()
        store.flush()
        store.close()
        state.add_version(
            "active" if version == 1 else "ready",
            location,
            config,
            pipeline_fingerprint(settings),
            datetime.now(UTC).isoformat(),
            version=version,
        )
        print(f"version {version}: {copies * len(base)} chunks", flush=True)
    build_s = time.perf_counter() - t
    state.close()
    stores.close()

    dev = load_dataset_queries(SHARED / "cranfield", "dev")
    attack = json.loads((SHARED / "poisonedrag" / "nq.json").read_text(encoding="utf-8"))
    queries = {**dev.queries, **{f"prag-{k}": v["question"] for k, v in attack.items()}}
    chosen = QuerySet(dict(list(queries.items())[: args.queries]), None, "bench")
    with Service(settings) as svc:
        _ = svc.searcher  # the model and the active version open before the clock starts
        t = time.perf_counter()
        result = svc.drift("bench", chosen, Side(version=1), Side(version=2), 10)
        seconds = time.perf_counter() - t
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.now(UTC).date().isoformat(),
        "chunks_per_version": copies * len(base),
        "queries": result["queries"],
        "drift_seconds": round(seconds, 2),
        "build_seconds": round(build_s, 1),
        "rbo_mean": result["rbo"]["mean"],
        "embedding": result["embedding"],
    }
    print(json.dumps(out) if args.json else out)


if __name__ == "__main__":
    main()
