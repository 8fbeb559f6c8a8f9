"""The injection classifier: a fine-tuned MiniLM that reads a chunk's own tokens, in ONNX int8.

Invariants:

- The model is a whole transformer (every layer fine-tuned, see ``defend.finetune``) with a
  linear head on the mean-pooled output; it runs as its own pass over each text, independent of
  the embedding model the index uses. Its folder holds ``model.onnx`` (inputs ``input_ids`` and
  ``attention_mask``, int64, (batch, tokens); output one logit per row), ``tokenizer.json`` and
  ``card.json``; nothing is fetched.
- A text is cut into passes of at most ``max_tokens`` tokens (special tokens included) that
  start every ``pass_stride`` tokens, so any text is scored in time linear in its length; its
  logit is its best pass's. An empty text is one pass of the special tokens.
- Scores are calibrated: ``sigmoid(logit - threshold_logit)``, so 0.5 is the point chosen on
  validation data (the card says how); ``RAGWALL_INJECTION_THRESHOLD`` moves the flag point on
  that scale.
- Only a text at or above ``span_at`` gets a span: windows of one and two consecutive sentences
  inside its best pass are scored, and the best window's character span is what fired. A text
  below it costs one pass per ``pass_stride`` tokens and nothing more.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ragwall.errors import ModelError

log = logging.getLogger(__name__)
PACKAGED_MODEL = Path(__file__).parent / "models" / "injection-minilm"
CARD_KEYS = ("kind", "backbone", "layers", "max_tokens", "pass_stride", "threshold_logit")
KIND = "sequence-classifier"
MAX_SPAN_WINDOWS = 48  # sentence windows scored for one flagged text, at most
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")

#: (input_ids, attention_mask) -> one logit per row: the ONNX session, or the torch net in training.
Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class WindowScore:
    """A text's injection probability (0.5 = the calibrated threshold) and what fired."""

    score: float
    span: tuple[int, int] | None  # character span of the best sentence window; None below span_at
    logit: float


@dataclass(frozen=True)
class Encoded:
    """A text's tokens without special tokens, and each token's character span."""

    ids: np.ndarray  # (n,) int64
    offsets: np.ndarray  # (n, 2) int64


@dataclass(frozen=True)
class Special:
    cls: int
    sep: int
    pad: int


def load_tokenizer(path: Path):  # noqa: ANN201 - tokenizers.Tokenizer
    """The fast tokenizer in ``path`` (``tokenizer.json``), with no truncation or padding: passes
    are cut here, so nothing is silently dropped."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def special_ids(tok) -> Special:  # noqa: ANN001 - tokenizers.Tokenizer
    ids = [tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")]
    if any(i is None for i in ids):
        raise ModelError("the injection model's tokenizer has no [CLS]/[SEP]/[PAD] token")
    return Special(*ids)


def encode(tok, texts: Sequence[str]) -> list[Encoded]:  # noqa: ANN001
    """Each text's tokens and offsets (special tokens left out)."""
    out = []
    for enc in tok.encode_batch(list(texts), add_special_tokens=False):
        ids = np.asarray(enc.ids, dtype=np.int64)
        offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
        out.append(Encoded(ids, offsets))
    return out


def pass_starts(n: int, body: int, stride: int) -> list[int]:
    """Token offsets where the passes over ``n`` tokens start: every token is in one whose body
    (``body`` tokens, special tokens apart) covers it."""
    if n <= body:
        return [0]
    starts = list(range(0, n - body, stride))
    return [*starts, n - body]


