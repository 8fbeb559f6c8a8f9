"""Index versions of any size from a real index's stored points (this box embeds ~13 chunks/s).

    python bench/copies.py --source /tmp/exp/data --version 1 --chunks 100000 --out /tmp/bench-100k

Every live chunk of ``--source``'s version (text, payload, dense and BM25 vectors as the pipeline
wrote them) is written ``--chunks / n`` times into a fresh data dir, each copy with its own point
id, document hash and document address, so that copies are distinct documents to every ranking
and filter. The result is an active version that ``ragwall serve`` and bench/retrieve.py open like
any other. bench/drift_speed.py builds its two versions with the same function.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ragwall.ingest.pipeline import pipeline_fingerprint  # noqa: E402
from ragwall.ingest.registry import Registry  # noqa: E402
from ragwall.payload import LIVE, Key  # noqa: E402
from ragwall.retrieval.backends import Stores, version_location  # noqa: E402
from ragwall.retrieval.store import Filter, Hit, Match, PointIn  # noqa: E402
from ragwall.service.index import version_config  # noqa: E402
from ragwall.settings import Settings  # noqa: E402

NS = uuid.UUID("0b5a1f0e-6c1e-4c55-8f0a-3f3b1c2d9e77")


def source_points(data_dir: Path, version: int) -> list[Hit]:
    """Every live point of a data dir's version, with its vectors."""
    settings = Settings(data_dir=data_dir, qdrant_url=None)
    state = Registry(settings.state_path)
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


def write_copies(
    base: list[Hit],
    data_dir: Path,
    chunks: int,
    versions: tuple[tuple[int, float], ...] = ((1, 0.0),),
) -> int:
    """Write ``versions`` (number, dense-noise sigma) of ``chunks`` points into a fresh data dir.

    The first version is active, the others ready. A version with noise gets a Gaussian
    perturbation of its dense vectors (renormalised), so that it ranks differently. Returns the
    number of points per version."""
    copies = max(1, round(chunks / len(base)))
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = Settings(data_dir=data_dir, qdrant_url=None)
    state = Registry(settings.state_path)
    stores = Stores(settings)
    config = version_config(settings, settings)
    rng = np.random.default_rng(0)
    for n, (version, noise) in enumerate(versions):
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
                payload[Key.DOC_URI] = f"{payload[Key.DOC_URI]}#copy-{c}"
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
            "active" if n == 0 else "ready",
            location,
            config,
            pipeline_fingerprint(settings),
            datetime.now(UTC).isoformat(),
            version=version,
        )
        print(f"version {version}: {copies * len(base)} chunks", flush=True)
    state.close()
    stores.close()
    return copies * len(base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="a data dir")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--out", type=Path, required=True, help="the new data dir's parent")
    args = parser.parse_args()
    t = time.perf_counter()
    n = write_copies(source_points(args.source, args.version), args.out / "data", args.chunks)
    print(f"{n} chunks in {args.out / 'data'} ({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
