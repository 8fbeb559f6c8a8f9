"""How well the injection detector separates attacks from ordinary text (``ragwall eval injection``).

Labelled sets are JSON lines ``{"text": ..., "label": 0 or 1}`` (as in ``../shared/data/injection/``).
Each is scored in one run by four detectors, all at the same threshold, so each part's
contribution shows:

- ``rules``: the rules alone;
- ``old_head``: the rules plus the previous detector (a logistic head on the chunk embedding,
  ``defend/models/injection_head.json``, kept only for this comparison);
- ``model``: the injection model alone, on the whole text (in passes of its own);
- ``detector``: the rules plus the model, as ingest scores chunks.

Benign windows: ordinary documents cut into 1,000-character windows (a BEIR folder's
``corpus.jsonl``, SQuAD's ``contexts.jsonl.gz``, or a folder of files parsed as ingest parses
them); every flag there is a false positive. ``unseen_only`` keeps the windows of documents the
model was not trained or calibrated on (the ``test`` part of ``defend.data``'s split).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragwall.datasets import DatasetError, load_corpus
from ragwall.defend.classifier import PACKAGED_HEAD, InjectionHead
from ragwall.defend.data import part_of
from ragwall.defend.rules import scan
from ragwall.embed import DenseEncoder
from ragwall.errors import ModelError, RagwallError
from ragwall.eval.metrics import detection_rates
from ragwall.ingest.parse import parse_file
from ragwall.ingest.pipeline import make_detector
from ragwall.service import Service
from ragwall.settings import Settings

DETECTORS = ("rules", "old_head", "model", "detector")
WINDOW_CHARS = 1000


def load_labeled(path: Path) -> list[dict[str, Any]]:

    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append(
                {
                    "text": str(row["text"]),
                    "label": int(row["label"]),
                    "family": str(row.get("family") or ""),
                }
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(
                f'{path}:{n}: each line must be {{"text": ..., "label": 0|1}}: {exc}'
            ) from exc
    if not rows:
        raise DatasetError(f"{path} holds no labeled texts")
    return rows


def cut_windows(text: str, size: int = WINDOW_CHARS) -> list[str]:
    """Non-overlapping windows of ``size`` characters (the last one may be shorter, not < 100)."""
    text = text.strip()
    out = [text[i : i + size] for i in range(0, len(text), size)]
    return [w for w in out if len(w.strip()) >= 100 or len(out) == 1]


def benign_windows(
    path: Path, unseen_only: bool = False, max_windows: int | None = None
) -> list[str]:
    """1,000-character windows of the ordinary documents at ``path`` (see the module docstring)."""

    def keep(key: str) -> bool:
        return not unseen_only or part_of(key) == "test"

    path = Path(path)
    windows: list[str] = []
    if (path / "corpus.jsonl").is_file():
        name = path.name
        for doc_id, doc in sorted(load_corpus(path).items()):
            if keep(f"{name}:{doc_id}"):
                windows += cut_windows(f"{doc.get('title', '')}\n{doc.get('text', '')}")
    elif (path / "contexts.jsonl.gz").is_file():
        try:
            with gzip.open(path / "contexts.jsonl.gz", "rt", encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read {path / 'contexts.jsonl.gz'}: {exc}") from exc
        for r in rows:
            if keep("squad:" + r["title"]):
                windows += cut_windows(r["text"])
    elif path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            if not keep("docs:" + file.name):
                continue
            try:
                parsed = parse_file(file, 50 * 1024 * 1024)
            except (RagwallError, Exception):  # noqa: BLE001 - broken files are not text
                continue
            windows += cut_windows("\n\n".join(e.text for e in parsed.elements if e.text))
    else:
        raise DatasetError(
            f"{path}: expected a BEIR folder (corpus.jsonl), a SQuAD folder "
            "(contexts.jsonl.gz) or a folder of documents"
        )
    if max_windows is not None and len(windows) > max_windows:
        import random

        windows = random.Random(0).sample(windows, max_windows)  # the same sample every run
    return windows


def _scorer(threshold: float | None) -> tuple[float, Callable[[list[str]], dict[str, np.ndarray]]]:
    """The threshold, and a function giving every detector's scores for a list of texts."""

    settings = Settings()
    cut = settings.injection_threshold if threshold is None else threshold
    encoder = DenseEncoder(
        settings.embedding_model, settings.embedding_device, settings.embed_batch_size
    )
    detector = make_detector(settings)
    if detector.model is None:
        raise ModelError("no injection model is packaged or configured; nothing to evaluate")
    head = InjectionHead.from_file(PACKAGED_HEAD)

    def score(texts: list[str]) -> dict[str, np.ndarray]:
        rules = np.array([scan(t).score for t in texts])
        signals = detector.score_texts(texts)
        return {
            "rules": rules,
            "old_head": np.maximum(rules, head.score(encoder.encode(texts))),
            "model": np.array([s.model_score or 0.0 for s in signals]),
            "detector": np.array([s.injection_score for s in signals]),
        }

    return cut, score


