"""The embedded default store: a Qdrant Edge shard (``qdrant-edge-py``) in the data directory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from filelock import FileLock, Timeout

from ragwall.errors import StoreError, StoreLocked
from ragwall.payload import FLOAT_FIELDS, INTEGER_FIELDS, KEYWORD_FIELDS
from ragwall.retrieval.store import (
    DENSE,
    SPARSE,
    Branch,
    Filter,
    Fusion,
    HasId,
    Hit,
    IsEmpty,
    Match,
    MatchAny,
    PointIn,
    Query,
    Range,
    SparseVec,
    payload_selector,
)
from ragwall.retrieval.upgrade import upgrade_payloads


def _condition(cond):  # noqa: ANN001, ANN202 - a qdrant_edge condition
    if isinstance(cond, HasId):
        return qe.HasIdCondition({uuid.UUID(i) for i in cond.ids})
    if isinstance(cond, Match):
        return qe.FieldCondition(key=cond.key, match=qe.MatchValue(cond.value))
    if isinstance(cond, MatchAny):
        return qe.FieldCondition(key=cond.key, match=qe.MatchAny(list(cond.values)))
    if isinstance(cond, Range):
        return qe.FieldCondition(key=cond.key, range=qe.RangeFloat(gte=cond.gte, lte=cond.lte))
    if isinstance(cond, IsEmpty):
        return qe.IsEmptyCondition(cond.key)
    raise TypeError(f"unsupported filter condition {cond!r}")


def to_edge_filter(flt: Filter | None) -> qe.Filter | None:
    if flt is None or (not flt.must and not flt.must_not):
        return None
    return qe.Filter(
        must=[_condition(c) for c in flt.must] or None,
        must_not=[_condition(c) for c in flt.must_not] or None,
    )


def _vector(branch: Branch):  # noqa: ANN202
    if isinstance(branch.vector, SparseVec):
        return qe.Query.Nearest(
            qe.SparseVector(list(branch.vector.indices), list(branch.vector.values)), using=SPARSE
        )
    return qe.Query.Nearest([float(x) for x in branch.vector], using=DENSE)


def _fusion(fusion: Fusion, rrf_k: int, weights: list[float] | None):  # noqa: ANN202
    if fusion == "rrf":
        return qe.Fusion.Rrf(k=rrf_k, weights=weights)
    if fusion == "dbsf":
        return qe.Fusion.Dbsf()
    raise ValueError(f"unknown fusion {fusion!r}; use 'rrf' or 'dbsf'")


@contextmanager
def _engine_errors(action: str) -> Iterator[None]:
    """The engine raises bare exceptions; name them StoreError and say what failed."""
    try:
        yield
    except (ValueError, TypeError):
        raise
    except Exception as exc:
        raise StoreError(f"the embedded Qdrant shard failed to {action}: {exc}") from exc


def _request(q: Query) -> qe.QueryRequest:
    if not q.branches:
        raise ValueError("a query needs at least one branch")
    native = to_edge_filter(q.flt)
    if len(q.branches) == 1:
        return qe.QueryRequest(
            limit=q.limit,
            query=_vector(q.branches[0]),
            filter=native,
            with_payload=payload_selector(q.with_payload),
            with_vector=[DENSE] if q.with_dense else False,
        )
    return qe.QueryRequest(
        limit=q.limit,
        prefetches=[
            qe.Prefetch(limit=b.limit, query=_vector(b), filter=native) for b in q.branches
        ],
        query=_fusion(q.fusion, q.rrf_k, q.rrf_weights()),
        filter=native,
        with_payload=payload_selector(q.with_payload),
        with_vector=[DENSE] if q.with_dense else False,
    )


def _dense(vector) -> list[float] | None:  # noqa: ANN001 - the engine's vector union
    if isinstance(vector, dict):
        vector = vector.get(DENSE)
    return [float(x) for x in vector] if vector is not None else None


def _vectors(vector) -> tuple[list[float] | None, SparseVec | None]:  # noqa: ANN001
    """A stored point's (dense, sparse) vectors."""
    vector = vector or {}
    sparse = vector.get(SPARSE)
    return _dense(vector), (
        SparseVec(list(sparse.indices), list(sparse.values)) if sparse is not None else None
    )


_SCHEMA = (
    [(n, qe.PayloadSchemaType.Keyword) for n in KEYWORD_FIELDS]
    + [(n, qe.PayloadSchemaType.Float) for n in FLOAT_FIELDS]
    + [(n, qe.PayloadSchemaType.Integer) for n in INTEGER_FIELDS]
)


def _ensure_indexes(shard: qe.EdgeShard) -> None:
    """Create the payload indexes the contract names that the shard lacks (a shard made by an
    older version lacks the newer ones)."""
    have = set(shard.info().payload_schema or {})
    for name, kind in _SCHEMA:
        if name not in have:
            shard.update(qe.UpdateOperation.create_field_index(name, kind))


