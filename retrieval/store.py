"""The vector-store interface that the rest of Ragwall talks to.

Two implementations share it: :class:`retrieval.edge_store.EdgeStore` (``qdrant-edge-py``, the
embedded default) and :class:`retrieval.client_store.ClientStore` (``qdrant-client`` against a
Qdrant server, or its ``:memory:`` mode); ``ragwall.retrieval.backends`` chooses one, once. Filters are given in the small backend-neutral form
below and translated by each backend into a native Qdrant filter, so access rules are enforced by
the engine on every branch of a query, never by post-filtering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

DENSE = "dense"
SPARSE = "bm25"

Fusion = Literal["rrf", "dbsf"]

# The payload contract (ragwall.payload) names the indexed fields.


@dataclass(frozen=True)
class Match:
    """``key`` equals ``value`` (for a list field: contains it). Never a bool: the embedded
    engine matches no boolean value (store flags as 0/1, see ``ragwall.payload``)."""

    key: str
    value: str | int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool):
            raise TypeError(f"Match({self.key!r}, {self.value!r}): match booleans as 0/1")


@dataclass(frozen=True)
class MatchAny:
    """``key`` equals any of ``values`` (for a list field: shares one)."""

    key: str
    values: tuple[str, ...] | tuple[int, ...]


@dataclass(frozen=True)
class Range:
    key: str
    gte: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class HasId:
    """The point's id is one of ``ids``."""

    ids: tuple[str, ...]


@dataclass(frozen=True)
class IsEmpty:
    """``key`` is missing, null or an empty list."""

    key: str


Condition = Match | MatchAny | Range | HasId | IsEmpty


@dataclass(frozen=True)
class Filter:
    must: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()

    def __and__(self, other: Filter) -> Filter:
        return Filter(self.must + other.must, self.must_not + other.must_not)


@dataclass
class SparseVec:
    indices: list[int]
    values: list[float]


@dataclass
class PointIn:
    id: str
    dense: Sequence[float]
    sparse: SparseVec
    payload: dict[str, Any]


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)
    dense: list[float] | None = None  # the stored dense vector, when the query asked for it
    sparse: SparseVec | None = None  # the stored sparse vector, when a scroll asked for vectors


@dataclass
class Branch:
    """One prefetch branch: a dense or a sparse query vector and how many candidates it yields."""

    using: Literal["dense", "bm25"]
    vector: Sequence[float] | SparseVec
    limit: int
    weight: float = 1.0  # the branch's weight in RRF (1.0 each: plain RRF); DBSF ignores it


@dataclass
class Query:
    """One query: a single branch searches it; several are prefetches fused by Qdrant."""

    branches: Sequence[Branch]
    limit: int
    flt: Filter | None = None
    fusion: Fusion = "rrf"
    rrf_k: int = 60
    with_payload: bool | tuple[str, ...] = True  # a tuple: only those payload fields
    with_dense: bool = False  # return each hit's dense vector (for near-duplicate checks)

    def rrf_weights(self) -> list[float] | None:
        """Per-branch RRF weights, or ``None`` when all are 1 (the engine's plain RRF)."""
        weights = [float(b.weight) for b in self.branches]
        return None if all(w == 1.0 for w in weights) else weights


def payload_selector(selector: bool | Sequence[str]) -> bool | list[str]:
    """A payload selection as both engines take it: all or none, or a list of fields."""
    return selector if isinstance(selector, bool) else list(selector)


@runtime_checkable
class Store(Protocol):
    """What Ragwall needs from a vector store."""

    dim: int

    def upsert(self, points: Sequence[PointIn]) -> None: ...

    def delete(self, flt: Filter) -> None: ...

    def set_payload(self, payload: dict[str, Any], flt: Filter) -> None: ...

    def query(
        self,
        branches: Sequence[Branch],
        limit: int,
        flt: Filter | None = None,
        fusion: Fusion = "rrf",
        rrf_k: int = 60,
        with_payload: bool = True,
    ) -> list[Hit]:
        """One branch: plain search. Several: prefetches fused by Qdrant. ``flt`` applies to all."""
        ...

    def query_batch(self, queries: Sequence[Query]) -> list[list[Hit]]:
        """Several queries planned and run together; one result list per query, in order."""
        ...

    def scroll(
        self,
        flt: Filter | None = None,
        limit: int = 256,
        offset: str | None = None,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool = False,
    ) -> tuple[list[Hit], str | None]:
        """A page of points in id order and the next page's offset (``None``: the last page);
        ``with_vectors`` fills each hit's ``dense`` and ``sparse``."""
        ...

    def count(self, flt: Filter | None = None) -> int: ...

    def flush(self) -> None:
        """Make every acknowledged write durable."""
        ...

    def optimize(self) -> None:
        """Build indexes after a bulk write (a no-op where the engine does it by itself)."""
        ...

    def close(self) -> None: ...
