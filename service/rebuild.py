"""A reindex: build a new index version beside the active one, catch up, check, switch.

Protocol (each step leaves the active version untouched until the last one):

1. Register the new version as ``building``, in its own shard folder or collection.
2. Fill it. Where the chunks and vectors would come out the same (same embedding model, chunking,
   BM25 and parsers: :func:`ragwall.ingest.pipeline.vectors_key`), carry the active version's
   points over with their stored vectors and recompute only what changed (trust priors, the
   detector's scores); then ingest every registered source into it, which parses and embeds
   whatever was not carried (every document, when the vectors change) and drops what is gone.
   ``rebuild`` skips the carrying: every document is parsed and embedded again.
   *Gate* (when the job has one): the active version and the new one are snapshotted on the
   gate's queries and compared (``ragwall.eval.drift``); the report is kept with the job. A
   failing gate (without ``force``) still replays and checks (3-4), then leaves the new version
   ``ready``, not active, notes why on it, and fails the job; a rollback and retention pass over
   such a version first.
3. Replay, holding the service's write lock so that no ingest commits meanwhile: every document
   the active version holds at that moment with other bytes than the new one (added or changed
   during the build) is ingested into the new version, and every document removed from the
   active version during the build is removed from the new one. No update is lost.
4. Check: the new store's live points equal the registry's chunk count, and every source that
   has documents in the active version has some in the new one.
5. Switch (:meth:`ActiveIndex.switch`): the registry pointer (and a server's alias) and the
   in-process handle change together; requests in flight finish on the old version.
6. Retention: keep the newest ``RAGWALL_KEEP_VERSIONS`` versions that can serve (the active one
   included); delete the others' data.

A failure or a cancel at any step before 5 marks the version ``failed`` and deletes its data; a
crash leaves it ``building`` with its job ``running``, which ``ragwall.service.upkeep.recover`` turns into
``failed`` on the next start (the job's file lock tells a dead job from a live one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragwall.defend.detect import Signals, content_trust
from ragwall.errors import GateFailed, JobCancelled, RagwallError, ReindexCheckFailed
from ragwall.ingest.pipeline import (
    Ingester,
    detector_fingerprint,
    pipeline_fingerprint,
    vectors_key,
)
from ragwall.ingest.registry import DocumentRecord, Registry, VersionRecord
from ragwall.ingest.sources import Source, iter_source_files
from ragwall.payload import LIVE, Key
from ragwall.retrieval.backends import version_location
from ragwall.retrieval.store import Filter, Match, PointIn, Store
from ragwall.service.index import (
    GATE_REJECTED,
    IndexHandle,
    version_config,
    version_name,
)
from ragwall.service.jobs import PROGRESS_EVERY_S, Progress
from ragwall.service.upkeep import BuildContext, enforce_retention
from ragwall.settings import Settings

log = logging.getLogger("ragwall.service.reindex")

SCROLL_PAGE = 512


#: A reindex gate: (the new version's store, its record) -> the drift result.
GateCheck = Callable[[Store, VersionRecord], dict[str, Any]]


def build_and_switch(
    ctx: BuildContext,
    job_id: str,
    new_settings: Settings,
    cancel: threading.Event,
    report: Callable[[Progress], None],
    *,
    rebuild: bool = False,
    gate: GateCheck | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run the protocol above; returns the job's result. Raises on failure (the version is then
    ``failed`` and its data deleted) and :class:`JobCancelled` when ``cancel`` is set.

    ``rebuild`` re-embeds everything (no vectors carried). ``gate`` runs after the fill, before
    the replay; when its verdict is ``fail`` (and not ``force``), the version is replayed,
    checked and left ``ready``, and :class:`GateFailed` is raised."""
    state, stores = ctx.registry, ctx.stores
    progress = Progress(stage="starting")
    started = time.monotonic()
    last_report = [0.0]

    def tick(force: bool = False) -> None:
        if cancel.is_set():
            raise JobCancelled("cancelled")
        now = time.monotonic()
        if force or now - last_report[0] >= PROGRESS_EVERY_S:
            last_report[0] = now
            report(progress)

    config = version_config(new_settings, ctx.settings)
    number = max((v.id for v in state.versions()), default=0) + 1
    location = version_location(new_settings, number)
    stores.drop(location)  # leftovers of an attempt whose cleanup failed
    number = state.add_version(
        "building",
        location,
        config,
        pipeline_fingerprint(new_settings),
        datetime.now(UTC).isoformat(),
        job_id=job_id,
        version=number,
    )
    encoder = ctx.active.encoder_for(new_settings.embedding_model)
    store: Store | None = None
    switched: list[bool] = []
    kept: list[bool] = []  # left ready by a failing gate: never delete it
    try:
        store = stores.open(location, encoder.dim)
        ingester = Ingester(new_settings, state, store, encoder, number)
        sources = state.list_sources()
        with ctx.active.lease() as active:
            snapshot = state.document_hashes(version=active.version)
            progress.documents_total = _count_files(sources, snapshot)
            same_vectors = not rebuild and vectors_key(config) == vectors_key(active.record.config)
            if same_vectors:
                progress.stage = "carrying vectors"
                tick(force=True)
                _carry(active, ingester, sources, progress, tick)
        progress.stage = "ingesting"
        tick(force=True)
        for source in sources:
            base, chunks_base = progress.documents_done, progress.chunks

            def on_doc(
                _stage: str, done: int, _total: int, base: int = base, chunks: int = chunks_base
            ) -> None:
                written = ingester.current.chunks if ingester.current else 0
                progress.advance(base + done, chunks + written)
                tick()

            rep = ingester.ingest(source, progress=on_doc)
            handled = rep.documents + len(rep.failed) + len(rep.skipped)
            progress.advance(base + handled, chunks_base + rep.chunks)
        tick(force=True)

        drift = None
        if gate is not None:
            progress.stage = "gate"
            tick(force=True)
            store.flush()
            drift = gate(store, state.get_version(number))  # type: ignore[arg-type]
            tick(force=True)
        gate_failed = drift is not None and drift["verdict"] == "fail"

        progress.stage = "replaying"
        tick(force=True)
        with ctx.write_lock.exclusive():
            active_record = state.active_version()
            assert active_record is not None
            replayed = _replay(ingester, snapshot, active_record.id)
            progress.stage = "checking"
            _check(state, store, number, active_record.id)
            store.flush()
            previous = active_record.id
            if gate_failed and not force:
                kept.append(True)
                store.close()
                store = None
                failed = [n for n, g in drift["gates"].items() if not g["passed"]]  # type: ignore[index]
                state.set_version_state(
                    number,
                    "ready",
                    datetime.now(UTC).isoformat(),
                    f"{GATE_REJECTED}: {', '.join(failed)} (job {job_id})",
                )
                raise GateFailed(
                    f"the drift gate failed ({', '.join(failed)}); version "
                    f"{version_name(number)} is ready but not active: read the job's report, "
                    f"then activate it (`ragwall index activate {version_name(number)}`) or "
                    "reindex with force",
                    {
                        "version": version_name(number),
                        "previous": version_name(previous),
                        "switched": False,
                        "gate": _gate_summary(drift),  # type: ignore[arg-type]
                    },
                )

            def commit() -> None:
                stores.point_alias(location)
                state.activate(number)
                state.set_version_state(number, "active", datetime.now(UTC).isoformat())
                switched.append(True)

            ctx.active.switch(state.get_version(number), commit, store)  # type: ignore[arg-type]
        store = None  # the active index owns it now
        retired = enforce_retention(ctx, new_settings.keep_versions)
        progress.stage = "done"
        progress.documents_done = progress.documents_total
        report(progress)
        return {
            "version": version_name(number),
            "previous": version_name(previous),
            "documents": sum(d for d, _ in state.version_counts(version=number).values()),
            "chunks": sum(c for _, c in state.version_counts(version=number).values()),
            "reused_vectors": progress.reused_vectors,
            "replayed": replayed,
            "retired": [version_name(v) for v in retired],
            "seconds": round(time.monotonic() - started, 2),
            "switched": True,
            **({"gate": _gate_summary(drift), "forced": gate_failed} if drift else {}),
        }
    except BaseException as exc:
        if switched or kept:  # the new version is active, or kept ready: never delete it
            raise
        if store is not None:
            try:
                store.close()
            except Exception:
                log.exception("closing the failed version's store")
        stores.drop(location)
        state.drop_documents(version=number)
        reason = "cancelled" if isinstance(exc, JobCancelled) else f"{type(exc).__name__}: {exc}"
        state.set_version_state(number, "failed", datetime.now(UTC).isoformat(), reason)
        raise


