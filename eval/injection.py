"""Precision, recall and false-positive rate of the injection detector on labeled texts.

Input: JSON lines ``{"text": ..., "label": 0 or 1}`` (as in ``../shared/data/injection/``). The
detector is the one ingest uses: the rules plus the classifier head on the text's embedding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def load_labeled(path: Path) -> list[dict[str, Any]]:
    from eval.beir import DatasetError

    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append({"text": str(row["text"]), "label": int(row["label"])})
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(
                f'{path}:{n}: each line must be {{"text": ..., "label": 0|1}}: {exc}'
            ) from exc
    if not rows:
        raise DatasetError(f"{path} holds no labeled texts")
    return rows


def evaluate_injection(dataset: Path, threshold: float | None = None) -> dict[str, Any]:
    from eval.metrics import detection_rates
    from ingest.pipeline import make_detector
    from retrieval.embed import DenseEncoder
    from retrieval.settings import Settings

    settings = Settings()
    cut = settings.injection_threshold if threshold is None else threshold
    rows = load_labeled(dataset)
    encoder = DenseEncoder(settings.embedding_model, settings.embedding_device)
    detector = make_detector(settings, encoder)
    texts = [r["text"] for r in rows]
    signals = detector.score_texts(texts, encoder.encode(texts))
    labels = np.array([r["label"] for r in rows])
    predicted = np.array([sig.injection_score >= cut for sig in signals], dtype=int)
    rates = detection_rates(labels.tolist(), predicted.tolist())
    return {
        "dataset": str(dataset),
        "texts": len(rows),
        "threshold": cut,
        "classifier": detector.head is not None,
        "precision": rates["precision"],
        "recall": rates["recall"],
        "fpr": rates["fpr"],
        "confusion": rates["confusion"],
    }


def evaluate_documents(folder: Path) -> dict[str, Any]:
    """Ingest a folder of (assumed clean) documents into a scratch index through the real
    pipeline and report how many chunks the ingest-time detector flags: a false-positive rate
    on ordinary text (how-to pages, emails, tables)."""
    import tempfile

    from ingest import Ingester, State, make_source
    from retrieval.embed import DenseEncoder
    from retrieval.settings import Settings
    from retrieval.store import open_store

    with tempfile.TemporaryDirectory(prefix="ragwall-fpr-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", qdrant_url=None)
        encoder = DenseEncoder(settings.embedding_model, settings.embedding_device)
        state = State(settings.state_path)
        store = open_store(settings, encoder.dim)
        try:
            source = make_source("docs", str(folder), "internal", [])
            state.add_source(source)
            report = Ingester(settings, state, store, encoder).ingest(source)
            chunks, offset = [], None
            while True:
                hits, offset = store.scroll(None, limit=256, offset=offset)
                chunks += [h.payload for h in hits]
                if offset is None:
                    break
        finally:
            store.close()
            state.close()
    cut = settings.injection_threshold
    flagged = [c for c in chunks if c.get("injection_score", 0.0) >= cut]
    hidden = [c for c in chunks if c.get("hidden_text")]
    return {
        "folder": str(folder),
        "documents": report.documents,
        "chunks": len(chunks),
        "injection_flagged": len(flagged),
        "injection_rate": round(len(flagged) / len(chunks), 4) if chunks else 0.0,
        "hidden_text": len(hidden),
        "examples": [
            {"doc": c["doc_name"], "score": c["injection_score"], "why": c["injection_reasons"][:2]}
            for c in flagged[:10]
        ],
    }
