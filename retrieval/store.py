"""The vector-store interface that the rest of Ragwall talks to.

Two implementations share it: :class:`retrieval.edge_store.EdgeStore` (``qdrant-edge-py``, the
embedded default) and :class:`retrieval.client_store.ClientStore` (``qdrant-client`` against a
Qdrant server, or its ``:memory:`` mode). Filters are given in the small backend-neutral form
below and translated by each backend into a native Qdrant filter, so access rules are enforced by
the engine on every branch of a query, never by post-filtering.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


def open_store(settings, dim: int, lock=None, location: str | None = None) -> Store:  # noqa: ANN001
    """The store the settings name: a Qdrant server when ``qdrant_url`` is set, else embedded.

    Parameters:
        settings: a ``Settings``.
        dim: the embedding model's vector size.
        lock: the shard's lock, when the caller took it first with ``EdgeStore.acquire``.
        location: an index version's collection name (server) or shard folder (embedded);
            default: ``settings.collection`` / ``settings.shard_path``.
    """
    if settings.qdrant_url:
        from ragwall.retrieval.client_store import ClientStore

        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return ClientStore.connect(
            settings.qdrant_url, location or settings.collection, dim, api_key=key
        )
    from ragwall.retrieval.edge_store import EdgeStore

    return EdgeStore.open(
        Path(location) if location else settings.shard_path,
        dim,
        segment_max_kb=settings.segment_max_kb,
        lock=lock,
    )


def version_location(settings, version: int) -> str:  # noqa: ANN001 - Settings
    """Where index version ``version`` lives: ``<collection>__v<n>`` on a server, a shard folder
    beside the first one when embedded. (Version 1 keeps the pre-versions location, so a data
    dir or collection made before index versions is version 1 in place.)"""
    if version == 1:
        return settings.collection if settings.qdrant_url else str(settings.shard_path)
    if settings.qdrant_url:
        return f"{settings.collection}__v{version}"
    return str(settings.shard_path.with_name(f"{settings.collection}__v{version}"))


class Stores:
    """Opens, drops and aliases the stores of index versions.

    On a Qdrant server every version is a collection reached through one shared client (so a
    ``:memory:`` URL keeps all versions in one in-process instance, as a server would). Embedded,
    every version is a shard folder; each opens in one process only.
    """

    def __init__(self, settings) -> None:  # noqa: ANN001 - Settings
        self.settings = settings
        self._client = None

    def client(self):  # noqa: ANN201 - a QdrantClient (server mode only)
        if self._client is None:
            from ragwall.retrieval.client_store import make_client

            s = self.settings
            key = s.qdrant_api_key.get_secret_value() if s.qdrant_api_key else None
            self._client = make_client(s.qdrant_url, key)
        return self._client

    def open(self, location: str, dim: int, lock=None) -> Store:  # noqa: ANN001 - a FileLock
        """Open (or create) the store at ``location`` (see :func:`version_location`)."""
        if self.settings.qdrant_url:
            from ragwall.retrieval.client_store import ClientStore

            store = ClientStore(self.client(), location, dim, owns_client=False)
            store.ensure_collection()
            return store
        return open_store(self.settings, dim, lock=lock, location=location)

    def drop(self, location: str) -> None:
        """Delete a version's data for good: its collection, or its shard folder and lock."""
        if self.settings.qdrant_url:
            from ragwall.retrieval.client_store import drop_collection

            drop_collection(self.client(), location)
            return
        path = Path(location)
        shutil.rmtree(path, ignore_errors=True)
        Path(str(path) + ".lock").unlink(missing_ok=True)

    def point_alias(self, location: str) -> None:
        """Server mode: point the active alias (``<collection>__active``) at ``location`` in one
        ``update_collection_aliases`` call. Embedded mode has no aliases: a no-op."""
        if self.settings.qdrant_url:
            from ragwall.retrieval.client_store import point_alias

            point_alias(self.client(), f"{self.settings.collection}__active", location)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
