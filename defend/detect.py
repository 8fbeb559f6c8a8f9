"""Injection signals for a chunk: the rules, the injection model, and hidden text, on one scale.

The score is the larger of the rules' noisy-or and the model's calibrated probability, so 0.5
means the same on both sides: a rule strong enough to flag alone, or the model at the threshold
chosen on validation data. ``flag_at`` (``RAGWALL_INJECTION_THRESHOLD``) is the one point that
both flags a chunk and lets its score lower its trust at ingest; below it a score is background
hum and changes nothing.

Every flagged chunk says what fired and where: rule names with their evidence, the model's
probability, and the character span (chunk-relative) of the window or rule match that fired,
so an operator can read the offending sentence and the spotlighted context can mark it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ragwall.defend.hidden_html import HiddenSegment, normalize
from ragwall.defend.model import InjectionModel, WindowScore
from ragwall.defend.rules import Scan, scan

FLAG_AT = 0.5  # the default threshold: the model's calibrated point, and a rule that flags alone


@dataclass
class Signals:
    injection_score: float
    injection_reasons: list[str] = field(default_factory=list)
    hidden_text: bool = False
    hidden_reasons: list[str] = field(default_factory=list)
    injection_span: tuple[int, int] | None = None  # what fired, in the chunk's characters
    model_score: float | None = None  # the model's part of ``injection_score``, when it ran


def _excerpt(text: str, span: tuple[int, int], limit: int = 160) -> str:
    snippet = " ".join(text[span[0] : span[1]].split())
    return snippet if len(snippet) <= limit else snippet[: limit - 1] + "…"


@dataclass
class Detector:
    """Rules always; the injection model where one is loaded (its own ONNX pass per text)."""

    model: InjectionModel | None = None
    flag_at: float = FLAG_AT

    def score_texts(self, texts: Sequence[str]) -> list[Signals]:
        """Rules and model on every text; the model's span only where it reaches ``flag_at``."""
        scores = self.model.score(texts, span_at=self.flag_at) if self.model and texts else None
        return [
            self._signals(text, scan(text), scores[i] if scores else None)
            for i, text in enumerate(texts)
        ]

    def _signals(self, text: str, result: Scan, model: WindowScore | None) -> Signals:
        reasons = [f"{h.rule}: {h.evidence}" for h in result.hits if h.rule != "hidden_characters"]
        hidden = [f"{h.rule}: {h.evidence}" for h in result.hits if h.rule == "hidden_characters"]
        score, span = result.score, None
        fired = [h for h in result.hits if h.span and h.rule != "hidden_characters"]
        if fired:
            span = max(fired, key=lambda h: h.weight).span
        if model is not None:
            if model.score >= self.flag_at and model.span:
                reasons.append(
                    f"model: p={model.score:.2f} at {model.span[0]}-{model.span[1]}: "
                    f"{_excerpt(text, model.span)!r}"
                )
            if model.score >= score:
                span = model.span or span
            score = max(score, model.score)
        return Signals(
            round(score, 4),
            reasons,
            result.hidden_text,
            hidden,
            span if score >= self.flag_at else None,
            model.score if model else None,
        )

    def score_chunks(
        self,
        texts: Sequence[str],
        hidden: Sequence[HiddenSegment] = (),
        signals: Sequence[Signals] | None = None,
    ) -> list[Signals]:
        """``score_texts`` (or the ``signals`` it already gave for these texts) plus what the
        document's HTML hides (see ``defend.hidden_html``)."""
        signals = list(signals) if signals is not None else self.score_texts(texts)
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


def content_trust(prior: float, signals: Signals, flag_at: float = FLAG_AT) -> float:
    """A chunk's trust: its source's prior, lowered by what its content shows.

    An injection score s at or above ``flag_at`` (the flag threshold) keeps (1 - 0.9 s) of the
    prior (a flagged chunk keeps at most ~55 %), and hidden text keeps 60 % of what is left.
    Scores below the threshold leave trust alone. Flood membership is a query-time signal and
    lowers the trust shown in that response only.
    """
    score = signals.injection_score if signals.injection_score >= flag_at else 0.0
    trust = prior * (1.0 - 0.9 * score)
    if signals.hidden_text:
        trust *= 0.6
    return round(max(0.0, min(1.0, trust)), 4)
