"""The runtime: what every concern of the service shares, wired once over one data directory.

It owns the settings, the registry (sources, documents, runs, versions, jobs, quarantine), the
keys, the console sessions, the audit log, the stores, the model cache (embedding encoders, the
ONNX query encoders, the reranker), the write lock, the data-dir lock and the active index.
The concerns (``sources``, ``access``, ``retrieve``, ``health``, ``versions``, ``reindex``,
``comparisons``, ``views``) each take the runtime (and the job runner where they run jobs) and
never the ``Service`` facade.

Invariants:

- **Heavy resources open on first use**: the embedding model, the store (whose embedded shard
  opens in one process only) and the index. An operation that needs neither (``sources add``,
  ``keys create``, quarantine) neither loads a model nor takes the store's lock;
  :meth:`warm_up` opens them on purpose (a server before it serves).
- **One process owns an embedded data dir**: the first to open the index takes ``index.lock``
  (before any model loads, so a second process is told in milliseconds); a Qdrant server
  (``RAGWALL_QDRANT_URL``) is shared instead.
- **The write lock**: many ingests at once (shared), or one reindex replay or switch alone
  (exclusive).
- **The data dir is owner-only** from the moment the runtime opens it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from filelock import FileLock, Timeout

from ragwall.embed import DenseEncoder
from ragwall.errors import ModelError, StoreLocked
from ragwall.ingest.registry import Registry
from ragwall.retrieval.backends import Stores
from ragwall.retrieval.search import HybridSearcher
from ragwall.retrieval.store import Store
from ragwall.service.audit import AuditLog
from ragwall.service.datadir import make_private
from ragwall.service.index import ActiveIndex, relocate_shards
from ragwall.service.keys import Budget, KeyStore
from ragwall.service.oidc import OidcVerifier
from ragwall.service.sessions import SessionStore
from ragwall.service.syncs import SyncStore
from ragwall.service.tokens import TokenIssuer
from ragwall.settings import Settings

log = logging.getLogger("ragwall.service")


class WriteLock:
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


class Runtime:
    """The shared wiring of one data directory.

    Parameters:
        settings: every tunable.
        encoder: an already-loaded encoder to share (tests, evals); else loaded on first use.
        on_index_open: called once with the active index when it first opens (the reindex
            concern recovers jobs whose process died).
    """

    def __init__(
        self,
        settings: Settings,
        encoder: DenseEncoder | None = None,
        on_index_open: Callable[[ActiveIndex], None] | None = None,
    ) -> None:
        self.settings = settings
        if encoder is not None:
            self.__dict__["encoder"] = encoder  # pre-fills the cached property
        make_private(settings.data_dir, settings.audit_path)  # owner-only, before use
        self.registry = Registry(settings.state_path)
        self.keys = KeyStore(settings.state_path)
        self.syncs = SyncStore(settings.state_path)
        self.tokens = TokenIssuer(
            settings.token_key_path,
            settings.state_path,
            self.keys,
            settings.token_issuer,
            settings.token_audience,
            settings.token_max_ttl_s,
        )
        self.oidc = (
            OidcVerifier(
                settings.oidc_issuer,
                settings.oidc_audience,
                settings.oidc_jwks_url,
                settings.oidc_groups_claim,
                settings.oidc_scopes_claim,
                Budget(settings.oidc_rpm, settings.oidc_daily_requests),
            )
            if settings.oidc_issuer and settings.oidc_audience
            else None
        )
        self.sessions = SessionStore(settings.state_path)
        self.audit = AuditLog.for_settings(settings)
        self.stores = Stores(settings)
        self.writes = WriteLock()
        self.on_index_open = on_index_open
        self._encoders: dict[str, DenseEncoder] = {}
        self._query_encoders: dict[str, Any] = {}
        self._owner_lock: FileLock | None = None

    # -- models -----------------------------------------------------------------------------
    @cached_property
    def encoder(self) -> DenseEncoder:
        """The environment's embedding model (loaded on first use)."""
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
    def reranker(self):  # noqa: ANN201 - a Reranker or None
        if not self.settings.reranker_model:
            return None
        from ragwall.rerank import load_reranker  # deferred: onnxruntime only when reranking

        return load_reranker(self.settings.reranker_model, cache_dir=self.settings.models_dir)

    def make_searcher(self, store: Store, encoder: DenseEncoder) -> HybridSearcher:
        return HybridSearcher(store, encoder, self.reranker, self._query_encoder(encoder))

    def _query_encoder(self, encoder: DenseEncoder):  # noqa: ANN202 - a QueryEncoder or None
        """The ONNX int8 query encoder when configured and faithful, else None (PyTorch)."""
        if self.settings.query_encoder != "onnx":
            return None
        if encoder.model_id not in self._query_encoders:
            # deferred: the ONNX export pulls in onnx and onnxruntime only when configured
            from ragwall.retrieval.onnx_embed import load_query_encoder

            try:
                found = load_query_encoder(encoder, self.settings.models_dir)
            except ModelError as exc:
                log.warning("queries will be embedded with PyTorch: %s", exc)
                found = None
            self._query_encoders[encoder.model_id] = found
        return self._query_encoders[encoder.model_id]

    # -- the index --------------------------------------------------------------------------
    @cached_property
    def index(self) -> ActiveIndex:
        """The active index version (the registry migrated or created on first use; jobs whose
        process died marked failed by ``on_index_open``)."""
        if not self.settings.qdrant_url:
            self._own_data_dir()
            relocate_shards(self.settings, self.registry)
        index = ActiveIndex(
            self.settings, self.registry, self.stores, self.encoder_for, self.make_searcher
        )
        index.ensure_registry()
        if self.on_index_open is not None:
            self.on_index_open(index)
        return index

    def index_opened(self) -> bool:
        return "index" in self.__dict__

    def warm_up(self) -> None:
        """Open the active index and load its embedding model now."""
        _ = self.index.current().searcher

    def _own_data_dir(self) -> None:
        """Embedded: one process serves a data dir (its shards open in one process only).
        Taken before any model loads, so a second process is told in milliseconds."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.settings.owner_lock_path), thread_local=False)
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

    def close(self) -> None:
        closers: list[Callable[[], object]] = []
        if self.index_opened():
            closers.append(self.index.close)
        closers += [self.stores.close, self.audit.close, self.sessions.close]
        closers += [self.tokens.close, self.keys.close, self.syncs.close, self.registry.close]
        if self._owner_lock is not None:
            closers.append(self._owner_lock.release)
        for closer in closers:
            try:
                closer()
            except Exception:  # closing must not mask what the caller is unwinding
                log.exception("error while closing")
