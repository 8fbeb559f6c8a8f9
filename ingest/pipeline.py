"""The ingest run: scan a source, skip what is unchanged, parse, chunk, embed, write, commit.

Writes are crash-safe per document. A document's new chunks are written with ``state="pending"``
(retrieval only reads ``state="live"``), then switched live in one filtered update, and only then
are its older chunks deleted; the registry is updated last. A crash at any step leaves either the
old or the new version readable (for an instant, both), never a part of one, and the next run
removes stale pending chunks and redoes the document.

A cancel keeps the same promise. The run checks its ``cancel`` event between files while
scanning, every 0.2 s while it waits for a parser, between embedding batches and between
documents it writes, never inside a document's write-and-commit. Once the event is set, the
parser workers are killed mid-parse, the documents parsed or embedded but not yet committed are
dropped, the source's pending chunks are deleted, the run is recorded as finished with
``"cancelled": true`` in its summary, and :class:`~ragwall.errors.IngestCancelled` carries the
partial report. Documents committed before the cancel stay live, each whole.

A full sync never empties a source by accident (safe reconcile): when the documents gone from
the source would be more than ``RAGWALL_MAX_REMOVAL_SHARE`` of its live ones (and more than
``RAGWALL_MASS_REMOVAL_FLOOR``), the run changes nothing at all, is recorded as failed with
``"reason": "mass_removal"``, and raises :class:`~ragwall.errors.MassRemoval`. A mount that went
away, a share that lost its permissions, a sitemap that came back empty all look like that.
``allow_mass_removal`` removes them on purpose. A web source's pages are read by
:mod:`ragwall.ingest.web` (robots.txt, the sitemap, a conditional GET per page); when its
listing was partial (robots.txt or a sitemap could not be read) nothing is removed at all.

One bad file never stops a run: what is wrong with a file (its type, a link loop, its size, its
content, the parser's time or memory) is that file's ``failed`` or ``skipped`` entry
(``ingest.scan``, ``ingest.pool``), and the rest of the source is ingested.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from ragwall.defend.detect import Detector, Signals, content_trust
from ragwall.defend.hidden_html import HiddenSegment
from ragwall.embed import DenseEncoder, resolve_model_path
from ragwall.errors import IngestCancelled, MassRemoval, SourceError
from ragwall.ingest.pool import ParserPool
from ragwall.ingest.registry import DocumentRecord, Registry
from ragwall.ingest.report import Failure, IngestReport, Note, Skipped
from ragwall.ingest.scan import Found, file_sha256, scan_file
from ragwall.ingest.sources import Source, iter_source_files
from ragwall.ingest.web import Outcome, Unchanged, WebCrawl, check_web_host
from ragwall.ingest.web_state import ValidatorStore
from ragwall.payload import LIVE, PENDING, ChunkPayload, Key, hidden_flag
from ragwall.retrieval.sparse import bm25_document_vector
from ragwall.retrieval.store import Filter, Match, PointIn, SparseVec, Store
from ragwall.settings import Settings

__all__ = [  # the report's types live in ingest.report; callers import them from here too
    "Failure",
    "IngestReport",
    "Ingester",
    "Note",
    "Skipped",
    "file_sha256",
]

POINT_NAMESPACE = uuid.UUID("6f1c9a5e-3b0d-4d7e-9a51-7c2f0e8b4a11")
UPSERT_BATCH = 256
PARSE_AHEAD = 16  # documents parsed ahead of the embedder
DETECT_BATCH = 64  # chunks the injection model scores between two checks for a cancel


@dataclass
class _Pending:
    found: Found
    parsed: dict[str, Any]


class _Cancelled(Exception):
    """Raised at a cancel check inside a run; ``Ingester.ingest`` turns it into IngestCancelled."""


def pipeline_fingerprint(settings: Settings) -> str:
    """What, besides a document's bytes, decides its chunks and vectors. A change re-ingests."""
    parts = [
        "ragwall-ingest-2",  # 2: rule-based sentence splitting in the parse heuristics
        settings.embedding_model,
        detector_fingerprint(settings),
        str(settings.chunk_max_tokens),
        str(settings.chunk_overlap_tokens),
        str(settings.chunk_max_chars),
        str(settings.chunk_new_after_chars),
        str(settings.chunk_combine_under_chars),
        str(settings.bm25_k1),
        str(settings.bm25_b),
        version("unstructured"),
        version("pypdf"),
    ]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