def batch_logits(
    forward: Forward, rows: Sequence[np.ndarray], special: Special, batch_size: int = 32
) -> np.ndarray:
    """Logits of token rows (special tokens added here), batched by similar length."""
    out = np.zeros(len(rows), dtype=np.float64)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    for lo in range(0, len(order), batch_size):
        idx = order[lo : lo + batch_size]
        width = max(len(rows[i]) for i in idx) + 2
        ids = np.full((len(idx), width), special.pad, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for r, i in enumerate(idx):
            n = len(rows[i])
            ids[r, 0] = special.cls
            ids[r, 1 : n + 1] = rows[i]
            ids[r, n + 1] = special.sep
            mask[r, : n + 2] = 1
        logits = np.asarray(forward(ids, mask), dtype=np.float64).reshape(-1)
        out[idx] = logits
    return out


def sentence_windows(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """Windows of one and two consecutive sentences (character spans) inside ``text[lo:hi]``."""
    cuts = sorted({lo, hi, *(lo + m.end() for m in _SENTENCE_END.finditer(text[lo:hi]))})
    sentences = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        seg = text[a:b]
        if seg.strip():
            start = a + len(seg) - len(seg.lstrip())
            sentences.append((start, a + len(seg.rstrip())))
    windows = list(sentences)
    windows += [(a[0], b[1]) for a, b in zip(sentences, sentences[1:], strict=False)]
    return windows


def score_texts(
    forward: Forward,
    tok,  # noqa: ANN001 - tokenizers.Tokenizer
    texts: Sequence[str],
    max_tokens: int,
    stride: int,
    batch_size: int = 32,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Each text's best-pass logit, and that pass's character range (see the module docstring)."""
    special = special_ids(tok)
    body = max_tokens - 2
    encoded = encode(tok, texts)
    rows: list[np.ndarray] = []
    owners: list[int] = []
    ranges: list[tuple[int, int]] = []
    for i, (text, enc) in enumerate(zip(texts, encoded, strict=True)):
        for s in pass_starts(len(enc.ids), body, stride):
            part = enc.offsets[s : s + body]
            rows.append(enc.ids[s : s + body])
            owners.append(i)
            ranges.append((int(part[0, 0]), int(part[-1, 1])) if len(part) else (0, len(text)))
    per_pass = batch_logits(forward, rows, special, batch_size)
    best = np.full(len(texts), -np.inf)
    where: list[tuple[int, int]] = [(0, len(t)) for t in texts]
    for logit, owner, rng in zip(per_pass, owners, ranges, strict=True):
        if logit > best[owner]:
            best[owner], where[owner] = logit, rng
    return best, where


@dataclass
class InjectionModel:
    """The ONNX injection classifier in ``folder`` and its card (see the module docstring)."""

    folder: Path
    card: dict = field(default_factory=dict)

    @property
    def threshold_logit(self) -> float:
        return float(self.card["threshold_logit"])

    @property
    def max_tokens(self) -> int:
        return int(self.card["max_tokens"])

    @property
    def pass_stride(self) -> int:
        return int(self.card["pass_stride"])

    @classmethod
    def load(cls, folder: Path) -> InjectionModel:
        folder = Path(folder)
        try:
            card = json.loads((folder / "card.json").read_text())
            missing = [k for k in CARD_KEYS if k not in card]
            if missing:
                raise KeyError(f"card.json lacks {missing}")
            if card["kind"] != KIND:
                raise ValueError(f"card.json kind is {card['kind']!r}, not {KIND!r}")
            for name in ("model.onnx", "tokenizer.json"):
                if not (folder / name).is_file():
                    raise FileNotFoundError(folder / name)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ModelError(
                f"could not read the injection model at {folder}: {exc}. Train one with "
                "`ragwall defend train`, or unset RAGWALL_INJECTION_MODEL to use the packaged one."
            ) from exc
        return cls(folder, card)

    @property
    def tokenizer(self):  # noqa: ANN201 - tokenizers.Tokenizer, opened once
        if "_tok" not in self.__dict__:
            self.__dict__["_tok"] = load_tokenizer(self.folder / "tokenizer.json")
        return self.__dict__["_tok"]

    @property
    def session(self):  # noqa: ANN201 - onnxruntime.InferenceSession, opened once
        if "_session" not in self.__dict__:
            from ragwall.onnx_runtime import cpu_session  # deferred: onnxruntime

            self.__dict__["_session"] = cpu_session(self.folder / "model.onnx")
        return self.__dict__["_session"]

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw best-pass logits (uncalibrated)."""
        return score_texts(self.forward, self.tokenizer, texts, self.max_tokens, self.pass_stride)[
            0
        ]

    def calibrated(self, logit: float) -> float:
        return float(1.0 / (1.0 + np.exp(-np.clip(logit - self.threshold_logit, -60.0, 60.0))))

    def score(self, texts: Sequence[str], span_at: float = 0.5) -> list[WindowScore]:
        """Each text's calibrated score; the span of what fired for those at or above
        ``span_at``."""
        best, where = score_texts(
            self.forward, self.tokenizer, texts, self.max_tokens, self.pass_stride
        )
        probs = [self.calibrated(v) for v in best]
        spans: list[tuple[int, int] | None] = [None] * len(texts)
        flagged = [i for i, p in enumerate(probs) if p >= span_at and texts[i].strip()]
        windows: list[tuple[int, tuple[int, int]]] = []
        for i in flagged:
            found = sentence_windows(texts[i], *where[i])[:MAX_SPAN_WINDOWS]
            windows += [(i, w) for w in found]
            spans[i] = where[i]
        if windows:
            pieces = [texts[i][a:b] for i, (a, b) in windows]
            logits, _ = score_texts(
                self.forward, self.tokenizer, pieces, self.max_tokens, self.pass_stride
            )
            top: dict[int, float] = {}
            for (i, w), v in zip(windows, logits, strict=True):
                if v > top.get(i, -np.inf):
                    top[i], spans[i] = float(v), w
        return [
            WindowScore(round(p, 4), spans[i], round(float(best[i]), 4))
            for i, p in enumerate(probs)
        ]


def load_model(folder: str | None) -> InjectionModel | None:
    """The model in ``folder``, or the packaged one; None (rules only) if none is packaged.

    Loaded models are cached by folder *and* by the stamp of its files, so a model replaced in
    place (a new release, or new files in the folder a setting names) is loaded afresh."""
    path = Path(folder) if folder else PACKAGED_MODEL
    if not folder and not (PACKAGED_MODEL / "model.onnx").is_file():
        log.warning("no packaged injection model at %s: rules only", PACKAGED_MODEL)
        return None
    return _load(str(path), _stamp(path))


def _stamp(path: Path) -> tuple:
    out = []
    for name in ("card.json", "model.onnx", "tokenizer.json"):
        try:
            st = (path / name).stat()
            out.append((name, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((name, None, None))
    return tuple(out)


@lru_cache(maxsize=4)
def _load(folder: str, _stamp: tuple) -> InjectionModel:
    return InjectionModel.load(Path(folder))
