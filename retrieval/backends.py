"""Which store backs an index version, chosen once from the settings: a Qdrant server
(``qdrant-client``) when ``RAGWALL_QDRANT_URL`` is set, else the embedded shard
(``qdrant-edge-py``). The backends are imported only when used, so an embedded deployment never
loads ``qdrant-client`` and a server deployment never opens a shard.

Invariant: an embedded version's location is recorded relative to the data dir
(``qdrant/<collection>__v<n>``) and resolved against the data dir it is opened from, so a data dir
that is copied, restored from a backup or moved reads and writes its own shards, never the ones it
was copied from. (An absolute location, as older releases recorded, is used as it is.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ragwall.retrieval.store import Store


def open_store(settings, dim: int, lock=None, location: str | None = None) -> Store:  # noqa: ANN001
    """The store the settings name: a Qdrant server when ``qdrant_url`` is set, else embedded.

    Parameters:
        settings: a ``Settings``.
        dim: the embedding model's vector size.
        lock: the shard's lock, when the caller took it first with ``EdgeStore.acquire``.
        location: an index version's collection name (server) or shard folder (embedded);
            default: ``settings.collection`` / ``settings.shard_path``.
    """
    if settings.qdrant_url:
        from ragwall.retrieval.client_store import ClientStore  # deferred: qdrant-client

        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return ClientStore.connect(
            settings.qdrant_url, location or settings.collection, dim, api_key=key
        )
    from ragwall.retrieval.edge_store import EdgeStore  # deferred: qdrant-edge

    return EdgeStore.open(
        shard_folder(settings, location) if location else settings.shard_path,
        dim,
        segment_max_kb=settings.segment_max_kb,
        lock=lock,
    )


def version_location(settings, version: int) -> str:  # noqa: ANN001 - Settings
    """Where index version ``version`` lives: ``<collection>__v<n>`` on a server, a shard folder
    beside the first one when embedded, relative to the data dir (see the module docstring).
    (Version 1 keeps the pre-versions location, so a data dir or collection made before index
    versions is version 1 in place.)"""
    if settings.qdrant_url:
        return settings.collection if version == 1 else f"{settings.collection}__v{version}"
    first = settings.shard_path.relative_to(settings.data_dir)
    return (first if version == 1 else first.with_name(f"{first.name}__v{version}")).as_posix()


def shard_folder(settings, location: str) -> Path:  # noqa: ANN001 - Settings
    """The shard folder an embedded ``location`` names: relative ones lie in the data dir."""
    path = Path(location)
    return path if path.is_absolute() else settings.data_dir / path


class Stores:
    """Opens, drops and aliases the stores of index versions.

    On a Qdrant server every version is a collection reached through one shared client (so a
    ``:memory:`` URL keeps all versions in one in-process instance, as a server would). Embedded,
    every version is a shard folder; each opens in one process only.
    """

    def __init__(self, settings) -> None:  # noqa: ANN001 - Settings
        self.settings = settings
        self._client = None

    def client(self):  # noqa: ANN201 - a QdrantClient (server mode only)
        if self._client is None:
            from ragwall.retrieval.client_store import make_client  # deferred: qdrant-client

            s = self.settings
            key = s.qdrant_api_key.get_secret_value() if s.qdrant_api_key else None
            self._client = make_client(s.qdrant_url, key)
        return self._client

    def open(self, location: str, dim: int, lock=None) -> Store:  # noqa: ANN001 - a FileLock
        """Open (or create) the store at ``location`` (see :func:`version_location`)."""
        if self.settings.qdrant_url:
            from ragwall.retrieval.client_store import ClientStore  # deferred: qdrant-client

            store = ClientStore(self.client(), location, dim, owns_client=False)
            store.ensure_collection()
            return store
        return open_store(self.settings, dim, lock=lock, location=location)

    def drop(self, location: str) -> None:
        """Delete a version's data for good: its collection, or its shard folder and lock."""
        if self.settings.qdrant_url:
            from ragwall.retrieval.client_store import drop_collection  # deferred: qdrant-client

            drop_collection(self.client(), location)
            return
        path = shard_folder(self.settings, location)
        shutil.rmtree(path, ignore_errors=True)
        Path(str(path) + ".lock").unlink(missing_ok=True)

    def point_alias(self, location: str) -> None:
        """Server mode: point the active alias (``<collection>__active``) at ``location`` in one
        ``update_collection_aliases`` call. Embedded mode has no aliases: a no-op."""
        if self.settings.qdrant_url:
            from ragwall.retrieval.client_store import point_alias  # deferred: qdrant-client

            point_alias(self.client(), f"{self.settings.collection}__active", location)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