def _rates(labels: np.ndarray, scores: np.ndarray, cut: float) -> dict[str, Any]:

    predicted = (scores >= cut).astype(int)
    r = detection_rates(labels.tolist(), predicted.tolist())
    return {k: r[k] for k in ("precision", "recall", "fpr", "n")}


def _by_family(rows: list[dict], scores: np.ndarray, cut: float) -> dict[str, dict]:
    """The detector's recall per attack family (where the rows name one), weakest first."""
    fams: dict[str, list[bool]] = {}
    for row, s in zip(rows, scores, strict=True):
        if row["label"] == 1 and row["family"]:
            fams.setdefault(row["family"], []).append(bool(s >= cut))
    out = {f: {"recall": round(float(np.mean(v)), 4), "n": len(v)} for f, v in fams.items()}
    return dict(sorted(out.items(), key=lambda kv: (kv[1]["recall"], -kv[1]["n"])))


def evaluate_injection(
    datasets: Sequence[Path],
    threshold: float | None = None,
    windows: Sequence[Path] = (),
    unseen_only: bool = False,
    say: Callable[[str], None] = lambda _m: None,
    max_windows: int | None = None,
) -> dict[str, Any]:
    """Every detector on every labelled set and every set of benign windows (see module doc)."""
    labelled = {str(p): load_labeled(p) for p in datasets}
    benign = {}
    for p in windows:
        say(f"cutting {p} into {WINDOW_CHARS}-character windows")
        benign[str(p)] = benign_windows(p, unseen_only, max_windows)
    cut, score = _scorer(threshold)
    out: dict[str, Any] = {"threshold": cut, "detectors": list(DETECTORS), "datasets": {}}
    for name, rows in labelled.items():
        say(f"scoring {len(rows)} texts of {name}")
        scores = score([r["text"] for r in rows])
        labels = np.array([r["label"] for r in rows])
        out["datasets"][name] = {
            "texts": len(rows),
            "attacks": int(labels.sum()),
            **{d: _rates(labels, scores[d], cut) for d in DETECTORS},
            "detector_recall_by_family": _by_family(rows, scores["detector"], cut),
        }
    if len(labelled) == 1:  # one set: its detector figures at the top too, as before
        (row,) = out["datasets"].values()
        out.update({"dataset": next(iter(labelled)), "texts": row["texts"], **row["detector"]})
    out["windows"] = {}
    for name, texts in benign.items():
        say(f"scoring {len(texts)} benign windows of {name}")
        row: dict[str, Any] = {"windows": len(texts), "unseen_only": unseen_only}
        scores = score(texts) if texts else {}
        for d in DETECTORS:
            flagged = scores[d] >= cut if texts else np.zeros(0, bool)
            row[d] = {"fpr": round(float(flagged.mean()), 4) if texts else 0.0}
            row[d]["flagged"] = int(flagged.sum())
        out["windows"][name] = row
    return out


def evaluate_documents(folder: Path) -> dict[str, Any]:
    """Ingest a folder of (assumed clean) documents into a scratch index through the real
    pipeline and report how many chunks the ingest-time detector flags: a false-positive rate
    on ordinary text (how-to pages, emails, tables)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ragwall-fpr-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", qdrant_url=None)
        with Service(settings) as svc:
            svc.add_source("eval", "docs", str(folder), "internal")
            report = svc.ingest("eval", "docs")
            chunks, offset = [], None
            while True:
                hits, offset = svc.runtime.index.current().store.scroll(
                    None, limit=256, offset=offset
                )
                chunks += [h.payload for h in hits]
                if offset is None:
                    break
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