class EdgeStore:
    """A Qdrant Edge shard. Only one process may hold a shard open; a second gets StoreLocked."""

    def __init__(self, shard: qe.EdgeShard, path: Path, dim: int, lock: FileLock) -> None:
        self._shard = shard
        self._lock = lock
        self.path = path
        self.dim = dim

    @staticmethod
    def acquire(path: Path) -> FileLock:
        """Take the shard's process lock, or raise :class:`StoreLocked` at once.

        Cheap: callers take it before loading a model, so a locked index is reported in
        milliseconds, not after the model's seconds of loading.
        """
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, no permission, a full disk
            raise StoreError(
                f"could not create the embedded index at {path}: {exc}. Check the disk and the "
                "data dir's permissions."
            ) from exc
        # Not thread-local: a shard opened by one thread (a request) may be closed by another
        # (the switch that retires its index version), and the release must take.
        lock = FileLock(str(path) + ".lock", thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout as exc:
            raise StoreLocked(
                f"the embedded index at {path} is open in another process (a running `ragwall` "
                "server or ingest). Stop it, or point RAGWALL_QDRANT_URL at a Qdrant server to "
                "share one index between processes."
            ) from exc
        return lock

    @classmethod
    def open(
        cls,
        path: Path,
        dim: int,
        segment_max_kb: int | None = None,
        lock: FileLock | None = None,
    ) -> EdgeStore:
        """Open (or create) the shard; ``lock``: one already taken with :meth:`acquire`."""
        path = Path(path)
        lock = lock or cls.acquire(path)
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            optimizers=qe.EdgeOptimizersConfig(max_segment_size=segment_max_kb)
            if segment_max_kb
            else None,
        )
        try:
            if (path / "edge_config.json").exists():
                shard = qe.EdgeShard.load(str(path), config)
            else:
                shard = qe.EdgeShard.create(str(path), config)
            _ensure_indexes(shard)
        except Exception as exc:
            lock.release()
            raise StoreError(
                f"could not open the embedded index at {path}: {exc}. If its vector size differs "
                f"from the embedding model's ({dim}), re-ingest into a fresh RAGWALL_DATA_DIR."
            ) from exc
        store = cls(shard, path, dim, lock)
        try:
            upgrade_payloads(store)
        except Exception:
            store.close()
            raise
        return store

    # -- writes ---------------------------------------------------------------------------
    def upsert(self, points: Sequence[PointIn]) -> None:
        if not points:
            return
        edge_points = [
            qe.Point(
                id=uuid.UUID(p.id),
                vector={
                    DENSE: [float(x) for x in p.dense],
                    SPARSE: qe.SparseVector(list(p.sparse.indices), list(p.sparse.values)),
                },
                payload=p.payload,
            )
            for p in points
        ]
        with _engine_errors("upsert points"):
            self._shard.update(qe.UpdateOperation.upsert_points(edge_points))

    def delete(self, flt: Filter) -> None:
        native = to_edge_filter(flt)
        if native is None:
            raise ValueError("refusing to delete with an empty filter")
        with _engine_errors("delete points"):
            self._shard.update(qe.UpdateOperation.delete_points_by_filter(native))

    def set_payload(self, payload: dict[str, Any], flt: Filter) -> None:
        native = to_edge_filter(flt)
        if native is None:
            raise ValueError("refusing to set payload with an empty filter")
        with _engine_errors("set payload"):
            self._shard.update(qe.UpdateOperation.set_payload_by_filter(native, payload))

    # -- reads ----------------------------------------------------------------------------
    def query(
        self,
        branches: Sequence[Branch],
        limit: int,
        flt: Filter | None = None,
        fusion: Fusion = "rrf",
        rrf_k: int = 60,
        with_payload: bool = True,
    ) -> list[Hit]:
        return self.query_batch([Query(branches, limit, flt, fusion, rrf_k, with_payload)])[0]

    def query_batch(self, queries: Sequence[Query]) -> list[list[Hit]]:
        requests = [_request(q) for q in queries]
        with _engine_errors("run a query"):
            if len(requests) == 1:
                results = [self._shard.query(requests[0])]
            else:
                results = self._shard.query_batch(qe.QueryBatchRequest(requests))
        return [
            [
                Hit(str(p.id), float(p.score), dict(p.payload or {}), _dense(p.vector))
                for p in points
            ]
            for points in results
        ]

    def scroll(
        self,
        flt: Filter | None = None,
        limit: int = 256,
        offset: str | None = None,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool = False,
    ) -> tuple[list[Hit], str | None]:
        with _engine_errors("scroll"):
            records, next_offset = self._shard.scroll(
                qe.ScrollRequest(
                    offset=uuid.UUID(offset) if offset else None,
                    limit=limit,
                    filter=to_edge_filter(flt),
                    with_payload=payload_selector(with_payload),
                    with_vector=with_vectors,
                )
            )
        hits = [
            Hit(str(r.id), 0.0, dict(r.payload or {}), *_vectors(r.vector))
            if with_vectors
            else Hit(str(r.id), 0.0, dict(r.payload or {}))
            for r in records
        ]
        return hits, (str(next_offset) if next_offset is not None else None)

    def count(self, flt: Filter | None = None) -> int:
        with _engine_errors("count points"):
            return int(self._shard.count(qe.CountRequest(exact=True, filter=to_edge_filter(flt))))

    def optimize(self) -> None:
        with _engine_errors("build its indexes"):
            self._shard.optimize()

    def flush(self) -> None:
        with _engine_errors("flush to disk"):
            self._shard.flush()

    def close(self) -> None:
        if self._shard is not None:
            try:
                self._shard.flush()
                self._shard.close()
            finally:
                self._shard = None  # type: ignore[assignment]
                self._lock.release()

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
