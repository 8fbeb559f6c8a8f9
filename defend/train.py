"""Train the injection classifier (``ragwall defend train``).

No injection-classifier weights can be downloaded here, so Ragwall trains a logistic head on
the packaged MiniLM embeddings from BIPIA (train split): benign emails and code contexts, and
attack texts placed at random positions inside benign contexts, plus benign prose from any
BEIR corpora given (e.g. CISI abstracts) so that ordinary text in other domains stays clean.

Contexts and attack categories are split into train, validation and held-out parts up front (by
a hash of their text, so the split is the same on every run); the threshold is chosen on the
validation part and the reported figures come from the held-out part only.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from eval.beir import load_corpus
from eval.metrics import detection_rates

TARGET_FPR = 0.01  # the validation false-positive rate the threshold aims for
WINDOW = 900  # characters: about one ingest chunk (the embedding model sees 256 tokens)


@dataclass
class Example:
    text: str
    label: int
    group: str  # which split it belongs to: "train", "val" or "heldout"
    origin: str


def split_of(key: str, heldout: float = 0.25, val: float = 0.15) -> str:
    """A stable split for ``key``: the same text lands in the same split on every run."""
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "heldout" if h < heldout else "val" if h < heldout + val else "train"


def _sentences(text: str) -> list[int]:
    """Offsets where a sentence (or a line) starts: the places an attack is inserted."""
    cuts = [0]
    for i, ch in enumerate(text[:-1]):
        if ch in ".!?\n" and text[i + 1] in " \n":
            cuts.append(i + 1)
    return cuts + [len(text)]


def bipia_contexts(bipia: Path) -> list[tuple[str, str]]:
    """(kind, context text) for every BIPIA email and code context."""
    out = []
    for line in (bipia / "email" / "train.jsonl").read_text().splitlines():
        if line.strip():
            out.append(("email", json.loads(line)["context"]))
    for line in (bipia / "code" / "train.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            ctx = row["context"]
            out.append(("code", "\n".join(ctx) if isinstance(ctx, list) else str(ctx)))
    return out


def bipia_attacks(bipia: Path) -> list[tuple[str, str]]:
    """(category, attack text) for the text and code attacks."""
    out = []
    for name in ("text_attack_train.json", "code_attack_train.json"):
        for category, texts in json.loads((bipia / name).read_text()).items():
            out += [(category, t) for t in texts]
    return out


def build_examples(
    bipia: Path, benign_corpora: list[Path], seed: int, insertions: int = 3
) -> list[Example]:
    rng = random.Random(seed)
    contexts = bipia_contexts(bipia)
    for folder in benign_corpora:
        docs = list(load_corpus(folder).values())
        rng.shuffle(docs)
        contexts += [("prose", f"{d['title']}. {d['text']}".strip(". ")) for d in docs[:600]]
    attacks = bipia_attacks(bipia)
    by_split: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "heldout": []}
    for category, text in attacks:  # whole categories are held out: unseen attack kinds
        by_split[split_of("attack:" + category)].append((category, text))
    examples: list[Example] = []
    for kind, ctx in contexts:
        group = split_of("context:" + ctx)
        examples.append(Example(ctx, 0, group, f"{kind}:clean"))
        pool = by_split[group] or by_split["train"]
        for _ in range(insertions):
            category, attack = rng.choice(pool)
            cuts = _sentences(ctx)
            at = rng.choice(cuts)
            sep_l = "" if at == 0 else " "
            sep_r = "" if at == len(ctx) else " "
            examples.append(
                Example(
                    ctx[:at] + sep_l + attack + sep_r + ctx[at:], 1, group, f"{kind}:{category}"
                )
            )
    for category, attack in attacks:  # the bare attack text, too
        examples.append(Example(attack, 1, split_of("attack:" + category), f"bare:{category}"))
    return examples


def _rates(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    rates = detection_rates(labels.tolist(), predicted.tolist())
    return {k: rates[k] for k in ("precision", "recall", "fpr", "n")}


def train_head(
    bipia: Path,
    out: Path,
    benign_corpora: list[Path],
    seed: int = 7,
    say: Callable[[str], None] = print,
) -> dict:
    from sklearn.linear_model import LogisticRegression

    from defend.classifier import InjectionHead
    from defend.detect import Detector
    from retrieval.embed import DenseEncoder

    encoder = DenseEncoder()
    examples = build_examples(bipia, benign_corpora, seed)
    say(f"{len(examples)} examples; embedding them with {encoder.model_id}")
    vectors = encoder.encode([e.text for e in examples])
    labels = np.array([e.label for e in examples])
    groups = np.array([e.group for e in examples])
    tr, va, ho = (groups == g for g in ("train", "val", "heldout"))
    clf = LogisticRegression(C=4.0, class_weight="balanced", max_iter=5000, random_state=seed)
    clf.fit(vectors[tr], labels[tr])
    raw = vectors @ clf.coef_[0] + clf.intercept_[0]
    # Threshold: the lowest logit whose validation false-positive rate stays within TARGET_FPR.
    benign_val = np.sort(raw[va & (labels == 0)])
    k = int(np.floor(len(benign_val) * (1 - TARGET_FPR)))
    threshold = float(benign_val[min(k, len(benign_val) - 1)]) + 1e-6 if len(benign_val) else 0.0
    head = InjectionHead(
        clf.coef_[0].astype(np.float32), float(clf.intercept_[0]), threshold, encoder.model_id
    )
    head_only = {
        name: _rates(labels[mask], (raw[mask] > threshold).astype(int))
        for name, mask in (("validation", va), ("heldout", ho))
    }
    detector = Detector(head)
    combined = detector.score_texts([examples[i].text for i in np.flatnonzero(ho)], vectors[ho])
    heldout_combined = _rates(
        labels[ho], (np.array([s.injection_score for s in combined]) >= 0.5).astype(int)
    )
    card = {
        "trained_at": datetime.now(UTC).isoformat(),
        "command": "ragwall defend train --bipia "
        + str(bipia)
        + "".join(f" --benign {c}" for c in benign_corpora)
        + f" --seed {seed}",
        "examples": {g: int((groups == g).sum()) for g in ("train", "val", "heldout")},
        "target_validation_fpr": TARGET_FPR,
        "classifier_only": head_only,
        "rules_plus_classifier_heldout": heldout_combined,
        "split": "by a hash of each context and each attack category (heldout 25%, val 15%)",
    }
    head.card = card
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(head.to_json() + "\n")
    return card
