"""What the ONNX query encoder and the ONNX cross-encoder share: a CPU session, running a batch
of `tokenizers` encodings through it, and a cache key for an exported model folder."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def cpu_session(onnx_path: Path, threads: int | None = None):  # noqa: ANN201 - ort.InferenceSession
    """An onnxruntime CPU session with full graph optimisation; ``threads`` caps intra-op threads.

    Its worker threads sleep between runs instead of spinning: a spinning pool kept a core busy
    after every query, which slowed the Qdrant search and the HTTP stack that share the cores
    (server p50 16.0 -> 10.9 ms on the 100k bench index, 2 cores; docs/benchmarks.md).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def run_encodings(session, encodings: Sequence) -> np.ndarray:  # noqa: ANN001
    """The session's first output for a padded batch of `tokenizers` encodings.

    Only the inputs the graph declares are fed (some models take no ``token_type_ids``).
    """
    inputs = {i.name for i in session.get_inputs()}
    feeds = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    return np.asarray(session.run(None, {k: v for k, v in feeds.items() if k in inputs})[0])


def folder_digest(folder: Path, names: Sequence[str]) -> str:
    """A short key for a model folder: its path and the size and mtime of the named files."""
    digest = hashlib.sha256(str(folder).encode())
    for name in names:
        f = folder / name
        if f.exists():
            digest.update(f"{name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    return digest.hexdigest()[:12]
