"""The service layer: the one place that wires settings to the state, keys, audit log, encoder,
store, searcher and ingester, and that performs each operation.

Invariants:

- **Every admin operation appends exactly one audit record**, whichever front door called it (the
  HTTP routes, the CLI, the evals): adding or removing a source, ingesting, quarantining or
  releasing a source or a document, creating or revoking a key. The record is appended after the
  operation took effect, under the caller's ``actor`` (an API key id; ``cli:<user>`` for the
  command line), and never carries a secret (a new key's secret is returned, never recorded).
- **Every retrieve appends one audit record** with the query's hash (never its text), the filters
  and what was returned.
- Heavy resources (the embedding model, the store, whose embedded shard opens in one process
  only) are opened on first use, so an operation that needs neither (``sources add``, ``keys
  create``, quarantine) neither loads a model nor takes the store's lock.
- **The index is a list of versions, one active** (``ragwall.service.index``): every retrieve and
  ingest runs on the version it leased when it began; a reindex builds a new version beside the
  active one and switches under running requests (``ragwall.service.reindex``). One reindex runs
  at a time, and switches (rollback, activate) wait until it ends.

- **Operations are observed here, not in the front doors**: retrieves (per-stage time, hits,
  flags), ingests, quarantine changes and jobs are counted in ``self.metrics`` (served at
  ``/metrics``) and, within an HTTP request, added to its log line; a retrieve's ``request_id``
  is the request's (``ragwall.telemetry.facts``), so the response, its log line and its audit
  record share it.

Front doors stay thin: they translate their input into one call here and shape its result.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ragwall.defend.spotlight import Context, Passage, build_context
from ragwall.embed import DenseEncoder
from ragwall.errors import (
    InvalidRequest,
    JobNotFound,
    ModelError,
    RagwallError,
    ReportNotFound,
    SourceBusy,
    SourceExists,
    SourceOutsideRoots,
    StoreLocked,
    SwitchRefused,
    VersionNotFound,
)
from ragwall.eval.drift import Gates, QuerySet, Snapshot
from ragwall.ingest.pipeline import Ingester, IngestReport
from ragwall.ingest.sources import Source, iter_source_files, make_source, source_base
from ragwall.ingest.state import State
from ragwall.payload import Key
from ragwall.retrieval.search import HybridSearcher, SearchFilter, SearchResult, access_filter
from ragwall.retrieval.store import Filter, Match, Store, Stores
from ragwall.service.audit import AuditLog, VerifyReport
from ragwall.service.datadir import make_private
from ragwall.service.drift import DriftRequest, Side
from ragwall.service.index import ActiveIndex, IndexHandle, parse_version, version_name
from ragwall.service.ingest_jobs import audit_ingest
from ragwall.service.jobs import JobRunner
from ragwall.service.keys import KeyRecord, KeyStore, Principal
from ragwall.service.sessions import ConsoleSession, SessionStore
from ragwall.settings import DefenseConfig, Settings, within_roots
from ragwall.telemetry import Metrics, StateReading, event, tracing
from ragwall.telemetry import current as current_request

log = logging.getLogger("ragwall.service")

_SHA256 = re.compile(r"[0-9a-f]{64}")
QUARANTINE_KINDS: tuple[str, ...] = ("source", "document")


class _WriteLock:
    """Many ingests at once (shared), or one reindex replay alone (exclusive)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._exclusive = True
            self._cond.wait_for(lambda: self._shared == 0)
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


