"""The previous injection classifier: a logistic head on the chunk's own embedding.

It was Ragwall's detector until the injection model (``defend.model``) replaced it, and is kept
only so that ``ragwall eval injection`` reports the old and the new detector in the same run. It
was trained on BIPIA's train split alone (``defend/models/injection_head.json``, with its card).
Its output is calibrated so that 0.5 is its validation threshold: ``score = sigmoid(w·x + b - t)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragwall.errors import ModelError

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
                f"could not read the old injection head at {path}: {exc}. It ships with "
                "Ragwall (defend/models/injection_head.json); reinstall the package."
            ) from exc