def _gate_summary(drift: dict[str, Any]) -> dict[str, Any]:
    """What a job's result keeps of its gate's comparison (the full one is in its report)."""
    keep = ("queries", "rbo", "jaccard@k", "top1_changed", "ndcg@10", "gates", "verdict", "report")
    return {k: drift[k] for k in keep if k in drift} | {"sources": drift["sources"][:5]}


def _count_files(sources: list[Source], snapshot: dict[tuple[str, str], str]) -> int:

    total = 0
    for source in sources:
        try:
            total += sum(1 for _ in iter_source_files(source))
        except RagwallError:
            total += sum(1 for (sid, _uri) in snapshot if sid == source.id)
    return total


def _carry(
    active: IndexHandle,
    ingester: Ingester,
    sources: list[Source],
    progress: Progress,
    tick: Callable[[], None],
) -> None:
    """Copy the active version's live points into the new one with their stored vectors;
    recompute trust, and the detector's scores where the detector changed. Documents with text
    hidden by their markup are left to the ingest (their hidden segments are not stored).

    The detector changed for a document when the new settings name another detector than the
    active version's, or when the document's stored fingerprint is not what the active
    version's settings give today: the packaged model (or the model folder a setting names)
    was replaced under the same setting, as an upgrade of Ragwall does."""
    new_settings = ingester.settings
    changed = detector_fingerprint(new_settings) != detector_fingerprint(active.settings)
    today = pipeline_fingerprint(active.settings)
    fingerprint = ingester.fingerprint
    state, version = ingester.state, ingester.index_version
    for source in sources:
        records = state.documents(source.id, version=active.version)
        if not records:
            continue
        by_doc: dict[str, list] = defaultdict(list)
        offset: str | None = None
        flt = Filter(must=(Match(Key.SOURCE_ID, source.id), Match(Key.STATE, LIVE)))
        while True:
            hits, offset = active.store.scroll(flt, SCROLL_PAGE, offset, with_vectors=True)
            for hit in hits:
                by_doc[hit.payload[Key.DOC_URI]].append(hit)
            if offset is None:
                break
        prior = new_settings.trust_priors[source.trust_tier]
        for uri, hits in by_doc.items():
            rec = records.get(uri)
            if rec is None or len(hits) != rec.chunks:
                continue  # mid-write or unknown: the ingest redoes it
            rescore = changed or rec.fingerprint != today
            if rescore and any(h.payload.get(Key.HIDDEN_TEXT) for h in hits):
                continue
            hits.sort(key=lambda h: h.payload[Key.CHUNK_INDEX])
            signals = (
                ingester.detector.score_texts([h.payload[Key.TEXT] for h in hits])
                if rescore
                else [_stored_signals(h.payload) for h in hits]
            )
            points = []
            for hit, sig in zip(hits, signals, strict=True):
                payload = dict(hit.payload)
                payload.update(
                    {
                        Key.TRUST_PRIOR: prior,
                        Key.TRUST: content_trust(prior, sig, new_settings.injection_threshold),
                        Key.INJECTION_SCORE: sig.injection_score,
                        Key.INJECTION_REASONS: sig.injection_reasons,
                        Key.INJECTION_SPAN: list(sig.injection_span)
                        if sig.injection_span
                        else None,
                    }
                )
                points.append(PointIn(hit.id, hit.dense, hit.sparse, payload))
            ingester.store.upsert(points)
            state.put_document(
                DocumentRecord(**{**rec.__dict__, "fingerprint": fingerprint}), version=version
            )
            progress.documents_done += 1
            progress.reused_vectors += len(points)
            progress.chunks += len(points)
            tick()
    ingester.store.optimize()
    ingester.store.flush()


