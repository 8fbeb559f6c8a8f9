"""A Qdrant server (or cluster) through ``qdrant-client``; ``:memory:`` runs the same code path."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from ragwall.errors import StoreError
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


def _condition(cond):  # noqa: ANN001, ANN202 - a qdrant_client condition
    if isinstance(cond, HasId):
        return qm.HasIdCondition(has_id=list(cond.ids))
    if isinstance(cond, Match):
        return qm.FieldCondition(key=cond.key, match=qm.MatchValue(value=cond.value))
    if isinstance(cond, MatchAny):
        return qm.FieldCondition(key=cond.key, match=qm.MatchAny(any=list(cond.values)))
    if isinstance(cond, Range):
        return qm.FieldCondition(key=cond.key, range=qm.Range(gte=cond.gte, lte=cond.lte))
    if isinstance(cond, IsEmpty):
        return qm.IsEmptyCondition(is_empty=qm.PayloadField(key=cond.key))
    raise TypeError(f"unsupported filter condition {cond!r}")


def to_client_filter(flt: Filter | None) -> qm.Filter | None:
    if flt is None or (not flt.must and not flt.must_not):
        return None
    return qm.Filter(
        must=[_condition(c) for c in flt.must] or None,
        must_not=[_condition(c) for c in flt.must_not] or None,
    )


def _query_vector(branch: Branch):  # noqa: ANN202
    if isinstance(branch.vector, SparseVec):
        return qm.SparseVector(
            indices=list(branch.vector.indices), values=list(branch.vector.values)
        )
    return [float(x) for x in branch.vector]


@contextmanager
def _server_errors(action: str) -> Iterator[None]:
    """Connection and server errors become StoreError, saying what failed."""
    try:
        yield
    except (ValueError, TypeError, StoreError):
        raise
    except Exception as exc:
        raise StoreError(f"Qdrant failed to {action}: {type(exc).__name__}: {exc}") from exc


def _dense(vector) -> list[float] | None:  # noqa: ANN001 - the client's vector union
    if isinstance(vector, dict):
        vector = vector.get(DENSE)
    return list(vector) if vector is not None else None


def _request(q: Query) -> qm.QueryRequest:
    if not q.branches:
        raise ValueError("a query needs at least one branch")
    native = to_client_filter(q.flt)
    if len(q.branches) == 1:
        b = q.branches[0]
        return qm.QueryRequest(
            query=_query_vector(b),
            using=b.using,
            limit=q.limit,
            filter=native,
            with_payload=payload_selector(q.with_payload),
            with_vector=[DENSE] if q.with_dense else False,
        )
    if q.fusion == "rrf":
        fused = qm.RrfQuery(rrf=qm.Rrf(k=q.rrf_k, weights=q.rrf_weights()))
    elif q.fusion == "dbsf":
        fused = qm.FusionQuery(fusion=qm.Fusion.DBSF)
    else:
        raise ValueError(f"unknown fusion {q.fusion!r}; use 'rrf' or 'dbsf'")
    return qm.QueryRequest(
        prefetch=[
            qm.Prefetch(query=_query_vector(b), using=b.using, limit=b.limit, filter=native)
            for b in q.branches
        ],
        query=fused,
        limit=q.limit,
        filter=native,
        with_payload=payload_selector(q.with_payload),
        with_vector=[DENSE] if q.with_dense else False,
    )


def _vectors(vector) -> tuple[list[float] | None, SparseVec | None]:  # noqa: ANN001
    """A stored point's (dense, sparse) vectors."""
    vector = vector or {}
    sparse = vector.get(SPARSE) if isinstance(vector, dict) else None
    return _dense(vector), (
        SparseVec(list(sparse.indices), list(sparse.values)) if sparse is not None else None
    )


def make_client(url: str, api_key: str | None = None) -> QdrantClient:
    """A client for ``url``; ``:memory:`` is an in-process instance (brute-force search)."""
    if url == ":memory:":
        return QdrantClient(location=":memory:")
    return QdrantClient(url=url, api_key=api_key)


def drop_collection(client: QdrantClient, collection: str) -> None:
    """Delete a collection (an index version's data); a missing one is not an error."""
    with _server_errors(f"delete collection {collection!r}"):
        client.delete_collection(collection)


def point_alias(client: QdrantClient, alias: str, collection: str) -> None:
    """Point ``alias`` at ``collection`` in one ``update_collection_aliases`` call: the delete
    and the create apply together, so a reader never finds the alias missing."""
    with _server_errors(f"switch alias {alias!r}"):
        ops: list = []
        if any(a.alias_name == alias for a in client.get_aliases().aliases):
            ops.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias)))
        ops.append(
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name=collection, alias_name=alias)
            )
        )
        client.update_collection_aliases(change_aliases_operations=ops)


