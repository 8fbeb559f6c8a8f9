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
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ragwall.defend.spotlight import Context, Passage, build_context
from ragwall.embed import DenseEncoder
from ragwall.errors import (
    ModelError,
    RagwallError,
    SourceBusy,
    SourceExists,
    SourceOutsideRoots,
)
from ragwall.ingest.pipeline import Ingester, IngestReport
from ragwall.ingest.sources import Source, iter_source_files, make_source, source_base
from ragwall.ingest.state import State
from ragwall.retrieval.search import HybridSearcher, SearchFilter, SearchResult, access_filter
from ragwall.retrieval.store import Store, open_store
from ragwall.service.audit import AuditLog
from ragwall.service.keys import KeyRecord, KeyStore, Principal
from ragwall.settings import DefenseConfig, Settings, within_roots

log = logging.getLogger("ragwall.service")

_SHA256 = re.compile(r"[0-9a-f]{64}")
QUARANTINE_KINDS: tuple[str, ...] = ("source", "document")


class InvalidRequest(RagwallError):
    """An operation's argument is malformed (e.g. a document named by anything but its sha256)."""


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
        self.state = State(self.settings.state_path)
        self.keys = KeyStore(self.settings.state_path)
        self.audit = AuditLog.for_settings(self.settings)
        self._refusal_lock = threading.Lock()
        self._refusal_window = time.monotonic()
        self._refusals_in_window = self._refusals_suppressed = 0

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        closers = [self.audit.close, self.keys.close, self.state.close]
        if "store" in self.__dict__:
            closers.insert(0, self.store.close)
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

    @cached_property
    def store(self) -> Store:
        if self.settings.qdrant_url:
            return open_store(self.settings, self.encoder.dim)
        from ragwall.retrieval.edge_store import EdgeStore

        lock = EdgeStore.acquire(self.settings.shard_path)  # before the model's seconds of loading
        try:
            return open_store(self.settings, self.encoder.dim, lock=lock)
        except BaseException:
            lock.release()
            raise

    @cached_property
    def ingester(self) -> Ingester:
        return Ingester(self.settings, self.state, self.store, self.encoder)

    @cached_property
    def searcher(self) -> HybridSearcher:
        reranker = None
        if self.settings.reranker_model:
            from ragwall.rerank import load_reranker

            reranker = load_reranker(
                self.settings.reranker_model, cache_dir=self.settings.data_dir / "models"
            )
        return HybridSearcher(self.store, self.encoder, reranker, self._query_encoder())

    def _query_encoder(self):  # noqa: ANN202 - a QueryEncoder or None
        """The ONNX int8 query encoder when configured and faithful, else None (PyTorch)."""
        if self.settings.query_encoder != "onnx":
            return None
        from ragwall.retrieval.onnx_embed import load_query_encoder

        try:
            return load_query_encoder(self.encoder, self.settings.data_dir / "models")
        except ModelError as exc:
            log.warning("queries will be embedded with PyTorch: %s", exc)
            return None

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
            groups: the access groups whose keys may see the source's chunks (none: every key).
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
        out = []
        for s in self.state.list_sources():
            docs = self.state.documents(s.id)
            out.append(SourceSummary(s, len(docs), sum(d.chunks for d in docs.values())))
        return out

    def remove_source(self, actor: str, source_id: str) -> int:
        """Delete a source and every chunk it contributed; returns how many chunks went."""
        self.state.get_source(source_id)  # SourceNotFound before the store is opened
        n = self.ingester.remove_source(source_id)
        self.audit.append("source.remove", actor, source_id=source_id, chunks=n)
        return n

    def ingest(
        self,
        actor: str,
        source_id: str,
        paths: Iterable[Path] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> IngestReport:
        """Ingest a source (idempotent, incremental); with ``paths``, just those files into it.

        ``progress(stage, done, total)`` is called as documents complete. A document that fails
        is reported in the result's ``failed`` and leaves the index as it was for that document.
        """
        source = self.state.get_source(source_id)
        with self._ingest_lock(source_id):
            report = self.ingester.ingest(source, paths=paths, progress=progress)
        self.audit.append(
            "source.ingest",
            actor,
            source_id=source_id,
            run_id=report.run_id,
            paths=None if paths is None else "explicit",
            summary={k: v for k, v in report.summary().items() if k not in ("failed", "notes")},
            failed=len(report.failed),
            notes=len(report.notes),
        )
        return report

    @contextmanager
    def _ingest_lock(self, source_id: str) -> Iterator[None]:
        """One ingest of a source at a time, across threads and processes (a file lock in the
        data dir); a second gets :class:`SourceBusy` with the running one's id."""
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
        try:
            yield
        finally:
            lock.release()

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
        request_id = uuid.uuid4().hex
        blocked_sources, blocked_docs = self.state.quarantined()
        flt = access_filter(who.groups, params.filters, blocked_sources, blocked_docs)
        s = self.settings
        want_rerank = s.rerank_by_default if params.rerank is None else params.rerank
        want_defenses = s.defenses_by_default if params.defenses is None else params.defenses
        policy = params.policy or who.policy or s.default_policy
        result = self.searcher.search(
            params.query,
            flt,
            top_k=params.top_k,
            candidates=params.candidates,
            fusion=params.fusion,  # type: ignore[arg-type]
            rrf_k=s.rrf_k,
            rerank=want_rerank,
            defenses=self.defense_config(policy) if want_defenses else None,
        )
        context = self._context(result, params.max_context_tokens) if params.context else None
        self.audit.append(
            "retrieve",
            who.key_id,
            request_id=request_id,
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
        reranker = self.searcher.reranker
        return Retrieval(
            request_id=request_id,
            result=result,
            rerank_requested=want_rerank,
            reranker_model=reranker.model_id if reranker else None,
            defenses=want_defenses,
            policy=policy if want_defenses else None,
            context=context,
        )

    def _context(self, result: SearchResult, max_tokens: int) -> Context:
        tokenizer = self.encoder.tokenizer

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
    def readiness(self) -> dict[str, Any]:
        """The index answers and the embedding model is loaded (raises when not)."""
        return {"points": self.store.count(), "embedding_dim": self.encoder.dim}


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
