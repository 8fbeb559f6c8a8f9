"""The active index version, swapped under running requests.

Invariants:

- **One version answers a request, start to end.** A request takes a *lease* on the current
  version (:meth:`ActiveIndex.lease`) and keeps it until it has its results; a switch installs
  the new version for every later lease, waits until the old version's leases are returned,
  and only then closes the old store. No request sees a closed store, an empty index or a mix.
- **The registry is the truth.** The switch commits the registry's pointer and installs the new
  version under one lock, so no lease observes one without the other; a lease that finds the
  registry pointing elsewhere (another process switched a shared server index) installs that
  version first.
- **A version is read and written with its own pipeline settings** (:func:`version_settings`):
  the embedding model and chunking it was built with, whatever the environment says now. A
  changed setting takes effect when a reindex builds a version with it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from ragwall.embed import DenseEncoder
from ragwall.errors import StoreError
from ragwall.ingest.pipeline import (
    PIPELINE_FIELDS,
    Ingester,
    pipeline_config,
    pipeline_fingerprint,
)
from ragwall.ingest.registry import Registry, VersionRecord
from ragwall.retrieval.backends import Stores, version_location
from ragwall.retrieval.search import HybridSearcher
from ragwall.retrieval.store import Store
from ragwall.settings import Settings

log = logging.getLogger("ragwall.service.index")

ENVIRONMENT = "environment"  # a version config's record of the environment it was built under
DRAIN_TIMEOUT_S = 60.0  # how long a switch waits for requests still on the old version
GATE_REJECTED = "drift gate failed"  # how a gate-rejected version's note begins


def version_name(version: int) -> str:
    """How a version is shown: ``v3``."""
    return f"v{version}"


def parse_version(text: str | int) -> int:
    """``v3``, ``3`` or 3 → 3; anything else raises ValueError."""
    value = str(text).strip().lower().removeprefix("v")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{text!r} is not an index version (write it as v3 or 3)")
    return int(value)


def version_settings(base: Settings, config: dict[str, Any]) -> Settings:
    """``base`` with a version's recorded pipeline settings (validated like the environment)."""
    changes = {k: config[k] for k in PIPELINE_FIELDS if k in config}
    return type(base).model_validate({**base.model_dump(), **changes})


def ensure_registry(settings: Settings, registry: Registry) -> VersionRecord:
    """The active version's record; on a data dir without versions, registers version 1 in the
    pre-versions location (what an older release wrote becomes version 1 in place). A registry
    write only: it opens no store."""
    active = registry.active_version()
    if active is not None:
        return active
    if registry.versions():
        raise StoreError(
            "no index version is active (a crash between two registry writes?); activate one "
            "with `ragwall index activate V` (see `ragwall index list`)"
        )
    config = pipeline_config(settings)
    with contextlib.suppress(sqlite3.IntegrityError):  # another process registered it first
        registry.add_version(
            "active",
            version_location(settings, 1),
            {**config, ENVIRONMENT: {k: config[k] for k in PIPELINE_FIELDS}},
            pipeline_fingerprint(settings),
            datetime.now(UTC).isoformat(),
            version=1,
        )
    return registry.active_version()  # type: ignore[return-value]


def relocate_shards(settings: Settings, registry: Registry) -> None:
    """Embedded: record absolute shard locations (what older releases wrote) relative to the
    data dir, so this data dir uses its own shards (see :mod:`ragwall.retrieval.backends`).

    Older releases recorded ``<their data dir>/qdrant/<shard>``. Whether this data dir is that
    one, a copy of it or the same moved elsewhere, the version's shard is this data dir's
    ``qdrant/<shard>``: reading, writing or deleting the recorded path instead would reach into
    another data dir.
    """
    for record in registry.versions():
        path = Path(record.location)
        if record.location and path.is_absolute() and path.parent.name == "qdrant":
            relative = f"qdrant/{path.name}"
            registry.set_version_location(record.id, relative)
            log.info("index version %s: shard location recorded as %s", record.id, relative)


def gate_rejected(record: VersionRecord) -> bool:
    """Whether a reindex's drift gate kept this version from being activated."""
    return bool(record.error and record.error.startswith(GATE_REJECTED))


def environment_changes(settings: Settings, active: VersionRecord) -> dict[str, Any]:
    """Pipeline settings the environment changed since ``active`` was built (it records the
    environment it was built under)."""
    env = pipeline_config(settings)
    built_under = active.config.get(ENVIRONMENT, {})
    return {k: env[k] for k in PIPELINE_FIELDS if k in built_under and env[k] != built_under[k]}


def version_config(new_settings: Settings, environment: Settings) -> dict[str, Any]:
    """What a version records: its pipeline settings, and the environment's at build time."""
    env = pipeline_config(environment)
    return {**pipeline_config(new_settings), ENVIRONMENT: {k: env[k] for k in PIPELINE_FIELDS}}