#: Settings that decide what an index holds. An index version records their values; the service
#: builds and reads that version with them, so a changed environment takes effect at a reindex.
PIPELINE_FIELDS: tuple[str, ...] = (
    "embedding_model",
    "chunk_max_tokens",
    "chunk_overlap_tokens",
    "chunk_max_chars",
    "chunk_new_after_chars",
    "chunk_combine_under_chars",
    "bm25_k1",
    "bm25_b",
    "injection_model",
    "injection_threshold",
    "trust_priors",
)
#: Of those, the ones that decide the chunks and their vectors: while they are unchanged, a
#: reindex carries the stored vectors over instead of parsing and embedding again.
VECTOR_FIELDS: tuple[str, ...] = PIPELINE_FIELDS[:8]


def pipeline_config(settings: Settings) -> dict[str, Any]:
    """The values of :data:`PIPELINE_FIELDS` (JSON-ready), with the parser versions."""
    config: dict[str, Any] = {
        name: (str(v) if isinstance(v := getattr(settings, name), Path) else v)
        for name in PIPELINE_FIELDS
    }
    config["parsers"] = {"unstructured": version("unstructured"), "pypdf": version("pypdf")}
    return config


def vectors_key(config: dict[str, Any]) -> str:
    """Equal for two configs whose chunks and vectors are the same."""
    parts = {k: config.get(k) for k in (*VECTOR_FIELDS, "parsers")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def point_id(source_id: str, uri: str, doc_version: str, index: int) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{source_id}\x00{uri}\x00{doc_version}\x00{index}"))


def _doc_filter(source_id: str, uri: str) -> Filter:
    return Filter(must=(Match(Key.SOURCE_ID, source_id), Match(Key.DOC_URI, uri)))


class Ingester:
    """Runs ingests for one data directory, with one encoder and one store."""

    def __init__(
        self,
        settings: Settings,
        state: Registry,
        store: Store,
        encoder: DenseEncoder,
        index_version: int = 1,
    ) -> None:
        """``index_version``: the registry rows this ingester reads and writes (the version
        whose store ``store`` is)."""
        self.settings = settings
        self.index_version = index_version
        self.state = state
        self.store = store
        self.encoder = encoder
        self.fingerprint = pipeline_fingerprint(settings)
        self.model_path = resolve_model_path(settings.embedding_model)
        self.detector = make_detector(settings)
        self._optimized_at = 0
        self.current: IngestReport | None = None

    @cached_property
    def validators(self) -> ValidatorStore:
        """Web pages' ETags and Last-Modified dates (``ingest.web_state``)."""
        return ValidatorStore(self.state.path)

    # -- public ----------------------------------------------------------------------------
    def ingest(
        self,
        source: Source,
        paths: Iterable[Path] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        force: bool = False,
        cancel: threading.Event | None = None,
        allow_mass_removal: bool = False,
    ) -> IngestReport:
        """Bring the index in line with ``source`` (or with just ``paths``, a one-off ingest).

        A full-source run also removes documents that have disappeared from the source, unless
        they are a mass removal (module docstring; ``allow_mass_removal`` lets it through).
        ``progress(stage, done, total)`` is called as documents complete. ``force`` re-processes
        documents whose bytes and pipeline are unchanged (after a parser or detector fix).
        ``cancel``, once set, stops the run within a fraction of a second (see the module's
        doc): its parser workers are killed, nothing uncommitted stays in the index, the run is
        recorded as cancelled, and :class:`~ragwall.errors.IngestCancelled` is raised with the
        partial report as its ``report``.
        """
        started = datetime.now(UTC)
        report = IngestReport(run_id=uuid.uuid4().hex[:16], source_id=source.id)
        self.current = report  # what the run has done so far (for progress)
        self._optimized_at = 0
        self.state.start_run(report.run_id, source.id, started.isoformat(), self.index_version)
        try:
            self._run(source, paths, progress, force, cancel, report, allow_mass_removal)
        except MassRemoval as refused:  # nothing was changed: the run failed, saying why
            summary = {
                **report.summary(),
                "outcome": "failed",
                "reason": "mass_removal",
                "would_remove": refused.would_remove,
                "live": refused.live,
            }
            self.state.finish_run(report.run_id, datetime.now(UTC).isoformat(), summary)
            raise
        except _Cancelled:
            report.cancelled = True
            # Committed documents stay; whatever was written and not switched live goes.
            self.store.delete(_pending_filter(source.id))
            self._finish(report, started)
            raise IngestCancelled(
                f"the ingest of source {source.id!r} was cancelled: {report.documents} documents "
                f"were written and are live, the rest was not; ingest the source again to finish "
                "(unchanged documents are not redone)",
                report,
            ) from None
        self._finish(report, started)
        return report

    def _run(
        self,
        source: Source,
        paths: Iterable[Path] | None,
        progress: Callable[[str, int, int], None] | None,
        force: bool,
        cancel: threading.Event | None,
        report: IngestReport,
        allow_mass_removal: bool = False,
    ) -> None:
        full_scan = paths is None
        known = self.state.documents(source.id, version=self.index_version)
        # Chunks that a crashed run left pending are never visible; clear them first.
        self.store.delete(_pending_filter(source.id))
        with ExitStack() as stack:
            crawl: WebCrawl | None = None
            if source.kind == "web":
                if not full_scan:
                    raise SourceError(
                        f"source {source.id!r} is a web source: it is synced whole "
                        f"(`ragwall ingest {source.id}`), not by paths"
                    )
                check_web_host(source, self.settings.web_hosts)
                crawl = stack.enter_context(
                    WebCrawl(
                        source,
                        self.settings,
                        known,
                        self.validators.of(source.id),
                        cancel=cancel,
                        check=lambda: _check(cancel),
                        progress=progress,
                    )
                )
                outcomes: Iterable[Outcome] = crawl
            else:
                outcomes = self._scan(source, paths)
            todo, present, failed_uris = self._sort(source, outcomes, known, force, cancel, report)
            complete = full_scan and (crawl is None or crawl.complete)
            gone = sorted(set(known) - present) if complete else []
            if gone and not allow_mass_removal:
                check_removal(source.id, len(gone), len(known), self.settings)
            for uri in failed_uris:
                self._forget(source.id, uri)
            for uri in gone:
                self.store.delete(_doc_filter(source.id, uri))
                self.state.delete_document(source.id, uri, version=self.index_version)
                report.removed += 1
            self._process(source, todo, report, progress, cancel)
            if crawl is not None:
                report.requests = crawl.requests
                if complete:
                    self.validators.keep_only(source.id, present)

    def _scan(self, source: Source, paths: Iterable[Path] | None) -> Iterator[Outcome]:
        """Each file of a folder or glob source (or each of ``paths``), classified."""
        files = (
            iter_source_files(source)
            if paths is None
            else sorted({Path(os.path.abspath(p)) for p in paths})  # as named: links kept
        )
        roots = self.settings.source_root_paths()
        for path in files:
            yield scan_file(path, roots, self.settings.max_file_bytes)

    def _sort(
        self,
        source: Source,
        outcomes: Iterable[Outcome],
        known: dict[str, DocumentRecord],
        force: bool,
        cancel: threading.Event | None,
        report: IngestReport,
    ) -> tuple[list[Found], set[str], list[str]]:
        """What to parse, what the source holds now (URIs), and which failed (forgotten after
        the mass-removal check: it changes nothing)."""
        todo: list[Found] = []
        present: set[str] = set()
        failed_uris: list[str] = []
        for found in outcomes:
            _check(cancel)
            if isinstance(found, Unchanged):  # a web page's 304
                present.add(found.uri)
                report.unchanged += 1
                continue
            if isinstance(found, Skipped):
                report.skipped.append(found)
                continue
            if isinstance(found, Failure):
                report.failed.append(found)
                uri = found.target or found.path
                present.add(uri)
                if not found.kept:
                    failed_uris.append(uri)
                continue
            present.add(found.uri)
            record = known.get(found.uri)
            if (
                not force
                and record
                and record.sha256 == found.sha256
                and record.fingerprint == self.fingerprint
            ):
                report.unchanged += 1
                self._keep_validators(source, found)
                continue
            todo.append(found)
        return todo, present, failed_uris

    def _keep_validators(self, source: Source, found: Found) -> None:
        if source.kind == "web":
            self.validators.put(source.id, found.uri, found.sha256, found.etag, found.last_modified)

    def _finish(self, report: IngestReport, started: datetime) -> None:
        t = time.perf_counter()
        if (report.documents or report.removed) and not report.cancelled:
            self.store.optimize()
        self.store.flush()
        report._add("index", t)
        finished = datetime.now(UTC)
        report.seconds = (finished - started).total_seconds()
        self.state.finish_run(report.run_id, finished.isoformat(), report.summary())

    def remove_source(self, source_id: str) -> int:
        """Delete every chunk and record of a source; returns how many chunks went."""
        n = self.drop_source_chunks(source_id)
        self.state.remove_source(source_id)
        self.validators.forget(source_id)
        return n

    def drop_source_chunks(self, source_id: str) -> int:
        """Delete a source's chunks and records in this version only (the source stays)."""
        flt = Filter(must=(Match(Key.SOURCE_ID, source_id),))
        n = self.store.count(flt)
        if n:
            self.store.delete(flt)
        self.state.drop_documents(version=self.index_version, source_id=source_id)
        return n

    # -- internals -------------------------------------------------------------------------
    def _process(
        self,
        source: Source,
        todo: list[Found],
        report: IngestReport,
        progress: Callable[[str, int, int], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        if not todo:
            return
        s = self.settings
        chunk_config = {
            "max_tokens": min(s.chunk_max_tokens, self.encoder.max_seq_length),
            "overlap_tokens": s.chunk_overlap_tokens,
            "max_chars": s.chunk_max_chars,
            "new_after_chars": s.chunk_new_after_chars,
            "combine_under_chars": s.chunk_combine_under_chars,
        }
        buffer: list[_Pending] = []
        buffered_chunks = 0
        done = 0
        # Leaving this block by an exception (a cancel included) kills the workers mid-parse.
        with ParserPool(s, self.model_path, chunk_config) as pool:
            # A bounded window of documents parses ahead of the embedder: parsing overlaps
            # embedding, and memory stays bounded however large the run.
            window: deque = deque()
            queue = iter(todo)
            for found in itertools.islice(queue, PARSE_AHEAD):
                window.append((found, pool.submit(found.path)))
            while window:
                found, future = window.popleft()
                nxt = next(queue, None)
                if nxt is not None:
                    window.append((nxt, pool.submit(nxt.path)))
                t = time.perf_counter()
                result = pool.wait(future, cancel)
                report._add("parse_wait", t)
                if result is None:
                    raise _Cancelled
                path = str(found.path)
                if not result["ok"]:
                    target = found.uri if found.uri != path else None
                    report.failed.append(
                        Failure(path, result["reason"], result["message"], target=target)
                    )
                    self._forget(source.id, found.uri)
                else:
                    report.notes += [Note(path, note) for note in result.get("notes", ())]
                    buffer.append(_Pending(found, result))
                    buffered_chunks += len(result["chunks"])
                done += 1
                if progress:
                    progress("ingest", done, len(todo))
                if buffered_chunks >= s.embed_buffer_chunks:
                    self._flush(source, buffer, report, cancel)
                    buffer, buffered_chunks = [], 0
                    if progress:  # chunks written: ``self.current.chunks`` moved
                        progress("write", done, len(todo))
            self._flush(source, buffer, report, cancel)
            if progress:
                progress("write", done, len(todo))

    def _forget(self, source_id: str, uri: str) -> None:
        """A document that now fails leaves nothing of itself in the index."""
        self.store.delete(_doc_filter(source_id, uri))
        self.state.delete_document(source_id, uri, version=self.index_version)

    def _flush(
        self,
        source: Source,
        buffer: list[_Pending],
        report: IngestReport,
        cancel: threading.Event | None = None,
    ) -> None:
        if not buffer:
            return
        self._embed_and_write(source, buffer, report, cancel)
        every = self.settings.optimize_every_chunks
        if every and report.chunks - self._optimized_at >= every:
            # Index what has been written so far and truncate the WAL: the index build then
            # never holds more than `every` new chunks (plus one segment) in memory at once.
            t = time.perf_counter()
            self.store.optimize()
            self.store.flush()
            report._add("index", t)
            self._optimized_at = report.chunks

    def _embed_and_write(
        self,
        source: Source,
        buffer: list[_Pending],
        report: IngestReport,
        cancel: threading.Event | None = None,
    ) -> None:
        texts = [c["text"] for p in buffer for c in p.parsed["chunks"]]
        t = time.perf_counter()
        vectors = self._embed(texts, cancel)
        report._add("embed", t)
        t = time.perf_counter()
        signals: list[Signals] = []
        for lo in range(0, len(texts), DETECT_BATCH):  # rules and the model's own pass
            _check(cancel)
            signals += self.detector.score_texts(texts[lo : lo + DETECT_BATCH])
        report._add("detect", t)
        corpus_terms, corpus_chunks = self.state.corpus_terms(version=self.index_version)
        new_terms = sum(len(c["terms"]) for p in buffer for c in p.parsed["chunks"])
        avg_len = (corpus_terms + new_terms) / max(corpus_chunks + len(texts), 1)
        offset = 0
        for pending in buffer:
            _check(cancel)  # between documents: each write-and-commit runs whole
            n = len(pending.parsed["chunks"])
            self._write_document(
                source,
                pending,
                vectors[offset : offset + n],
                signals[offset : offset + n],
                avg_len,
                report,
            )
            offset += n

    def _embed(self, texts: list[str], cancel: threading.Event | None = None) -> np.ndarray:
        """Chunk vectors, a batch at a time; ``cancel`` is checked between batches."""
        size = max(1, self.encoder.batch_size)
        parts = []
        for lo in range(0, len(texts), size):
            _check(cancel)
            parts.append(self.encoder.encode(texts[lo : lo + size]))
        if not parts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        return np.concatenate(parts)

    def _write_document(
        self,
        source: Source,
        pending: _Pending,
        vectors: np.ndarray,
        signals: list[Signals],
        avg_len: float,
        report: IngestReport,
    ) -> None:
        s = self.settings
        found = pending.found
        uri = found.uri
        doc_version = hashlib.sha256(f"{found.sha256}:{self.fingerprint}".encode()).hexdigest()[:24]
        now = datetime.now(UTC).isoformat()
        prior = s.trust_priors[source.trust_tier]
        parsed = pending.parsed
        chunks = parsed["chunks"]
        hidden = [HiddenSegment(**h) for h in parsed.get("hidden", ())]
        if hidden:  # what the page's markup hides, matched against these chunks
            t = time.perf_counter()
            signals = self.detector.score_chunks([c["text"] for c in chunks], hidden, signals)
            report._add("detect", t)
        t = time.perf_counter()
        points = []
        modified = datetime.fromtimestamp(found.modified_at or time.time(), UTC)
        for chunk, vector, sig in zip(chunks, vectors, signals, strict=True):
            sparse = bm25_document_vector(chunk["terms"], avg_len, s.bm25_k1, s.bm25_b)
            payload = ChunkPayload(
                text=chunk["text"],
                state=PENDING,
                source_id=source.id,
                doc_uri=uri,
                doc_name=_display_name(found, source),
                doc_sha256=found.sha256,
                doc_version=doc_version,
                doc_filetype=parsed["filetype"],
                chunk_index=chunk["index"],
                chunk_count=len(chunks),
                char_start=chunk["char_start"],
                char_end=chunk["char_end"],
                page_start=chunk["page_start"],
                page_end=chunk["page_end"],
                title_path=chunk["title_path"],
                element_types=chunk["element_types"],
                token_count=chunk["token_count"],
                parser=parsed["parser"],
                parser_version=parsed["parser_version"],
                embedding_model=s.embedding_model,
                ingest_run_id=report.run_id,
                ingested_at=now,
                doc_modified_at=modified.isoformat(),
                doc_modified_ts=int(modified.timestamp()),
                trust_tier=source.trust_tier,
                trust_prior=prior,
                trust=content_trust(prior, sig, s.injection_threshold),
                injection_score=sig.injection_score,
                injection_reasons=sig.injection_reasons,
                injection_span=list(sig.injection_span) if sig.injection_span else None,
                hidden_text=hidden_flag(sig.hidden_text),
                hidden_reasons=sig.hidden_reasons,
                groups=list(source.groups),
            )
            points.append(
                PointIn(
                    id=point_id(source.id, uri, doc_version, chunk["index"]),
                    dense=vector,
                    sparse=SparseVec(sparse.indices, sparse.values),
                    payload=payload,
                )
            )
        for start in range(0, len(points), UPSERT_BATCH):
            self.store.upsert(points[start : start + UPSERT_BATCH])
        doc = _doc_filter(source.id, uri)
        # Commit: the new version goes live, then the old one goes.
        self.store.set_payload(
            {Key.STATE: LIVE}, doc & Filter(must=(Match(Key.DOC_VERSION, doc_version),))
        )
        self.store.delete(doc & Filter(must_not=(Match(Key.DOC_VERSION, doc_version),)))
        self.state.put_document(
            DocumentRecord(
                source_id=source.id,
                uri=uri,
                sha256=found.sha256,
                version=doc_version,
                fingerprint=self.fingerprint,
                size=found.size,
                chunks=len(chunks),
                terms=sum(len(c["terms"]) for c in chunks),
                run_id=report.run_id,
                ingested_at=now,
            ),
            version=self.index_version,
        )
        self._keep_validators(source, found)
        report.documents += 1
        report.chunks += len(chunks)
        report._add("write", t)


DETECTOR_VERSION = "defend-4"  # bump when the rules change: documents are then re-scored

RULES_ONLY = {"none", "off"}  # RAGWALL_INJECTION_MODEL values that turn the model off


def make_detector(settings: Settings) -> Detector:
    """Rules always; the injection model (``RAGWALL_INJECTION_MODEL``, else the packaged one)."""
    from ragwall.defend.model import load_model  # deferred: onnxruntime

    chosen = str(settings.injection_model) if settings.injection_model else None
    model = None if chosen and chosen.lower() in RULES_ONLY else load_model(chosen)
    return Detector(model, flag_at=settings.injection_threshold)


def detector_fingerprint(settings: Settings) -> str:
    """What decides the injection scores: the rules' version, the model's card, the threshold."""
    from ragwall.defend.model import PACKAGED_MODEL  # deferred: onnxruntime

    card = Path(settings.injection_model or PACKAGED_MODEL) / "card.json"
    digest = hashlib.sha256(card.read_bytes()).hexdigest()[:12] if card.is_file() else "none"
    return f"{DETECTOR_VERSION}:{digest}:{settings.injection_threshold}"


def check_removal(source_id: str, gone: int, live: int, settings: Settings) -> None:
    """Raise :class:`MassRemoval` when removing ``gone`` of ``live`` documents is a mass
    removal (module docstring)."""
    if gone <= settings.mass_removal_floor or gone <= settings.max_removal_share * live:
        return
    raise MassRemoval(
        f"the sync of source {source_id!r} would remove {gone} of its {live} live documents "
        f"({gone / live:.0%}, over RAGWALL_MAX_REMOVAL_SHARE={settings.max_removal_share:g}); "
        "nothing was removed or changed. Check that the source is reachable as a whole (a "
        "mount, a share's permissions, a sitemap); if the documents were removed on purpose, "
        f"run `ragwall ingest {source_id} --allow-mass-removal`",
        source_id,
        gone,
        live,
    )


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise _Cancelled


def _pending_filter(source_id: str) -> Filter:
    return Filter(must=(Match(Key.SOURCE_ID, source_id), Match(Key.STATE, PENDING)))


def _display_name(found: Found, source: Source) -> str:
    """The document's path relative to its source folder (where it resolves inside it); a web
    page's URL."""
    if source.kind == "web":
        return found.uri
    if source.kind == "folder":
        try:
            return str(Path(found.uri).relative_to(source.location))
        except ValueError:
            pass
    return found.path.name
