"""Synthetic chunks for the store benches: no model runs.

Each chunk is a random unit vector with a realistic payload (a ~1,000-character text and the
provenance fields ingest writes) and a sparse vector drawn from a Zipf vocabulary of 20,000
hashed terms (about 80 distinct terms per chunk, as the BM25 vectors of real chunks). The same
seed gives the same chunks (point ids aside).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

DIM = 384


def synthetic_chunks(
    n: int,
    *,
    batch: int = 512,
    source_id: str = "bench",
    chunks_per_doc: int = 100,
    extra: dict[str, Any] | None = None,
    seed: int = 0,
) -> Iterator[list]:
    """Batches of ``ragwall.retrieval.store.PointIn``, ``n`` points in all, live, of
    ``source_id``; ``extra`` overrides or adds payload fields (trust, groups, tier)."""
    from ragwall.retrieval.store import PointIn, SparseVec

    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    vocab = rng.integers(0, 2**32, 20_000)
    words = [f"w{i}" for i in range(5000)]
    for start in range(0, n, batch):
        size = min(batch, n - start)
        vecs = rng.standard_normal((size, DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        points = []
        for j in range(size):
            idx = sorted(set(vocab[np.minimum(rng.zipf(1.2, 110), 20_000) - 1].tolist()))
            doc = (start + j) // chunks_per_doc
            payload = {
                "text": " ".join(pyrng.choices(words, k=170)),
                "state": "live",
                "source_id": source_id,
                "doc_uri": f"/{source_id}/doc{doc}.md",
                "doc_sha256": f"{doc:064x}",
                "doc_version": f"{doc:024x}",
                "chunk_index": (start + j) % chunks_per_doc,
                "title_path": ["A title", "A section"],
                "element_types": ["Title", "NarrativeText"],
                "parser": "unstructured",
                "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
                "ingest_run_id": "r" * 16,
                "ingested_at": "2026-11-25T00:00:00+00:00",
                "trust": 0.8,
                "groups": ["bench"],
                **(extra or {}),
            }
            points.append(
                PointIn(str(uuid.uuid4()), vecs[j], SparseVec(idx, [1.0] * len(idx)), payload)
            )
        yield points
