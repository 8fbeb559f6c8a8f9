"""Snapshots and drift comparisons of live index versions, through the real search path (the
measures themselves are ``ragwall.eval.drift``'s).

A snapshot runs each query as an unrestricted caller would (every access group; quarantined
sources and documents excluded, as for every caller), with the server's ranking defaults: fused
dense + BM25 in Qdrant, the reranker when it is on by default, the query-time defenses when they
are on by default. It appends no per-query ``retrieve`` audit record; the snapshot or comparison
is audited once by its caller.

Invariants:

- **A version is read only while it can serve** (``active`` or ``ready``): a retired or failed
  version's data is gone, and opening its location would create an empty store.
- **The active version is read under a lease**, so a switch during a snapshot waits for it; any
  other version is opened for the comparison and closed after it.
- **A request is checked before any work** (:func:`check_request`, the one check the HTTP job
  and the CLI both run): an unknown or non-serving version is ``NotFound``, bad queries or a
  snapshot of another index a ``DatasetError``.
- **A cancel stops the work between queries**: every loop over queries checks the ``cancel``
  event it is given and raises :class:`JobCancelled`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ragwall.datasets import DatasetError
from ragwall.errors import JobCancelled, VersionNotFound
from ragwall.eval.drift.compare import Gates, compare
from ragwall.eval.drift.embedding import embedding_drift
from ragwall.eval.drift.queries import QuerySet
from ragwall.eval.drift.snapshot import (
    Snapshot,
    SnapshotQuery,
    hit_from,
    select,
)
from ragwall.ingest.registry import VersionRecord
from ragwall.retrieval.search import HybridSearcher, SearchFilter, access_filter
from ragwall.service.index import IndexHandle, version_name
from ragwall.service.requests import Side
from ragwall.service.retrieve import defense_config
from ragwall.service.runtime import Runtime
from ragwall.settings import RETRIEVE

SERVING = ("active", "ready")


def serving_record(rt: Runtime, version: int) -> VersionRecord:
    """The registry record of ``version`` when it can serve; ``NotFound`` when it is unknown or
    its data is gone (retired, failed) or incomplete (building)."""
    record = rt.registry.get_version(version)
    if record is None:
        raise VersionNotFound(
            f"no index version {version_name(version)}; `ragwall index list` or GET /v1/index "
            "lists them"
        )
    if record.state not in SERVING:
        raise VersionNotFound(
            f"version {version_name(version)} is {record.state}: its data is gone or incomplete; "
            "compare an active or ready version (`ragwall index list`, GET /v1/index)"
        )
    return record


def check_request(
    rt: Runtime, queries: QuerySet | None, baseline: Side, candidate: Side
) -> QuerySet:
    """Check a comparison before any work starts, the same for ``POST /v1/eval/drift`` and
    ``ragwall eval drift``; returns its queries (the baseline snapshot's when None).

    Raises ``NotFound`` for a version that is unknown or cannot serve, and ``DatasetError`` for
    missing queries or a snapshot that is of another index or lacks one of the queries."""
    if queries is None:
        if baseline.snapshot is None:
            raise DatasetError(
                "give the queries (--queries FILE or --dataset DIR) to compare versions"
            )
        queries = QuerySet({q.id: q.text for q in baseline.snapshot.queries}, None, "the baseline")
    index_id = rt.registry.index_id()
    for name, side in (("baseline", baseline), ("candidate", candidate)):
        if side.version is not None:
            serving_record(rt, side.version)
        if side.snapshot is not None:
            if side.snapshot.index_id != index_id:
                raise DatasetError(
                    f"the {name} snapshot and this index are different indexes (the snapshot "
                    f"was taken on index {side.snapshot.index_id[:8]}); compare snapshots of "
                    "this one"
                )
            select(side.snapshot, list(queries.queries), name)
    return queries


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise JobCancelled("cancelled")


@contextmanager
def version_handle(rt: Runtime, version: int | None) -> Iterator[IndexHandle]:
    """The handle of ``version`` (the active one when None) for the duration of the block."""
    with rt.index.lease() as active:
        if version is None or version == active.version:
            yield active
            return
    record = serving_record(rt, version)
    handle = rt.index.open_handle(record)
    try:
        yield handle
    finally:
        handle.store.close()


def ranking_settings(rt: Runtime) -> dict[str, Any]:
    s = rt.settings
    return {
        "fusion": "rrf",
        "rrf_k": s.rrf_k,
        "fuse": s.fuse_level,
        "bm25_weight": s.bm25_weight,
        "candidates": RETRIEVE.candidates,
        "rerank": bool(s.rerank_by_default and s.reranker_model),
        "reranker_model": s.reranker_model if s.rerank_by_default else None,
        "defenses": s.defenses_by_default,
        "policy": s.default_policy if s.defenses_by_default else None,
    }


def snapshot_with(
    rt: Runtime,
    searcher: HybridSearcher,
    record: Any,
    queries: QuerySet,
    top_k: int = 10,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Snapshot:
    """Run every query on ``searcher`` (a version's) and record what it returned.

    Each query keeps ``3 * top_k`` chunks, so that documents (ranked at their best chunk) fill
    the top k even when a document has several chunks in the list. ``cancel``, once set,
    stops it before the next query (:class:`JobCancelled`)."""
    if top_k < 1 or top_k > 100:
        raise DatasetError("top_k must be between 1 and 100")
    ranking = ranking_settings(rt)
    depth = 3 * top_k
    ranking["candidates"] = max(ranking["candidates"], depth)
    ranking["depth"] = depth
    blocked_sources, blocked_docs = rt.registry.quarantined()
    flt = access_filter(None, SearchFilter(), blocked_sources, blocked_docs)
    defenses = (
        defense_config(rt.settings, rt.registry, ranking["policy"]) if ranking["defenses"] else None
    )
    out: list[SnapshotQuery] = []
    total = len(queries.queries)
    for n, (qid, text) in enumerate(queries.queries.items(), start=1):
        _check_cancel(cancel)
        res = searcher.search(
            text,
            flt,
            top_k=depth,
            candidates=ranking["candidates"],
            rrf_k=ranking["rrf_k"],
            fuse=ranking["fuse"],
            bm25_weight=ranking["bm25_weight"],
            rerank=ranking["rerank"],
            defenses=defenses,
        )
        out.append(
            SnapshotQuery(
                id=qid,
                text=text,
                hits=[hit_from(rank, h) for rank, h in enumerate(res.hits, start=1)],
            )
        )
        if progress:
            progress(n, total)
    return Snapshot(
        index_id=rt.registry.index_id(),
        collection=rt.settings.collection,
        index_version=version_name(record.id),
        fingerprint=record.fingerprint,
        embedding_model=str(record.config.get("embedding_model", "")),
        ranking=ranking,
        top_k=top_k,
        queries=out,
    )


def take_snapshot(
    rt: Runtime,
    queries: QuerySet,
    top_k: int = 10,
    version: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Snapshot:
    """A snapshot of ``version`` (the active one when None)."""
    with version_handle(rt, version) as handle:
        return snapshot_with(rt, handle.searcher, handle.record, queries, top_k, progress, cancel)


def compare_versions(
    rt: Runtime,
    baseline: IndexHandle,
    candidate: IndexHandle,
    queries: QuerySet,
    top_k: int = 10,
    gates: Gates | None = None,
    progress: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Snapshot two open versions on ``queries`` and compare them, embedding drift included
    (what ``run_drift`` does for two versions, and a reindex's gate for the active version and
    the one being built). ``cancel`` stops it between queries."""
    say = progress or (lambda _m: None)
    snaps = []
    for name, handle in (("baseline", baseline), ("candidate", candidate)):
        say(f"{name}: {len(queries.queries)} queries on {handle.name}")
        snaps.append(
            snapshot_with(rt, handle.searcher, handle.record, queries, top_k, cancel=cancel)
        )
    _check_cancel(cancel)
    say("embedding drift: sampling stored vectors")
    embedding = embedding_drift(
        baseline.store, candidate.store, baseline.encoder.model_id, candidate.encoder.model_id
    )
    return compare(
        snaps[0], snaps[1], list(queries.queries), queries.qrels, top_k, gates, embedding
    )


def run_drift(
    rt: Runtime,
    queries: QuerySet | None,
    baseline: Side,
    candidate: Side = Side(),
    top_k: int = 10,
    gates: Gates | None = None,
    progress: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Compare two sides over ``queries`` (default: the baseline snapshot's). Version sides are
    snapshotted now; two versions also get an embedding-drift measure. The request is checked
    first (:func:`check_request`); ``cancel`` stops it between queries."""
    say = progress or (lambda _m: None)
    queries = check_request(rt, queries, baseline, candidate)
    if baseline.snapshot is None and candidate.snapshot is None:
        active = rt.index.ensure_registry().id
        b_version, c_version = baseline.version or active, candidate.version or active
        with version_handle(rt, b_version) as b_handle:
            if c_version == b_version:
                return compare_versions(rt, b_handle, b_handle, queries, top_k, gates, say, cancel)
            with version_handle(rt, c_version) as c_handle:
                return compare_versions(rt, b_handle, c_handle, queries, top_k, gates, say, cancel)
    snaps: list[Snapshot] = []
    for name, side in (("baseline", baseline), ("candidate", candidate)):
        if side.snapshot is not None:
            snaps.append(side.snapshot)
            continue
        say(f"{name}: {len(queries.queries)} queries on {side.describe()}")
        snaps.append(take_snapshot(rt, queries, top_k, side.version, cancel=cancel))
    return compare(snaps[0], snaps[1], list(queries.queries), queries.qrels, top_k, gates)