_SCHEMA = (
    [(n, qm.PayloadSchemaType.KEYWORD) for n in KEYWORD_FIELDS]
    + [(n, qm.PayloadSchemaType.FLOAT) for n in FLOAT_FIELDS]
    + [(n, qm.PayloadSchemaType.INTEGER) for n in INTEGER_FIELDS]
)


class ClientStore:
    """One collection on a Qdrant server, with a dense and an IDF-weighted sparse vector."""

    def __init__(
        self, client: QdrantClient, collection: str, dim: int, owns_client: bool = True
    ) -> None:
        """``owns_client``: close the client with the store (not when versions share one)."""
        self.client = client
        self.collection = collection
        self.dim = dim
        self.owns_client = owns_client

    @classmethod
    def connect(
        cls, url: str, collection: str, dim: int, api_key: str | None = None
    ) -> ClientStore:
        store = cls(make_client(url, api_key), collection, dim)
        store.ensure_collection()
        return store

    def ensure_collection(self) -> None:
        """Create the collection, or check an existing one's vector size; then create the
        payload indexes it lacks and bring older payloads to today's form
        (:func:`ragwall.retrieval.upgrade.upgrade_payloads`)."""
        try:
            have: set[str] = set()
            if self.client.collection_exists(self.collection):
                info = self.client.get_collection(self.collection)
                vectors = info.config.params.vectors
                size = vectors[DENSE].size if isinstance(vectors, dict) else None
                if size != self.dim:
                    raise StoreError(
                        f"collection {self.collection!r} holds {size}-d vectors but the embedding "
                        f"model makes {self.dim}-d ones; use another RAGWALL_COLLECTION"
                    )
                have = set(info.payload_schema or {})
            else:
                self.client.create_collection(
                    self.collection,
                    vectors_config={
                        DENSE: qm.VectorParams(size=self.dim, distance=qm.Distance.COSINE)
                    },
                    sparse_vectors_config={SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
                )
            with warnings.catch_warnings():  # local mode says indexes have no effect there
                warnings.simplefilter("ignore", UserWarning)
                for name, kind in _SCHEMA:
                    if name not in have:
                        self.client.create_payload_index(self.collection, name, kind)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"Qdrant at the configured URL failed: {exc}") from exc
        upgrade_payloads(self)

    def upsert(self, points: Sequence[PointIn]) -> None:
        if not points:
            return
        with _server_errors("upsert points"):
            self.client.upsert(
                self.collection,
                points=[
                    qm.PointStruct(
                        id=p.id,
                        vector={
                            DENSE: [float(x) for x in p.dense],
                            SPARSE: qm.SparseVector(
                                indices=list(p.sparse.indices), values=list(p.sparse.values)
                            ),
                        },
                        payload=p.payload,
                    )
                    for p in points
                ],
                wait=True,
            )

    def delete(self, flt: Filter) -> None:
        native = to_client_filter(flt)
        if native is None:
            raise ValueError("refusing to delete with an empty filter")
        with _server_errors("delete points"):
            self.client.delete(
                self.collection, points_selector=qm.FilterSelector(filter=native), wait=True
            )

    def set_payload(self, payload: dict[str, Any], flt: Filter) -> None:
        native = to_client_filter(flt)
        if native is None:
            raise ValueError("refusing to set payload with an empty filter")
        with _server_errors("set payload"):
            self.client.set_payload(self.collection, payload=payload, points=native, wait=True)

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
        with _server_errors("run a query"):
            responses = self.client.query_batch_points(self.collection, requests=requests)
        return [
            [
                Hit(str(p.id), float(p.score), dict(p.payload or {}), _dense(p.vector))
                for p in r.points
            ]
            for r in responses
        ]

    def scroll(
        self,
        flt: Filter | None = None,
        limit: int = 256,
        offset: str | None = None,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool = False,
    ) -> tuple[list[Hit], str | None]:
        with _server_errors("scroll"):
            records, next_offset = self.client.scroll(
                self.collection,
                scroll_filter=to_client_filter(flt),
                limit=limit,
                offset=offset,
                with_payload=payload_selector(with_payload),
                with_vectors=with_vectors,
            )
        hits = [
            Hit(str(r.id), 0.0, dict(r.payload or {}), *_vectors(r.vector))
            if with_vectors
            else Hit(str(r.id), 0.0, dict(r.payload or {}))
            for r in records
        ]
        return hits, (str(next_offset) if next_offset is not None else None)

    def count(self, flt: Filter | None = None) -> int:
        with _server_errors("count points"):
            result = self.client.count(
                self.collection, count_filter=to_client_filter(flt), exact=True
            )
        return int(result.count)

    def optimize(self) -> None:
        """A server builds its indexes in the background; nothing to do."""

    def flush(self) -> None:
        """Writes are acknowledged with ``wait=True``; nothing to do."""

    def close(self) -> None:
        if self.owns_client:
            self.client.close()

    def __enter__(self) -> ClientStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
