"""The ingest run: scan a source, skip what is unchanged, parse, chunk, embed, write, commit.

Writes are crash-safe per document. A document's new chunks are written with ``state="pending"``
(retrieval only reads ``state="live"``), then switched live in one filtered update, and only then
are its older chunks deleted; the registry is updated last. A crash at any step leaves either the
old or the new version readable (for an instant, both), never a part of one, and the next run
removes stale pending chunks and redoes the document.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from pebble import ProcessPool
from pebble.common import ProcessExpired

from ragwall.defend.detect import Detector, content_trust
from ragwall.defend.hidden_html import HiddenSegment
from ragwall.embed import DenseEncoder, resolve_model_path
from ragwall.ingest.sources import Source, iter_source_files
from ragwall.ingest.state import DocumentRecord, State
from ragwall.payload import LIVE, PENDING, ChunkPayload, Key
from ragwall.retrieval.sparse import bm25_document_vector
from ragwall.retrieval.store import Filter, Match, PointIn, SparseVec, Store
from ragwall.settings import Settings, within_roots

POINT_NAMESPACE = uuid.UUID("6f1c9a5e-3b0d-4d7e-9a51-7c2f0e8b4a11")
UPSERT_BATCH = 256
PARSE_AHEAD = 16  # documents parsed ahead of the embedder


@dataclass
class Note:
    path: str
    note: str


@dataclass
class Failure:
    path: str
    reason: str
    message: str


@dataclass
class IngestReport:
    run_id: str
    source_id: str
    documents: int = 0  # documents (re)indexed by this run
    chunks: int = 0  # chunks written by this run
    unchanged: int = 0
    removed: int = 0
    failed: list[Failure] = field(default_factory=list)
    #: Documents indexed with something left out (an unreadable attachment, irregular rows).
    notes: list[Note] = field(default_factory=list)
    seconds: float = 0.0
    #: Wall seconds the main process spent per stage: waiting for the parser, embedding, scoring
    #: for injection, writing (upserts and commits), building the index (optimize and flush).
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def _add(self, stage: str, since: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + (
            time.perf_counter() - since
        )

    def summary(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "chunks": self.chunks,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": [
                {"path": f.path, "reason": f.reason, "message": f.message} for f in self.failed
            ],
            "notes": [{"path": n.path, "note": n.note} for n in self.notes],
        }


@dataclass
class _Pending:
    path: Path
    sha256: str
    size: int
    parsed: dict[str, Any]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        state: State,
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
        self.detector = make_detector(settings, encoder)
        self._optimized_at = 0
        self.current: IngestReport | None = None

    # -- public ----------------------------------------------------------------------------
    def ingest(
        self,
        source: Source,
        paths: Iterable[Path] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        force: bool = False,
    ) -> IngestReport:
        """Bring the index in line with ``source`` (or with just ``paths``, a one-off ingest).

        A full-source run also removes documents that have disappeared from the source.
        ``progress(stage, done, total)`` is called as documents complete. ``force`` re-processes
        documents whose bytes and pipeline are unchanged (after a parser or detector fix).
        """
        started = datetime.now(UTC)
        report = IngestReport(run_id=uuid.uuid4().hex[:16], source_id=source.id)
        self.current = report  # what the run has done so far (for progress)
        self._optimized_at = 0
        self.state.start_run(report.run_id, source.id, started.isoformat())
        full_scan = paths is None
        files = (
            iter_source_files(source) if full_scan else sorted({Path(p).resolve() for p in paths})
        )
        known = self.state.documents(source.id, version=self.index_version)

        # Chunks that a crashed run left pending are never visible; clear them first.
        self.store.delete(Filter(must=(Match(Key.SOURCE_ID, source.id), Match(Key.STATE, PENDING))))

        todo: list[tuple[Path, str, int]] = []
        roots = self.settings.source_root_paths()
        for path in files:
            uri = str(path.resolve())
            if roots and not within_roots(Path(uri), roots):
                report.failed.append(
                    Failure(
                        uri,
                        "outside_source_roots",
                        "the file resolves outside RAGWALL_SOURCE_ROOTS (a link out of the "
                        "source?); it was not read",
                    )
                )
                continue
            try:
                size = path.stat().st_size
                sha = file_sha256(path)
            except OSError as exc:
                report.failed.append(Failure(uri, "unreadable", f"cannot read file: {exc}"))
                continue
            record = known.get(uri)
            if (
                not force
                and record
                and record.sha256 == sha
                and record.fingerprint == self.fingerprint
            ):
                report.unchanged += 1
                continue
            todo.append((path, sha, size))

        if full_scan:
            present = {str(p.resolve()) for p in files}
            for uri in sorted(set(known) - present):
                self.store.delete(_doc_filter(source.id, uri))
                self.state.delete_document(source.id, uri, version=self.index_version)
                report.removed += 1

        self._process(source, todo, report, progress)
        t = time.perf_counter()
        if report.documents or report.removed:
            self.store.optimize()
        self.store.flush()
        report._add("index", t)
        finished = datetime.now(UTC)
        report.seconds = (finished - started).total_seconds()
        self.state.finish_run(report.run_id, finished.isoformat(), report.summary())
        return report

    def remove_source(self, source_id: str) -> int:
        """Delete every chunk and record of a source; returns how many chunks went."""
        n = self.drop_source_chunks(source_id)
        self.state.remove_source(source_id)
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
        todo: list[tuple[Path, str, int]],
        report: IngestReport,
        progress: Callable[[str, int, int], None] | None,
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
        ctx = multiprocessing.get_context("spawn")
        buffer: list[_Pending] = []
        buffered_chunks = 0
        done = 0
        with ProcessPool(
            max_workers=s.parse_workers, context=ctx, initializer=_init_worker
        ) as pool:

            def submit(item: tuple[Path, str, int]):  # noqa: ANN202 - a pebble ProcessFuture
                return pool.schedule(
                    _parse_job,
                    args=(str(item[0]), self.model_path, chunk_config, s.max_file_bytes),
                    timeout=s.parse_timeout_s,
                )

            # A bounded window of documents parses ahead of the embedder: parsing overlaps
            # embedding, and memory stays bounded however large the run.
            window: deque = deque()
            queue = iter(todo)
            for item in itertools.islice(queue, PARSE_AHEAD):
                window.append((item, submit(item)))
            while window:
                (path, sha, size), future = window.popleft()
                nxt = next(queue, None)
                if nxt is not None:
                    window.append((nxt, submit(nxt)))
                uri = str(path.resolve())
                t = time.perf_counter()
                try:
                    result = future.result()
                except FutureTimeout:
                    result = {
                        "ok": False,
                        "reason": "timeout",
                        "message": f"parsing took over {s.parse_timeout_s:g} s (RAGWALL_PARSE_TIMEOUT_S)",
                    }
                except ProcessExpired as exc:
                    result = {
                        "ok": False,
                        "reason": "parser_crashed",
                        "message": f"the parser process died (exit code {exc.exitcode})",
                    }
                except Exception as exc:  # anything else raised inside the worker
                    result = {
                        "ok": False,
                        "reason": "parser_error",
                        "message": f"{type(exc).__name__}: {exc}",
                    }
                report._add("parse_wait", t)
                if not result["ok"]:
                    report.failed.append(Failure(uri, result["reason"], result["message"]))
                    self._forget(source.id, uri)
                else:
                    report.notes += [Note(uri, note) for note in result.get("notes", ())]
                    buffer.append(_Pending(path, sha, size, result))
                    buffered_chunks += len(result["chunks"])
                done += 1
                if progress:
                    progress("ingest", done, len(todo))
                if buffered_chunks >= s.embed_buffer_chunks:
                    self._flush(source, buffer, report)
                    buffer, buffered_chunks = [], 0
                    if progress:  # chunks written: ``self.current.chunks`` moved
                        progress("write", done, len(todo))
            self._flush(source, buffer, report)
            if progress:
                progress("write", done, len(todo))

    def _forget(self, source_id: str, uri: str) -> None:
        """A document that now fails leaves nothing of itself in the index."""
        self.store.delete(_doc_filter(source_id, uri))
        self.state.delete_document(source_id, uri, version=self.index_version)

    def _flush(self, source: Source, buffer: list[_Pending], report: IngestReport) -> None:
        if not buffer:
            return
        self._embed_and_write(source, buffer, report)
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
        self, source: Source, buffer: list[_Pending], report: IngestReport
    ) -> None:
        texts = [c["text"] for p in buffer for c in p.parsed["chunks"]]
        t = time.perf_counter()
        detect_before = report.stage_seconds.get("detect", 0.0)
        vectors, model_scores = self._embed(texts, report)
        report._add("embed", t)  # less the model's own time, which is ``detect``'s
        report.stage_seconds["embed"] -= report.stage_seconds.get("detect", 0.0) - detect_before
        corpus_terms, corpus_chunks = self.state.corpus_terms(version=self.index_version)
        new_terms = sum(len(c["terms"]) for p in buffer for c in p.parsed["chunks"])
        avg_len = (corpus_terms + new_terms) / max(corpus_chunks + len(texts), 1)
        offset = 0
        for pending in buffer:
            n = len(pending.parsed["chunks"])
            scores = model_scores[offset : offset + n] if model_scores else None
            self._write_document(
                source, pending, vectors[offset : offset + n], scores, avg_len, report
            )
            offset += n

    def _embed(self, texts: list[str], report: IngestReport) -> tuple[np.ndarray, list | None]:
        """Chunk vectors, and the injection model's scores where it reads this encoder's states.

        The model reads the hidden states of the embedding pass itself, batch by batch, so it
        costs only its own layers (its time is reported as the ``detect`` stage).
        """
        detector = self.detector
        if not detector.reads_states_of(self.encoder):
            return self.encoder.encode(texts), None
        vectors = np.zeros((len(texts), self.encoder.dim), dtype=np.float32)
        scores: list = [None] * len(texts)
        for idx, vecs, states in self.encoder.iter_with_states(texts, detector.model.tap_layer):
            vectors[idx] = vecs
            t = time.perf_counter()
            for i, score in zip(idx, detector.model_scores(states), strict=True):
                scores[i] = score
            report._add("detect", t)
        return vectors, scores

    def _write_document(
        self,
        source: Source,
        pending: _Pending,
        vectors: np.ndarray,
        model_scores: list | None,
        avg_len: float,
        report: IngestReport,
    ) -> None:
        s = self.settings
        uri = str(pending.path.resolve())
        doc_version = hashlib.sha256(f"{pending.sha256}:{self.fingerprint}".encode()).hexdigest()[
            :24
        ]
        now = datetime.now(UTC).isoformat()
        prior = s.trust_priors[source.trust_tier]
        parsed = pending.parsed
        chunks = parsed["chunks"]
        hidden = [HiddenSegment(**h) for h in parsed.get("hidden", ())]
        t = time.perf_counter()
        signals = self.detector.score_chunks([c["text"] for c in chunks], model_scores, hidden)
        report._add("detect", t)
        t = time.perf_counter()
        points = []
        for chunk, vector, sig in zip(chunks, vectors, signals, strict=True):
            sparse = bm25_document_vector(chunk["terms"], avg_len, s.bm25_k1, s.bm25_b)
            payload = ChunkPayload(
                text=chunk["text"],
                state=PENDING,
                source_id=source.id,
                doc_uri=uri,
                doc_name=_display_name(pending.path, source),
                doc_sha256=pending.sha256,
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
                trust_tier=source.trust_tier,
                trust_prior=prior,
                trust=content_trust(prior, sig, s.injection_threshold),
                injection_score=sig.injection_score,
                injection_reasons=sig.injection_reasons,
                injection_span=list(sig.injection_span) if sig.injection_span else None,
                hidden_text=sig.hidden_text,
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
                sha256=pending.sha256,
                version=doc_version,
                fingerprint=self.fingerprint,
                size=pending.size,
                chunks=len(chunks),
                terms=sum(len(c["terms"]) for c in chunks),
                run_id=report.run_id,
                ingested_at=now,
            ),
            version=self.index_version,
        )
        report.documents += 1
        report.chunks += len(chunks)
        report._add("write", t)


DETECTOR_VERSION = "defend-4"  # bump when the rules change: documents are then re-scored


RULES_ONLY = {"none", "off"}  # RAGWALL_INJECTION_MODEL values that turn the model off


def make_detector(settings: Settings, encoder: DenseEncoder | None = None) -> Detector:
    """Rules always; the injection model (``RAGWALL_INJECTION_MODEL``, else the packaged one).

    Where ``encoder`` is the model's backbone it also computes the states the model reads
    outside ingest, so the backbone is loaded once.
    """
    from ragwall.defend.model import load_model

    chosen = str(settings.injection_model) if settings.injection_model else None
    model = None if chosen and chosen.lower() in RULES_ONLY else load_model(chosen)
    detector = Detector(model, flag_at=settings.injection_threshold)
    if encoder is not None and detector.reads_states_of(encoder):
        detector.backbone = encoder
    return detector


def detector_fingerprint(settings: Settings) -> str:
    """What decides the injection scores: the rules' version, the model's card, the threshold."""
    from ragwall.defend.model import PACKAGED_MODEL

    card = Path(settings.injection_model or PACKAGED_MODEL) / "card.json"
    digest = hashlib.sha256(card.read_bytes()).hexdigest()[:12] if card.is_file() else "none"
    return f"{DETECTOR_VERSION}:{digest}:{settings.injection_threshold}"


def _init_worker() -> None:
    """One BLAS thread per parser process (the embedder owns the cores), models loaded early."""
    from threadpoolctl import threadpool_limits

    from ragwall.ingest.worker import warm_up

    threadpool_limits(1)
    warm_up()


def _parse_job(path: str, model_path: str, chunk_config: dict[str, int], max_bytes: int) -> dict:
    from ragwall.ingest.worker import parse_and_chunk

    return parse_and_chunk(path, model_path, chunk_config, max_bytes)


def _display_name(path: Path, source: Source) -> str:
    if source.kind == "folder":
        try:
            return str(path.resolve().relative_to(source.location))
        except ValueError:
            pass
    return path.name
