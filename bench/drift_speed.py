"""Drift-eval speed at 100k chunks: a 200-query comparison between two index versions.

    python bench/drift.py --workdir /tmp/bench-drift          # first: a real Cranfield index
    python bench/drift_speed.py --source /tmp/bench-drift --chunks 100000

This box embeds about 13 chunks/s, so a 100k-chunk index cannot be embedded here in a session.
The two versions are built instead from a real index's stored points: every live chunk of
``--source``'s ``--version`` (text, payload, dense and BM25 vectors as the pipeline wrote them) is
written ``--chunks / n`` times (bench/copies.py), each copy with its own point id, document hash
and address, into two new embedded versions of a fresh data dir; the candidate's dense vectors get a small Gaussian
perturbation (sigma 0.02, renormalised) so that it ranks differently. The comparison then runs
the real path on them: 200 queries (Cranfield dev + PoisonedRAG questions) snapshotted on each
version through the real searcher (over 100k points), the embedding-drift sample,
and the statistics. Nothing in the comparison knows the points were copied.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from copies import source_points, write_copies  # noqa: E402

from ragwall.eval.drift.queries import QuerySet, load_dataset_queries  # noqa: E402
from ragwall.service import (
    Service,  # noqa: E402
    Side,  # noqa: E402
)
from ragwall.settings import Settings  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


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

    base = source_points(args.source / "data", args.version)
    settings = Settings(data_dir=args.workdir / "data", qdrant_url=None)
    t = time.perf_counter()
    per_version = write_copies(base, settings.data_dir, args.chunks, ((1, 0.0), (2, 0.02)))
    build_s = time.perf_counter() - t

    dev = load_dataset_queries(SHARED / "cranfield", "dev")
    attack = json.loads((SHARED / "poisonedrag" / "nq.json").read_text(encoding="utf-8"))
    queries = {**dev.queries, **{f"prag-{k}": v["question"] for k, v in attack.items()}}
    chosen = QuerySet(dict(list(queries.items())[: args.queries]), None, "bench")
    with Service(settings) as svc:
        _ = (
            svc.runtime.index.current().searcher
        )  # the model and the active version open before the clock starts
        t = time.perf_counter()
        result = svc.drift("bench", chosen, Side(version=1), Side(version=2), 10)
        seconds = time.perf_counter() - t
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.now(UTC).date().isoformat(),
        "chunks_per_version": per_version,
        "queries": result["queries"],
        "drift_seconds": round(seconds, 2),
        "build_seconds": round(build_s, 1),
        "rbo_mean": result["rbo"]["mean"],
        "embedding": result["embedding"],
    }
    print(json.dumps(out) if args.json else out)


if __name__ == "__main__":
    main()
