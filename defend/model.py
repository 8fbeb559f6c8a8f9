"""The injection model: the embedding model's top layer, fine-tuned, scoring windows of a chunk.

Invariants:

- The model reads the hidden states after layer ``tap_layer`` of its backbone (the packaged
  all-MiniLM-L6-v2), which are the very states the ingest embedding pass computes on the way to
  the chunk vector. At ingest it therefore costs only its own layers; where the configured
  embedding model is another one, the detector runs the backbone's first layers itself.
- It scores overlapping windows of ``window`` tokens (stride ``stride``) after its own attention
  layer, so one injected sentence inside a long email is not averaged away; a text's score is
  its best window's, and that window's character span is reported with it.
- Scores are calibrated: ``sigmoid(logit - threshold_logit)``, so 0.5 is the threshold chosen on
  validation data (the model card says how). ``RAGWALL_INJECTION_THRESHOLD`` moves that point
  on the same scale, for flags and for the ingest trust rule alike.
- A text longer than one backbone pass (``max_tokens``) is cut into overlapping passes; the time
  is linear in its length.

The ONNX graph takes ``hidden`` (batch, tokens, dim; float32) and ``mask`` (batch, tokens;
int64) and returns one logit per window; windows are laid at ``0, stride, 2·stride, …``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ragwall.embed import TokenStates
from ragwall.errors import ModelError

log = logging.getLogger(__name__)
PACKAGED_MODEL = Path(__file__).parent / "models" / "injection-minilm"
MIN_WINDOW_TOKENS = 8  # a window with fewer real tokens (the tail of a text) is not scored


@dataclass(frozen=True)
class WindowScore:
    """A text's injection probability (0.5 = the calibrated threshold) and its best window."""

    score: float
    span: tuple[int, int] | None  # character span of the best window in the text
    logit: float


def pad_length(n: int, window: int, stride: int) -> int:
    """The padded length for ``n`` tokens: windows from 0 by ``stride`` cover every token."""
    if n <= window:
        return window
    return window + -(-(n - window) // stride) * stride


def window_spans(offsets: np.ndarray, window: int, stride: int, n_windows: int) -> list:
    """Character span of each window (None for a window of special tokens only)."""
    spans = []
    for w in range(n_windows):
        part = offsets[w * stride : w * stride + window]
        real = part[part[:, 1] > part[:, 0]] if len(part) else part
        spans.append((int(real[0, 0]), int(real[-1, 1])) if len(real) else None)
    return spans


@dataclass
class InjectionModel:
    """The ONNX injection model and its card (see the module docstring)."""

    folder: Path
    card: dict = field(default_factory=dict)

    @property
    def tap_layer(self) -> int:
        return int(self.card["tap_layer"])

    @property
    def window(self) -> int:
        return int(self.card["window"])

    @property
    def stride(self) -> int:
        return int(self.card["stride"])

    @property
    def threshold_logit(self) -> float:
        return float(self.card["threshold_logit"])

    @property
    def backbone(self) -> str:
        return str(self.card["backbone"])

    @property
    def max_tokens(self) -> int:
        return int(self.card.get("max_tokens", 256))

    @classmethod
    def load(cls, folder: Path) -> InjectionModel:
        folder = Path(folder)
        try:
            card = json.loads((folder / "card.json").read_text())
            for key in ("tap_layer", "window", "stride", "threshold_logit", "backbone"):
                card[key]  # noqa: B018 - a missing key is a broken card
            if not (folder / "model.onnx").is_file():
                raise FileNotFoundError(folder / "model.onnx")
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ModelError(
                f"could not read the injection model at {folder}: {exc!r}. Train one with "
                "`ragwall defend train`, or unset RAGWALL_INJECTION_MODEL to use the packaged one."
            ) from exc
        return cls(folder, card)

    @property
    def session(self):  # noqa: ANN201 - onnxruntime.InferenceSession, opened once
        if "_session" not in self.__dict__:
            from ragwall.onnx_runtime import cpu_session

            self.__dict__["_session"] = cpu_session(self.folder / "model.onnx")
        return self.__dict__["_session"]

    def window_logits(self, passes: Sequence[TokenStates], batch_size: int = 32) -> list:
        """Raw window logits of each pass (a list of 1-d arrays), batched by similar length."""
        out: list[np.ndarray | None] = [None] * len(passes)
        order = sorted(range(len(passes)), key=lambda i: len(passes[i].hidden))
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            longest = max(len(passes[i].hidden) for i in idx)
            t = pad_length(longest, self.window, self.stride)
            dim = passes[idx[0]].hidden.shape[1]
            hidden = np.zeros((len(idx), t, dim), dtype=np.float32)
            mask = np.zeros((len(idx), t), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(passes[i].hidden)
                hidden[row, :n] = passes[i].hidden
                mask[row, :n] = 1
            logits = self.session.run(None, {"hidden": hidden, "mask": mask})[0]
            for row, i in enumerate(idx):
                n = len(passes[i].hidden)
                n_windows = 1 if n <= self.window else 1 + -(-(n - self.window) // self.stride)
                out[i] = logits[row, :n_windows]
        return out

    def score(self, passes_per_text: Sequence[Sequence[TokenStates]]) -> list[WindowScore]:
        """Each text's best window over all of its passes, calibrated."""
        flat = [p for passes in passes_per_text for p in passes]
        logits = self.window_logits(flat)
        results, k = [], 0
        for passes in passes_per_text:
            best: tuple[float, tuple[int, int] | None] = (-np.inf, None)
            for p in passes:
                lg = logits[k]
                k += 1
                spans = window_spans(p.offsets, self.window, self.stride, len(lg))
                for w in np.argsort(-lg):
                    if spans[w] is not None:
                        if lg[w] > best[0]:
                            best = (float(lg[w]), spans[w])
                        break
            logit = best[0] if np.isfinite(best[0]) else -1e4
            prob = 1.0 / (1.0 + np.exp(-np.clip(logit - self.threshold_logit, -60.0, 60.0)))
            results.append(WindowScore(round(float(prob), 4), best[1], round(logit, 4)))
        return results


@lru_cache(maxsize=4)
def load_model(folder: str | None) -> InjectionModel | None:
    """The model in ``folder``, or the packaged one; None (rules only) if none is packaged."""
    if folder:
        return InjectionModel.load(Path(folder))
    if not (PACKAGED_MODEL / "model.onnx").is_file():
        log.warning("no packaged injection model at %s: rules only", PACKAGED_MODEL)
        return None
    return InjectionModel.load(PACKAGED_MODEL)