def describe(record: VersionRecord, counts: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """A version as ``GET /v1/index`` shows it."""
    return {
        "version": version_name(record.id),
        "state": record.state,
        "created_at": record.created_at,
        "finished_at": record.finished_at,
        "fingerprint": {
            **{k: v for k, v in record.config.items() if k != ENVIRONMENT},
            "id": record.fingerprint,
        },
        "documents": sum(d for d, _ in counts.values()),
        "chunks": sum(c for _, c in counts.values()),
        "job_id": record.job_id,
        "error": record.error,
    }


@dataclass(eq=False)
class IndexHandle:
    """One open index version: its store, its settings, its encoder; searcher and ingester on
    first use."""

    record: VersionRecord
    settings: Settings
    store: Store
    encoder: DenseEncoder
    make_searcher: Callable[[Store, DenseEncoder], HybridSearcher]
    registry: Registry
    leases: int = field(default=0)

    @property
    def version(self) -> int:
        return self.record.id

    @property
    def name(self) -> str:
        return version_name(self.record.id)

    @cached_property
    def searcher(self) -> HybridSearcher:
        return self.make_searcher(self.store, self.encoder)

    @cached_property
    def ingester(self) -> Ingester:
        return Ingester(self.settings, self.registry, self.store, self.encoder, self.version)


class ActiveIndex:
    """The version that answers requests now, and the switch to another.

    Parameters:
        settings: the environment's settings (a version's own pipeline settings apply on top).
        registry: the registry.
        stores: opens each version's store.
        encoder_for: the (shared, cached) encoder for an embedding model id.
        make_searcher: builds a searcher over a store and an encoder.
    """

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        stores: Stores,
        encoder_for: Callable[[str], DenseEncoder],
        make_searcher: Callable[[Store, DenseEncoder], HybridSearcher],
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.stores = stores
        self.encoder_for = encoder_for
        self.make_searcher = make_searcher
        self._lock = threading.Condition(threading.Lock())
        self._current: IndexHandle | None = None

    # -- registry --------------------------------------------------------------------------
    def ensure_registry(self) -> VersionRecord:
        return ensure_registry(self.settings, self.registry)

    # -- handles ---------------------------------------------------------------------------
    def open_handle(self, record: VersionRecord, store: Store | None = None) -> IndexHandle:
        """Open a version (its store unless one is given, already open)."""
        settings = version_settings(self.settings, record.config)
        encoder = self.encoder_for(settings.embedding_model)
        if store is None:
            store = self.stores.open(record.location, encoder.dim)
        return IndexHandle(record, settings, store, encoder, self.make_searcher, self.registry)

    def current(self) -> IndexHandle:
        """The active version's handle (opened on first use). Callers that use it for more than
        a glance take a :meth:`lease` instead."""
        with self._lock:
            return self._current_locked()

    def _current_locked(self) -> IndexHandle:
        active = self.registry.active_version() or self.ensure_registry()
        if self._current is None:
            self._current = self.open_handle(active)
        elif self._current.version != active.id:
            # Another process switched a shared (server) index: follow it.
            old, self._current = self._current, self.open_handle(active)
            threading.Thread(target=self._retire, args=(old,), daemon=True).start()
        return self._current

    @contextmanager
    def lease(self) -> Iterator[IndexHandle]:
        """The active version, kept open until the block ends (a switch waits for it)."""
        with self._lock:
            handle = self._current_locked()
            handle.leases += 1
        try:
            yield handle
        finally:
            with self._lock:
                handle.leases -= 1
                self._lock.notify_all()

    def switch(
        self, record: VersionRecord, commit: Callable[[], Any], store: Store | None = None
    ) -> IndexHandle | None:
        """Install ``record``'s version for every later request; returns the old handle, drained
        and closed.

        The new store is opened (or ``store`` taken over) first; ``commit()`` (the registry's
        pointer and, on a server, the alias) runs under the same lock as the install, so no
        request sees one without the other. Requests holding the old version finish on it.
        """
        handle = self.open_handle(record, store)
        try:
            with self._lock:
                commit()
                old, self._current = self._current, handle
        except BaseException:
            if store is None:
                handle.store.close()
            raise
        if old is not None:
            self._retire(old)
        return old

    def _retire(self, old: IndexHandle) -> None:
        """Wait until no request holds ``old``, then close its store."""
        with self._lock:
            drained = self._lock.wait_for(lambda: old.leases == 0, timeout=DRAIN_TIMEOUT_S)
        if not drained:
            log.error(
                "version %s still had %d requests after %.0f s; closing it anyway",
                old.name,
                old.leases,
                DRAIN_TIMEOUT_S,
            )
        try:
            old.store.close()
        except Exception:  # the switch is done; a failed close must not undo it
            log.exception("closing version %s after the switch", old.name)

    def close(self) -> None:
        with self._lock:
            handle, self._current = self._current, None
        if handle is not None:
            handle.store.close()
