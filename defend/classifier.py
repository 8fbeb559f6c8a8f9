"""A small injection classifier: a logistic head on the chunk's own embedding.

Ingest embeds every chunk anyway, so scoring it costs one dot product. The head is trained by
``ragwall defend train`` (see ``defend.train``) and ships with the package as JSON. Its output is
calibrated so that 0.5 is the decision threshold chosen on validation data: ``score = sigmoid(w·x
+ b - t)``, which lets it combine with the rule score on one scale.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from retrieval.errors import ModelError

log = logging.getLogger(__name__)
PACKAGED_HEAD = Path(__file__).parent / "models" / "injection_head.json"


@dataclass
class InjectionHead:
    weights: np.ndarray
    bias: float
    threshold_logit: float
    embedding_model: str
    card: dict = field(default_factory=dict)

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """Calibrated injection probability per row of ``vectors`` (0.5 = decision threshold)."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        logits = vectors @ self.weights + self.bias - self.threshold_logit
        return 1.0 / (1.0 + np.exp(-logits))

    def to_json(self) -> str:
        return json.dumps(
            {
                "embedding_model": self.embedding_model,
                "weights": [round(float(x), 6) for x in self.weights],
                "bias": float(self.bias),
                "threshold_logit": float(self.threshold_logit),
                "card": self.card,
            },
            indent=1,
        )

    @classmethod
    def from_file(cls, path: Path) -> InjectionHead:
        try:
            raw = json.loads(Path(path).read_text())
            return cls(
                np.asarray(raw["weights"], dtype=np.float32),
                float(raw["bias"]),
                float(raw["threshold_logit"]),
                str(raw["embedding_model"]),
                dict(raw.get("card", {})),
            )
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ModelError(
                f"could not read the injection classifier at {path}: {exc}. Retrain it with "
                "`ragwall defend train`, or unset RAGWALL_INJECTION_HEAD to use the packaged one."
            ) from exc


@lru_cache(maxsize=4)
def load_head(path: str | None, embedding_model: str, dim: int) -> InjectionHead | None:
    """The head at ``path`` (default: the packaged one), or None when it does not fit the model.

    A head is trained on one embedding model's vectors; with another model configured it would
    score noise, so it is left out (rules still run) rather than used.
    """
    if not path and not PACKAGED_HEAD.exists():
        log.warning("no packaged injection classifier at %s: rules only", PACKAGED_HEAD)
        return None
    head = InjectionHead.from_file(Path(path) if path else PACKAGED_HEAD)
    from retrieval.embed import resolve_model_path

    same = head.embedding_model == embedding_model or resolve_model_path(
        head.embedding_model
    ) == resolve_model_path(embedding_model)
    if not same or head.weights.shape[0] != dim:
        if path:
            raise ModelError(
                f"the injection classifier at {path} was trained on {head.embedding_model!r} "
                f"vectors, not on {embedding_model!r}; retrain it with `ragwall defend train`"
            )
        return None
    return head
