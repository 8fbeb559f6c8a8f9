"""The bodies of job requests: a reindex's changes, a drift comparison and its gate, and the
sides a comparison names.

Invariant: a request names an index version or carries a snapshot, never a server path (a
side read from a file is the CLI's, through :func:`parse_side`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ragwall.datasets import DatasetError
from ragwall.eval.drift.compare import Gates
from ragwall.eval.drift.queries import QuerySet, plain_query_id
from ragwall.eval.drift.snapshot import Snapshot, load_snapshot, parse_snapshot
from ragwall.service.index import parse_version, version_name

#: A reindex's options, besides the settings it changes.
OPTIONS = ("rebuild", "gate", "force")


class DriftQueries(BaseModel):
    """Queries, their judgements and the gates of a comparison, as a request body gives them."""

    model_config = ConfigDict(extra="forbid")

    queries: list[str] | dict[str, str] = Field(
        min_length=1,
        description="Query texts, or {id: text}; a text's id is `q` + 12 hex digits of its "
        "sha256 when only texts are given.",
    )
    qrels: dict[str, dict[str, int]] | None = Field(
        default=None, description="{query id: {document id: grade}} (BEIR qrels), for nDCG."
    )
    top_k: int = Field(default=10, ge=1, le=100)
    max_ndcg_drop: float | None = Field(default=None, ge=0, le=1)
    min_mean_rbo: float | None = Field(default=None, ge=0, le=1)
    max_new_source_share: float | None = Field(default=None, ge=0, le=1)
    alpha: float = Field(default=0.05, gt=0, lt=1)

    @model_validator(mode="after")
    def _ndcg_gate_needs_qrels(self) -> DriftQueries:
        if self.max_ndcg_drop is not None and not self.qrels:
            raise ValueError("max_ndcg_drop needs qrels (nDCG is measured against judgements)")
        return self

    def query_set(self) -> QuerySet:
        if isinstance(self.queries, dict):
            queries = {str(k): v.strip() for k, v in self.queries.items()}
        else:
            queries = {plain_query_id(t.strip()): t.strip() for t in self.queries}
        if any(not t for t in queries.values()):
            raise DatasetError("queries: a query text is empty")
        return QuerySet(queries, None, "the request's queries").with_qrels(self.qrels)

    def gates(self) -> Gates:
        return Gates(self.max_ndcg_drop, self.min_mean_rbo, self.max_new_source_share, self.alpha)


class DriftGate(DriftQueries):
    """A reindex's gate: the new version is compared with the active one on these queries."""


class DriftRequest(DriftQueries):
    """A drift comparison over HTTP (``POST /v1/eval/drift``)."""

    baseline: str | dict[str, Any] = Field(
        description="An index version (`v3`, `3`, `version 3`) or a snapshot object (the "
        "JSON `ragwall eval snapshot` writes)."
    )
    candidate: str | dict[str, Any] | None = Field(
        default=None, description="Likewise; the active version when omitted."
    )

    def sides(self) -> tuple[Side, Side]:
        return _request_side(self.baseline, "baseline"), _request_side(self.candidate, "candidate")


def _request_side(value: str | dict[str, Any] | None, name: str) -> Side:
    """A request names a version or carries a snapshot, never a server path."""
    if isinstance(value, dict):
        return Side(snapshot=parse_snapshot(value, f"{name} snapshot"))
    try:
        return Side(version=_version(value))
    except ValueError as exc:
        raise DatasetError(f"{name}: {exc}, or give a snapshot object") from exc


def _version(text: str | None) -> int | None:
    """``version V``, ``vN`` or ``N`` → N; ``active``, empty or None → None (the active one).
    Anything else raises ValueError."""
    if text is None or text.strip().lower() in ("", "active"):
        return None
    words = text.split()
    if len(words) == 2 and words[0].lower() == "version":
        return parse_version(words[1])
    return parse_version(text)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a saved snapshot, an index version, or (neither) the active
    version now."""

    snapshot: Snapshot | None = None
    version: int | None = None

    def describe(self) -> str:
        if self.snapshot is not None:
            return f"snapshot of {self.snapshot.index_version}"
        return version_name(self.version) if self.version else "the active version"


def parse_side(text: str | None) -> Side:
    """``SNAP.json`` (a file), ``version V`` / ``vN`` / ``N``, or ``active``/None."""
    try:
        return Side(version=_version(text))
    except ValueError:
        pass
    path = Path(str(text))
    if not path.exists():
        raise DatasetError(
            f"{text!r} is neither a snapshot file nor an index version (write `version 3`, `v3`, "
            "or the path of a file made by `ragwall eval snapshot`)"
        )
    return Side(snapshot=load_snapshot(path))


class ReindexChanges(BaseModel):
    """Settings a reindex may change (the body of ``POST /v1/index/reindex``); any other key is
    refused. Unset fields keep the environment's value."""

    model_config = ConfigDict(extra="forbid")

    embedding_model: str | None = Field(
        default=None, description="A Hugging Face model id or a local sentence-transformers folder."
    )
    chunk_max_tokens: int | None = None
    chunk_overlap_tokens: int | None = None
    chunk_max_chars: int | None = None
    chunk_new_after_chars: int | None = None
    chunk_combine_under_chars: int | None = None
    bm25_k1: float | None = None
    bm25_b: float | None = None
    injection_model: str | None = Field(
        default=None, description="An injection model folder, or `none` for the rules alone."
    )
    injection_threshold: float | None = None
    trust_priors: dict[str, float] | None = None
    rebuild: bool = Field(
        default=False,
        description="Re-parse and re-embed every document, even where the stored vectors could "
        "be carried over (to check that a rebuild reproduces the index).",
    )
    gate: DriftGate | None = Field(
        default=None,
        description="Compare the new version with the active one on these queries before the "
        "switch; a failing gate leaves the new version `ready`, not active.",
    )
    force: bool = Field(
        default=False, description="Switch even when the gate fails (the override is audited)."
    )

    def given(self) -> dict[str, Any]:
        """The pipeline settings this reindex changes."""
        return self.model_dump(exclude_none=True, exclude=set(OPTIONS))

    def params(self) -> dict[str, Any]:
        """Everything asked for (settings and options): what a job records and an
        ``Idempotency-Key`` is checked against."""
        return self.model_dump(exclude_none=True, exclude_defaults=True)