def _stored_signals(payload: dict[str, Any]) -> Signals:
    span = payload.get(Key.INJECTION_SPAN)
    return Signals(
        float(payload.get(Key.INJECTION_SCORE) or 0.0),
        list(payload.get(Key.INJECTION_REASONS) or []),
        bool(payload.get(Key.HIDDEN_TEXT)),
        list(payload.get(Key.HIDDEN_REASONS) or []),
        tuple(span) if span else None,
    )


def _replay(
    ingester: Ingester, snapshot: dict[tuple[str, str], str], active_version: int
) -> dict[str, int]:
    """Bring the new version level with the active one's updates since the build began."""
    state = ingester.state
    final = state.document_hashes(version=active_version)
    built = state.document_hashes(version=ingester.index_version)
    registered = {s.id: s for s in state.list_sources()}
    stale: dict[str, list[Path]] = defaultdict(list)
    for key, sha in final.items():
        if built.get(key) != sha and key[0] in registered:
            stale[key[0]].append(Path(key[1]))
    ingested = 0
    for source_id, paths in stale.items():
        rep = ingester.ingest(registered[source_id], paths=[p for p in paths if p.exists()])
        ingested += rep.documents
    removed = 0
    for source_id, uri in set(snapshot) - set(final):
        ingester.store.delete(
            Filter(must=(Match(Key.SOURCE_ID, source_id), Match(Key.DOC_URI, uri)))
        )
        state.delete_document(source_id, uri, version=ingester.index_version)
        removed += 1
    gone_sources = {sid for sid, _ in state.document_hashes(version=ingester.index_version)}
    for source_id in gone_sources - set(registered):
        ingester.drop_source_chunks(source_id)
    if removed:
        ingester.store.optimize()
    return {"ingested": ingested, "removed": removed}


def _check(state: Registry, store: Store, version: int, active_version: int) -> None:
    counts = state.version_counts(version=version)
    expected = sum(c for _, c in counts.values())
    live = store.count(Filter(must=(Match(Key.STATE, LIVE),)))
    if live != expected:
        raise ReindexCheckFailed(
            f"the new version holds {live} live chunks but its registry lists {expected}; it was "
            "not activated. Run the reindex again; if it repeats, report it."
        )
    missing = sorted(set(state.version_counts(version=active_version)) - set(counts))
    if missing:
        raise ReindexCheckFailed(
            f"sources {missing} have documents in the active version but none in the new one "
            "(their files unreadable now?); it was not activated. Check the job's sources, or "
            "remove the sources first."
        )
