"""Injection signals for a chunk: the rules, the classifier, and hidden text, on one scale."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from defend.classifier import InjectionHead
from defend.hidden_html import HiddenSegment, normalize
from defend.rules import scan

FLAG_AT = 0.5  # injection scores at or above this are flagged (a setting at query time)
NOISE_FLOOR = FLAG_AT  # scores below the decision threshold do not lower trust


@dataclass
class Signals:
    injection_score: float
    injection_reasons: list[str] = field(default_factory=list)
    hidden_text: bool = False
    hidden_reasons: list[str] = field(default_factory=list)


@dataclass
class Detector:
    head: InjectionHead | None = None

    def score_texts(self, texts: Sequence[str], vectors: np.ndarray | None = None) -> list[Signals]:
        """Rules on every text; the classifier too where ``vectors`` (their embeddings) are given."""
        probs = (
            self.head.score(vectors)
            if self.head is not None and vectors is not None and len(texts)
            else None
        )
        out = []
        for i, text in enumerate(texts):
            result = scan(text)
            reasons = [
                f"{h.rule}: {h.evidence}" for h in result.hits if h.rule != "hidden_characters"
            ]
            hidden = [
                f"{h.rule}: {h.evidence}" for h in result.hits if h.rule == "hidden_characters"
            ]
            score = result.score
            if probs is not None:
                p = float(probs[i])
                if p >= FLAG_AT:
                    reasons.append(f"classifier: p={p:.2f}")
                score = max(score, p)
            out.append(Signals(round(score, 4), reasons, result.hidden_text, hidden))
        return out

    def score_chunks(
        self,
        texts: Sequence[str],
        vectors: np.ndarray | None,
        hidden: Sequence[HiddenSegment] = (),
    ) -> list[Signals]:
        """``score_texts`` plus what the document's HTML hides (see ``defend.hidden_html``)."""
        signals = self.score_texts(texts, vectors)
        if not hidden:
            return signals
        # Each hidden segment is normalised and scanned once, not once per chunk.
        in_text = [
            (seg, normalize(seg.text), scan(seg.text)) for seg in hidden if seg.kind != "comment"
        ]
        # Comments never reach a chunk; one that carries instructions marks the whole document.
        doc_reasons = [
            f"HTML comment with instructions: {s.text[:100]!r}"
            for s in hidden
            if s.kind == "comment" and scan(s.text).score >= FLAG_AT
        ]
        for text, sig in zip(texts, signals, strict=True):
            norm = normalize(text)
            for seg, seg_norm, inner in in_text:
                if seg_norm in norm:
                    sig.hidden_text = True
                    sig.hidden_reasons.append(f"{seg.how}: {seg.text[:100]!r}")
                    if inner.score >= FLAG_AT:  # hidden AND instruction-like: a strong signal
                        sig.injection_score = max(sig.injection_score, min(1.0, inner.score + 0.1))
            if doc_reasons:
                sig.hidden_text = True
                sig.hidden_reasons += doc_reasons
        return signals


def content_trust(prior: float, signals: Signals) -> float:
    """A chunk's trust: its source's prior, lowered by what its content shows.

    An injection score s keeps (1 - 0.9 s) of the prior (a flagged chunk keeps at most ~55 %),
    and hidden text keeps 60 % of what is left. Scores below ``NOISE_FLOOR`` are the
    classifier's background hum on ordinary text and leave trust alone. Flood
    membership is a query-time signal and lowers the trust shown in that response only.
    """
    score = signals.injection_score if signals.injection_score >= NOISE_FLOOR else 0.0
    trust = prior * (1.0 - 0.9 * score)
    if signals.hidden_text:
        trust *= 0.6
    return round(max(0.0, min(1.0, trust)), 4)