def cli_actor() -> str:
    """The audit actor for the command line: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli"


@dataclass(frozen=True)
class SourceSummary:
    """A registered source with what it holds now."""

    source: Source
    documents: int
    chunks: int


@dataclass(frozen=True)
class RetrieveParams:
    """One retrieve, as any front door asks for it. ``None`` means "the server's default"."""

    query: str
    filters: SearchFilter = SearchFilter()
    top_k: int = 8
    candidates: int = 30
    fusion: str = "rrf"
    rerank: bool | None = None
    defenses: bool | None = None
    policy: str | None = None
    context: bool = False
    max_context_tokens: int = 2000


@dataclass(frozen=True)
class Retrieval:
    """What a retrieve found, and how it was served."""

    request_id: str
    index_version: str
    result: SearchResult
    rerank_requested: bool
    reranker_model: str | None
    defenses: bool
    policy: str | None
    context: Context | None


class Service:
    """Ragwall's operations over one data directory.

    Parameters:
        settings: every tunable; ``Settings()`` (the ``RAGWALL_*`` environment) when omitted.
        encoder: an already-loaded encoder to share (tests, evals); else loaded on first use.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, settings: Settings | None = None, encoder: DenseEncoder | None = None):
        self.settings = settings or Settings()
        if encoder is not None:
            self.__dict__["encoder"] = encoder  # pre-fills the cached property
        make_private(self.settings.data_dir, self.settings.audit_path)  # owner-only, before use
        self.state = State(self.settings.state_path)
        self.keys = KeyStore(self.settings.state_path)
        self.console_sessions = SessionStore(self.settings.state_path)
        self.audit = AuditLog.for_settings(self.settings)
        self.stores = Stores(self.settings)
        self.writes = _WriteLock()
        self.jobs = JobRunner(self)
        self.metrics = Metrics(self._metrics_reading)
        self._encoders: dict[str, DenseEncoder] = {}
        self._query_encoders: dict[str, Any] = {}
        self._owner_lock: FileLock | None = None
        self._audit_checker: Any = None
        self._refusal_lock = threading.Lock()
        self._refusal_window = time.monotonic()
        self._refusals_in_window = self._refusals_suppressed = 0

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        closers = [self.jobs.close]
        if "index" in self.__dict__:
            closers.append(self.index.close)
        closers += [self.stores.close, self.audit.close, self.console_sessions.close]
        closers += [self.keys.close, self.state.close]
        if self._owner_lock is not None:
            closers.append(self._owner_lock.release)
        for closer in closers:
            try:
                closer()
            except Exception:  # closing must not mask what the caller is unwinding
                log.exception("error while closing")

    # -- resources, opened on first use ---------------------------------------------------
    @cached_property
    def encoder(self) -> DenseEncoder:
        s = self.settings
        return DenseEncoder(s.embedding_model, s.embedding_device, s.embed_batch_size)

    def encoder_for(self, model_id: str) -> DenseEncoder:
        """The encoder for an embedding model (the environment's is :attr:`encoder`); loaded once.

        Raises :class:`ModelError` when it does not load."""
        if model_id == self.settings.embedding_model:
            return self.encoder
        if model_id not in self._encoders:
            s = self.settings
            encoder = DenseEncoder(model_id, s.embedding_device, s.embed_batch_size)
            _ = encoder.dim  # load now: a bad model fails here, not mid-build
            self._encoders[model_id] = encoder
        return self._encoders[model_id]

    @cached_property
    def index(self) -> ActiveIndex:
        """The active index version (the registry migrated or created on first use; jobs whose
        process died marked failed)."""
        if not self.settings.qdrant_url:
            self._own_data_dir()
        index = ActiveIndex(
            self.settings, self.state, self.stores, self.encoder_for, self._make_searcher
        )
        index.ensure_registry()
        self.jobs.recover(index)
        return index

    def _own_data_dir(self) -> None:
        """Embedded: one process serves a data dir (its shards open in one process only).
        Taken before any model loads, so a second process is told in milliseconds."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.settings.data_dir / "index.lock"), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout as exc:
            raise StoreLocked(
                f"the embedded index in {self.settings.data_dir} is open in another process (a "
                "running `ragwall` server or ingest). Stop it, send the request to the server "
                "(HTTP, or the CLI's --url), or point RAGWALL_QDRANT_URL at a Qdrant server to "
                "share one index between processes."
            ) from exc
        self._owner_lock = lock

    @property
    def store(self) -> Store:
        """The active version's store."""
        return self.index.current().store

    @property
    def ingester(self) -> Ingester:
        """The active version's ingester."""
        return self.index.current().ingester

    @property
    def searcher(self) -> HybridSearcher:
        """The active version's searcher."""
        return self.index.current().searcher

    @cached_property
    def reranker(self):  # noqa: ANN201 - a Reranker or None
        if not self.settings.reranker_model:
            return None
        from ragwall.rerank import load_reranker

        return load_reranker(
            self.settings.reranker_model, cache_dir=self.settings.data_dir / "models"
        )

    def _make_searcher(self, store: Store, encoder: DenseEncoder) -> HybridSearcher:
        return HybridSearcher(store, encoder, self.reranker, self._query_encoder(encoder))

    def _query_encoder(self, encoder: DenseEncoder):  # noqa: ANN202 - a QueryEncoder or None
        """The ONNX int8 query encoder when configured and faithful, else None (PyTorch)."""
        if self.settings.query_encoder != "onnx":
            return None
        if encoder.model_id not in self._query_encoders:
            from ragwall.retrieval.onnx_embed import load_query_encoder

            try:
                found = load_query_encoder(encoder, self.settings.data_dir / "models")
            except ModelError as exc:
                log.warning("queries will be embedded with PyTorch: %s", exc)
                found = None
            self._query_encoders[encoder.model_id] = found
        return self._query_encoders[encoder.model_id]

    # -- sources ----------------------------------------------------------------------------
    def add_source(
        self,
        actor: str,
        source_id: str,
        path: str,
        trust: str = "internal",
        groups: Sequence[str] = (),
        *,
        exist_ok: bool = False,
    ) -> Source:
        """Register a source.

        Parameters:
            actor: who asks, for the audit record (an API key id, ``cli:<user>``).
            source_id: a short id (letters, digits, ``-``, ``_``).
            path: a folder, or a glob such as ``docs/**/*.md``.
            trust: the trust tier: ``verified``, ``internal``, ``external`` or ``untrusted``.
            groups: the access groups whose keys may see the source's chunks. A source with no
                groups is seen only by keys without groups (unrestricted keys): a group-bound
                key never sees it.
            exist_ok: an identical registration succeeds without a change (and without an audit
                record: nothing happened); a different one still raises :class:`SourceExists`.
        """
        source = make_source(source_id, path, trust, list(groups))
        roots = self.settings.source_root_paths()
        if roots and not within_roots(source_base(source), roots):
            raise SourceOutsideRoots(
                f"{path!r} is outside the allowed source roots "
                f"({', '.join(str(r) for r in roots)}); set RAGWALL_SOURCE_ROOTS to allow it"
            )
        try:
            self.state.add_source(source)
        except SourceExists:
            existing = self.state.get_source(source_id)
            if exist_ok and _same_source(existing, source):
                return existing
            raise
        self.audit.append("source.add", actor, source=source.model_dump())
        return source

    def list_sources(self) -> list[SourceSummary]:
        """The sources with what the active version holds of each (a registry read: it needs
        neither the model nor the index, so it works beside a running server)."""
        active = self.state.active_version()
        counts = self.state.version_counts(version=active.id if active else 1)
        return [SourceSummary(s, *counts.get(s.id, (0, 0))) for s in self.state.list_sources()]

    def remove_source(self, actor: str, source_id: str) -> int:
        """Delete a source and every chunk it contributed; returns how many chunks went.

        Raises :class:`SourceNotFound` for an unknown source, :class:`SourceBusy` while it is
        being ingested (the ingest's lock, across processes)."""
        self.state.get_source(source_id)  # SourceNotFound before the store is opened
        with self._ingest_lock(source_id), self.writes.shared(), self.index.lease() as active:
            others = [
                v for v in self.state.versions() if v.state == "ready" and v.id != active.version
            ]
            n = active.ingester.remove_source(source_id)
        # A rollback must not bring a removed source back: drop it from the other versions too.
        for record in others:
            try:
                store = self.stores.open(record.location, active.encoder.dim)
            except RagwallError as exc:
                log.warning("could not remove %s from version %s: %s", source_id, record.id, exc)
                continue
            try:
                store.delete(Filter(must=(Match(Key.SOURCE_ID, source_id),)))
                store.flush()
            finally:
                store.close()
        self.audit.append("source.remove", actor, source_id=source_id, chunks=n)
        return n

    def ingest(
        self,
        actor: str,
        source_id: str,
        paths: Iterable[Path] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        force: bool = False,
        cancel: threading.Event | None = None,
        *,
        claimed: bool = False,
        job_id: str | None = None,
    ) -> IngestReport:
        """Ingest a source into the active index version (idempotent, incremental); with
        ``paths``, just those files into it. Background ingests are jobs: :meth:`start_ingest`.

        ``progress(stage, done, total)`` is called as documents complete. A document that fails
        is reported in the result's ``failed`` and leaves the index as it was for that document.
        ``force`` re-processes documents whose bytes are unchanged (after a parser or detector
        change for this source), each with the usual pending→live swap. ``cancel``, once set,
        stops the run (its parser workers killed, its pending chunks cleared) with
        ``IngestCancelled``. ``claimed``: the caller holds the source (:meth:`claim_source`), as
        an ingest job does from the moment it is accepted. Whatever its end (done, failed,
        cancelled) the ingest appends one ``source.ingest`` record with its ``outcome``.
        """
        source = self.state.get_source(source_id)
        held = nullcontext() if claimed else self._ingest_lock(source_id)
        with held, self.writes.shared(), self.index.lease() as active:
            try:
                report = active.ingester.ingest(
                    source, paths=paths, progress=progress, force=force, cancel=cancel
                )
            except BaseException as exc:
                self.metrics.ingest({}, ok=False)
                event(log, "ingest failed", logging.WARNING, source_id=source_id, error=str(exc))
                audit_ingest(self.audit, actor, source_id, active.name, force, paths, job_id, exc)
                raise
        summary = report.summary()
        self.metrics.ingest(summary, ok=True)
        event(
            log,
            "ingest finished",
            source_id=source_id,
            run_id=report.run_id,
            index_version=active.name,
            **{k: summary[k] for k in ("documents", "chunks", "unchanged", "removed")},
            failed=len(report.failed),
        )
        audit_ingest(self.audit, actor, source_id, active.name, force, paths, job_id, report)
        return report

    def start_ingest(
        self,
        actor: str,
        source_id: str,
        force: bool = False,
        idempotency_key: str | None = None,
    ):  # noqa: ANN201 - a JobRecord
        """Ingest a source in the background, as a job (``ragwall.service.ingest_jobs``);
        returns it at once. ``SourceNotFound``, ``SourceBusy`` (the source is being ingested)
        and ``IdempotencyKeyReused`` are raised before anything starts."""
        return self.jobs.start_ingest(actor, source_id, force, idempotency_key)

    def claim_source(self, source_id: str) -> Callable[[], None]:
        """Take the source's ingest lock (one ingest of a source at a time, across threads and
        processes: a file lock in the data dir); returns how to let it go. Raises
        :class:`SourceBusy`, naming the running run, when it is taken."""
        folder = self.settings.data_dir / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder / f"ingest-{source_id}.lock"), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            run = self.state.running_run(source_id)
            raise SourceBusy(
                f"source {source_id!r} is being ingested now (run {run or 'unknown'}); wait for "
                "it to finish, then ingest again if needed",
                run_id=run,
            ) from None
        return lock.release

    @contextmanager
    def _ingest_lock(self, source_id: str) -> Iterator[None]:
        """:meth:`claim_source` for the duration of the block."""
        release = self.claim_source(source_id)
        try:
            yield
        finally:
            release()

    def files_under(self, source_id: str, target: Path) -> list[Path]:
        """The files a one-off ingest of ``target`` (a file or a folder) into a source reads."""
        src = self.state.get_source(source_id)
        if target.is_dir():
            folder = Source(
                id=src.id, kind="folder", location=str(target.resolve()), trust_tier=src.trust_tier
            )
            return list(iter_source_files(folder))
        if target.exists():
            return [target]
        raise InvalidRequest(f"{str(target)!r} does not exist: give a file or a folder")

    # -- quarantine ---------------------------------------------------------------------------
    def set_quarantine(self, actor: str, kind: str, value: str, on: bool, reason: str = "") -> bool:
        """Quarantine (``on``) or release a source or a document; returns whether it changed.

        A source must exist to be quarantined (it may be released after removal); a document
        is named by the sha256 of its bytes.
        """
        if kind not in QUARANTINE_KINDS:
            raise InvalidRequest(f"kind must be one of {QUARANTINE_KINDS}, not {kind!r}")
        if kind == "document" and not _SHA256.fullmatch(value):
            raise InvalidRequest("a document is named by its sha256: 64 lowercase hex digits")
        if kind == "source" and on:
            self.state.get_source(value)
        if on:
            changed = self.state.quarantine(kind, value, reason, datetime.now(UTC).isoformat())
        else:
            changed = self.state.release(kind, value)
        if changed:
            self.metrics.quarantine.labels(kind, "quarantine" if on else "release").inc()
        self.audit.append(
            f"{kind}.{'quarantine' if on else 'release'}",
            actor,
            **{"source_id" if kind == "source" else "doc_sha256": value},
            reason=reason,
            changed=changed,
        )
        return changed

    def quarantine_list(self) -> list[dict[str, str]]:
        return self.state.quarantine_list()

    # -- keys -----------------------------------------------------------------------------------
    def create_key(
        self,
        actor: str,
        scope: str = "retrieve",
        groups: Sequence[str] | None = None,
        name: str = "",
        policy: str | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; returns its secret (shown once, never recorded) and its record."""
        key, record = self.keys.create(scope, list(groups) if groups else None, name, policy)
        self.audit.append(
            "key.create",
            actor,
            created_key_id=record.id,
            scope=record.scope,
            groups=list(record.groups) if record.groups is not None else None,
            name=record.name,
            policy=record.policy,
        )
        return key, record

    def revoke_key(self, actor: str, key_id: str) -> None:
        self.keys.revoke(key_id)
        self.audit.append("key.revoke", actor, revoked_key_id=key_id)

    def authenticate(self, key: str) -> Principal | None:
        return self.keys.authenticate(key)

    def list_keys(self) -> list[KeyRecord]:
        """Every key the registry holds (revoked ones too), without secrets."""
        return self.keys.list()

    def verify_audit(self) -> VerifyReport:
        """Re-hash the audit chain end to end (``AuditLog.verify``)."""
        return self.audit.verify()

    def metrics_text(self) -> bytes:
        """The metrics in the Prometheus text format (``GET /metrics``)."""
        return self.metrics.exposition()

    def warm_up(self) -> None:
        """Open the active index and load its embedding model now (a server before it serves,
        a command before it starts work), so a missing model or a locked index fails here."""
        _ = self.index.current().searcher

    def stop_jobs(self) -> None:
        """Cancel the running jobs and wait for them to clean up (the server stopping)."""
        self.jobs.close()

    # -- retrieve -----------------------------------------------------------------------------
    def defense_config(self, policy: str) -> DefenseConfig:
        """The query-time defenses as the settings describe them, with the sources' history."""
        s = self.settings
        cutoff = datetime.now(UTC) - timedelta(days=s.new_source_days)
        new = frozenset(
            src.id
            for src in self.state.list_sources()
            if datetime.fromisoformat(src.created_at) > cutoff
        )
        return DefenseConfig(
            policy=policy,  # type: ignore[arg-type]
            injection_threshold=s.injection_threshold,
            low_trust=s.low_trust_threshold,
            flood_min=s.flood_min,
            flood_cosine=s.flood_cosine,
            mirror_min_cosine=s.mirror_min_cosine,
            mirror_margin=s.mirror_margin,
            mirror_coverage=s.mirror_coverage,
            trust_weight=s.trust_weight,
            heuristic_tiers=tuple(s.heuristic_tiers),
            new_sources=new,
        )

    def retrieve(self, who: Principal, params: RetrieveParams) -> Retrieval:
        """Search within what ``who`` may see (its groups, minus quarantined content).

        ``params`` fields left ``None`` take the server's settings (rerank, defenses), and the
        policy falls back from the request to the key's to the server's.
        """
        with self.index.lease() as active:
            return self._retrieve(who, params, active)

    def _retrieve(self, who: Principal, params: RetrieveParams, active: IndexHandle) -> Retrieval:
        facts = current_request()
        request_id = facts.request_id if facts is not None else uuid.uuid4().hex
        blocked_sources, blocked_docs = self.state.quarantined()
        flt = access_filter(who.groups, params.filters, blocked_sources, blocked_docs)
        s = self.settings
        want_rerank = s.rerank_by_default if params.rerank is None else params.rerank
        want_defenses = s.defenses_by_default if params.defenses is None else params.defenses
        policy = params.policy or who.policy or s.default_policy
        result = active.searcher.search(
            params.query,
            flt,
            top_k=params.top_k,
            candidates=params.candidates,
            fusion=params.fusion,  # type: ignore[arg-type]
            rrf_k=s.rrf_k,
            fuse=s.fuse_level,
            bm25_weight=s.bm25_weight,
            rerank=want_rerank,
            defenses=self.defense_config(policy) if want_defenses else None,
        )
        context = (
            self._context(result, params.max_context_tokens, active.encoder)
            if params.context
            else None
        )
        audit_start = time.perf_counter()
        with tracing.span("audit"):
            self._audit_retrieve(who, params, request_id, active.name, result)
        timings = {**result.timings_ms, "audit": _ms_since(audit_start)}
        self._observe_retrieve(params, policy if want_defenses else None, result, timings)
        reranker = active.searcher.reranker
        return Retrieval(
            request_id=request_id,
            index_version=active.name,
            result=result,
            rerank_requested=want_rerank,
            reranker_model=reranker.model_id if reranker else None,
            defenses=want_defenses,
            policy=policy if want_defenses else None,
            context=context,
        )

    def _audit_retrieve(
        self,
        who: Principal,
        params: RetrieveParams,
        request_id: str,
        index_version: str,
        result: SearchResult,
    ) -> None:
        self.audit.append(
            "retrieve",
            who.key_id,
            request_id=request_id,
            index_version=index_version,
            query_sha256=hashlib.sha256(params.query.encode()).hexdigest(),
            filters={k: v for k, v in asdict(params.filters).items() if v is not None},
            results=[
                {
                    "id": h.id,
                    "source_id": h.provenance.get("source_id"),
                    "doc_sha256": h.provenance.get("doc_sha256"),
                    "flags": [fl["kind"] for fl in h.flags],
                }
                for h in result.hits
            ],
            dropped=result.dropped,
        )

    def _observe_retrieve(
        self,
        params: RetrieveParams,
        policy: str | None,
        result: SearchResult,
        timings: dict[str, float],
    ) -> None:
        """A retrieve's metrics, and its facts for the request's log line."""
        if not self.settings.telemetry:
            return
        kinds = [kind for h in result.hits for kind in {f["kind"] for f in h.flags}]
        demoted = sum(1 for h in result.hits if h.flags) if policy == "demote" else 0
        self.metrics.retrieve(timings, len(result.hits), kinds, result.dropped, demoted)
        facts = current_request()
        if facts is not None:
            facts.stages_ms.update(timings)
            facts.hits = len(result.hits)
            facts.flags.update(kinds)
            facts.dropped, facts.demoted = result.dropped, demoted
            if self.settings.log_queries:
                facts.query = params.query

    def _context(self, result: SearchResult, max_tokens: int, encoder: DenseEncoder) -> Context:
        tokenizer = encoder.tokenizer

        def count(text: str) -> int:
            # The embedding model's tokenizer: close to, not equal to, an LLM's count.
            return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

        return build_context(
            [
                Passage(
                    id=h.id,
                    text=h.text,
                    source_id=str(h.provenance.get("source_id", "")),
                    doc_name=str(h.provenance.get("doc_name") or h.provenance.get("doc_uri", "")),
                    trust=h.trust,
                    flags=[f["kind"] for f in h.flags],
                    mark=_flagged_span(h),
                )
                for h in result.hits
            ],
            max_tokens,
            count,
        )

    # -- console sessions -------------------------------------------------------------------
    def record_session(self, key_id: str, action: str) -> None:
        """Audit an admin console sign-in or sign-out (``action``: ``sign_in`` or
        ``sign_out``) under the key's id; the session itself lives in the console."""
        if action not in ("sign_in", "sign_out"):
            raise InvalidRequest(f"action must be sign_in or sign_out, not {action!r}")
        self.audit.append(f"console.{action}", key_id)

    def sign_in(self, who: Principal) -> ConsoleSession:
        """Open an admin console session for ``who`` (an admin key's principal; the key itself
        is never stored) lasting ``RAGWALL_CONSOLE_SESSION_MINUTES``; audited."""
        if not who.allows("admin"):
            raise InvalidRequest(who.refusal("admin"))
        session = self.console_sessions.create(
            who.key_id, who.scope, self.settings.console_session_minutes
        )
        self.record_session(who.key_id, "sign_in")
        return session

    def console_session(self, token: str | None) -> tuple[ConsoleSession | None, bool]:
        """The live session a console cookie holds, and whether one had expired; a session whose
        key has been revoked since ends here (``None, True``)."""
        session, expired = self.console_sessions.lookup(token)
        if session is not None and not any(
            k.id == session.key_id and k.revoked_at is None for k in self.keys.list()
        ):
            self.console_sessions.end(session.id)
            return None, True
        return session, expired

    def sign_out(self, session: ConsoleSession) -> None:
        """End a console session; audited."""
        self.console_sessions.end(session.id)
        self.record_session(session.key_id, "sign_out")

    # -- console views ---------------------------------------------------------------------
    def console_sources(self) -> list[Any]:
        """The sources page's rows (``SourceRow``)."""
        from ragwall.service import console as views

        return views.sources(self)

    def latest_reindex(self) -> Any:
        """The newest reindex job (live progress), or None."""
        from ragwall.service import console as views

        return views.latest_reindex(self)

    def recent_jobs(self, limit: int = 50) -> list[Any]:
        """The newest jobs, newest first, with live progress."""
        from ragwall.service import console as views

        return views.jobs(self, limit)

    def drift_jobs(self, limit: int = 50) -> list[Any]:
        """Drift jobs and gated reindexes, each with whether its report exists."""
        from ragwall.service import console as views

        return views.drift_jobs(self, limit)

    def flagged(
        self, kind: str, after: str | None, limit: int, source_id: str | None = None
    ) -> Any:
        """A page of flagged chunks (``FlaggedPage``)."""
        from ragwall.service import console as views

        return views.flagged(self, kind, after, limit, source_id)

    def audit_status(self) -> Any:
        """The audit chain's verification, re-run at most once a minute (``AuditStatus``)."""
        from ragwall.service import console as views

        if self._audit_checker is None:
            self._audit_checker = views.AuditChecker(self)
        return self._audit_checker.status()

    # -- refusals ------------------------------------------------------------------------------
    def record_refusal(
        self, key_id: str | None, method: str, route: str, status: int, code: str
    ) -> bool:
        """Audit a refused call (401, 403, 413, 422, …): who (when known), what, why.

        At most ``RAGWALL_REFUSAL_RECORDS_PER_MINUTE`` are written a minute, so a flood of bad
        calls cannot fill the disk; the next record written says how many were left out.
        Returns whether this one was written.
        """
        with self._refusal_lock:
            now = time.monotonic()
            if now - self._refusal_window >= 60.0:
                self._refusal_window, self._refusals_in_window = now, 0
            if self._refusals_in_window >= self.settings.refusal_records_per_minute:
                self._refusals_suppressed += 1
                return False
            self._refusals_in_window += 1
            suppressed, self._refusals_suppressed = self._refusals_suppressed, 0
        self.audit.append(
            "refused",
            key_id or "anonymous",
            method=method,
            route=route[:200],
            status=status,
            reason=code,
            suppressed_before=suppressed,
        )
        return True

    # -- health ---------------------------------------------------------------------------------
    def _metrics_reading(self) -> StateReading:
        """The index, job and audit figures ``/metrics`` reads at each scrape (SQLite reads;
        never opens the store or loads a model)."""
        active = self.state.active_version()
        versions: dict[int, tuple[int, int]] = {}
        for v in self.state.versions():
            if v.state in ("active", "ready", "building"):
                counts = self.state.version_counts(version=v.id).values()
                versions[v.id] = (sum(c[0] for c in counts), sum(c[1] for c in counts))
        return StateReading(
            active_version=active.id if active else None,
            versions=versions,
            running_jobs=self.jobs.running_progress(),
            audit_records=self.audit.records,
            audit_head_age_s=self.audit.head_age_s(),
        )

    def readiness(self) -> dict[str, Any]:
        """The index answers and the embedding model is loaded (raises when not)."""
        with self.index.lease() as active:
            return {
                "points": active.store.count(),
                "embedding_dim": active.encoder.dim,
                "index_version": active.name,
            }

    # -- index versions -------------------------------------------------------------------------
    def index_info(self) -> dict[str, Any]:
        """The active version and every version the registry knows (newest first), with what
        the environment would change at the next reindex."""
        from ragwall.service.index import ensure_registry
        from ragwall.service.reindex import describe, environment_changes

        active = ensure_registry(
            self.settings, self.state
        )  # a registry read: works beside a server
        return {
            "active": version_name(active.id),
            "versions": [
                describe(v, self.state.version_counts(version=v.id))
                for v in reversed(self.state.versions())
            ],
            "pending_changes": sorted(environment_changes(self.settings, active)),
            "running_job": self.jobs.running(),
        }

    def start_reindex(
        self,
        actor: str,
        changes: Any = None,
        idempotency_key: str | None = None,
    ):  # noqa: ANN201 - a JobRecord
        """Start a reindex in the background (see ``ragwall.service.reindex``); returns its job.

        Parameters:
            actor: who asks, for the audit trail.
            changes: a ``ReindexChanges`` (or its fields as a dict): settings to change for the
                new version (the rest come from the environment), and the options ``rebuild``,
                ``gate`` (a drift gate checked before the switch) and ``force``.
            idempotency_key: a retried start with the same key returns the same job.
        """
        return self.jobs.start_reindex(actor, changes, idempotency_key, background=True)

    def reindex(
        self,
        actor: str,
        changes: dict[str, Any] | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ):  # noqa: ANN201 - a JobRecord
        """Run a reindex in this thread and return its finished job (the CLI's way)."""
        return self.jobs.start_reindex(actor, changes, background=False, progress=progress)

    # -- drift evals ------------------------------------------------------------------------------
    def snapshot(
        self,
        actor: str,
        queries: QuerySet,
        top_k: int = 10,
        version: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Snapshot:
        """A retrieval snapshot (``ragwall.eval.drift.snapshot.Snapshot``) of ``version`` (the active
        one when None) on a ``QuerySet``, through the real search path; audited once."""
        from ragwall.service.drift import take_snapshot

        snap = take_snapshot(self, queries, top_k, version, progress)
        self.audit.append(
            "eval.snapshot",
            actor,
            version=snap.index_version,
            queries=len(snap.queries),
            top_k=top_k,
        )
        return snap

    def drift(
        self,
        actor: str,
        queries: QuerySet | None,
        baseline: Side,
        candidate: Side | None = None,
        top_k: int = 10,
        gates: Gates | None = None,
        progress: Callable[[str], None] | None = None,
        job_id: str | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Compare two sides (``ragwall.service.drift.Side``: a snapshot or a version; the
        active version when ``candidate`` is None); returns the drift result; audited once
        (with ``job_id`` when a drift job runs it). The request is checked first
        (``ragwall.service.drift.check_request``); ``cancel`` stops it between queries."""
        from ragwall.service.drift import run_drift

        result = run_drift(
            self, queries, baseline, candidate or Side(), top_k, gates, progress, cancel
        )
        self.audit.append(
            "eval.drift",
            actor,
            **({"job_id": job_id} if job_id else {}),
            baseline=result["baseline"]["index_version"],
            candidate=result["candidate"]["index_version"],
            queries=result["queries"],
            verdict=result["verdict"],
            gates={k: g["passed"] for k, g in result["gates"].items()},
        )
        return result

    def start_drift(self, actor: str, request: DriftRequest):  # noqa: ANN201 - a JobRecord
        """Start a drift comparison (a ``DriftRequest``) as a background job."""
        return self.jobs.start_drift(actor, request)

    def job_report(self, job_id: str, name: str = "report.html") -> Path:
        """The file of a job's report (``report.html`` or ``drift.json``)."""
        from ragwall.eval.drift.report import DRIFT_JSON, REPORT

        try:
            self.job(job_id)
        except JobNotFound as exc:
            raise ReportNotFound(str(exc)) from exc
        if name not in (REPORT, DRIFT_JSON):
            raise InvalidRequest(f"a job's report is {REPORT} or {DRIFT_JSON}, not {name!r}")
        path = self.jobs.reports_dir(job_id) / name
        if not path.is_file():
            raise ReportNotFound(
                f"job {job_id} has no report (yet): drift jobs and gated reindex jobs write one "
                "when their comparison ends"
            )
        return path

    def job(self, job_id: str):  # noqa: ANN201 - a JobRecord
        job = self.state.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}; GET /v1/index lists the versions and their jobs")
        return self.jobs.live(job)

    def cancel_job(self, actor: str, job_id: str):  # noqa: ANN201 - a JobRecord
        """Ask a job to stop (``JobRunner.cancel``); the request is audited, by the job's
        kind (``index.reindex_cancel``, ``eval.drift_cancel``, ``source.ingest_cancel``)."""
        job = self.jobs.cancel(job_id)
        if job.state in ("queued", "running"):
            action = _CANCEL_ACTIONS.get(job.kind, f"{job.kind}.cancel")
            self.audit.append(action, actor, job_id=job_id)
        return job

    def activate(self, actor: str, version: str | int, *, reason: str = "activate") -> dict:
        """Make a ready version the active one (one switch, no rebuild); returns
        ``{"active", "previous"}``. Refused while a reindex runs."""
        from ragwall.service.reindex import enforce_retention

        try:
            number = parse_version(version)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        record = self.state.get_version(number)
        if record is None:
            raise VersionNotFound(f"no index version {version_name(number)}; see GET /v1/index")
        busy = self.jobs.running()
        if busy:
            raise SwitchRefused(
                f"job {busy} (a reindex or a drift eval) is running; switch versions after it ends",
                job_id=busy,
            )
        active = self.index.ensure_registry()
        if record.id == active.id:
            return {"active": version_name(record.id), "previous": version_name(record.id)}
        if record.state != "ready":
            raise SwitchRefused(
                f"version {version_name(number)} is {record.state}; only a ready version can be "
                "activated"
            )

        def commit() -> None:
            self.stores.point_alias(record.location)
            self.state.activate(number)

        with self.writes.exclusive():  # no ingest is writing to the version being retired
            self.index.switch(record, commit)
        enforce_retention(self.jobs.context(self.index), self.settings.keep_versions)
        self.audit.append(
            "index.switch",
            actor,
            version=version_name(number),
            previous=version_name(active.id),
            reason=reason,
        )
        return {"active": version_name(number), "previous": version_name(active.id)}

    def rollback(self, actor: str) -> dict:
        """Activate the newest ready version older than the active one (instant, no rebuild),
        passing over versions a drift gate rejected when another is there."""
        from ragwall.service.reindex import gate_rejected

        active = self.index.ensure_registry()
        older = [v for v in self.state.versions() if v.state == "ready" and v.id < active.id]
        # The previous good version, not one that a drift gate kept from being activated.
        older = [v for v in older if not gate_rejected(v)] or older
        if not older:
            raise SwitchRefused(
                f"no ready version older than {version_name(active.id)} to roll back to "
                "(RAGWALL_KEEP_VERSIONS keeps how many)"
            )
        return self.activate(actor, older[-1].id, reason="rollback")


#: The audit action of a cancel request, by job kind.
_CANCEL_ACTIONS = {
    "reindex": "index.reindex_cancel",
    "drift": "eval.drift_cancel",
    "ingest": "source.ingest_cancel",
}


def _same_source(a: Source, b: Source) -> bool:
    return (a.kind, a.location, a.trust_tier, a.groups) == (
        b.kind,
        b.location,
        b.trust_tier,
        b.groups,
    )


def _flagged_span(hit: Any) -> tuple[int, int] | None:
    """The characters the injection detector flagged, when this hit carries the flag."""
    span = hit.provenance.get("injection_span")
    if not span or not any(f["kind"] == "injection" for f in hit.flags):
        return None
    return int(span[0]), int(span[1])


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
