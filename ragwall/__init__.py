"""Ragwall: retrieval that AI agents can trust.

The public API, for use as a library::

    from ragwall import DEV_PRINCIPAL, RetrieveParams, Service, Settings

    with Service(Settings(data_dir="data")) as rw:
        rw.add_source("me", "wiki", "docs/", trust="internal", groups=["staff"])
        rw.ingest("me", "wiki")
        hits = rw.retrieve(DEV_PRINCIPAL, RetrieveParams(query="how do I reset my password"))

Names resolve on first use (PEP 562), so ``import ragwall`` (or ``ragwall.settings``) does not
load torch or open anything.

- :class:`Settings`: every tunable, from ``RAGWALL_*`` variables.
- :class:`Service`: every operation (sources, ingest, quarantine, keys, retrieve), audited.
- :class:`RetrieveParams` / :class:`Retrieval`: one retrieve's request and result.
- :class:`Ingester`, :class:`IngestReport`: the ingest pipeline alone.
- :class:`HybridSearcher`, :class:`SearchFilter`, :func:`access_filter`, :class:`SearchResult`,
  :class:`ScoredChunk`: the search alone.
- :class:`Principal`, :data:`DEV_PRINCIPAL`: who is asking (a key's scope and groups).
- :class:`ChunkPayload`: the payload every stored chunk carries.
- :class:`RagwallError`: the root of every error Ragwall raises on purpose.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Settings": "ragwall.settings",
    "DefenseConfig": "ragwall.settings",
    "RagwallError": "ragwall.errors",
    "ChunkPayload": "ragwall.payload",
    "Service": "ragwall.service",
    "RetrieveParams": "ragwall.service",
    "Retrieval": "ragwall.service",
    "Principal": "ragwall.service",
    "DEV_PRINCIPAL": "ragwall.service",
    "Ingester": "ragwall.ingest",
    "IngestReport": "ragwall.ingest",
    "Source": "ragwall.ingest",
    "make_source": "ragwall.ingest",
    "HybridSearcher": "ragwall.retrieval.search",
    "SearchFilter": "ragwall.retrieval.search",
    "SearchResult": "ragwall.retrieval.search",
    "ScoredChunk": "ragwall.retrieval.search",
    "access_filter": "ragwall.retrieval.search",
}

__all__ = [
    "ChunkPayload",
    "DEV_PRINCIPAL",
    "DefenseConfig",
    "HybridSearcher",
    "IngestReport",
    "Ingester",
    "Principal",
    "RagwallError",
    "Retrieval",
    "RetrieveParams",
    "ScoredChunk",
    "SearchFilter",
    "SearchResult",
    "Service",
    "Settings",
    "Source",
    "access_filter",
    "make_source",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ragwall' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # for type checkers and IDEs; at run time names resolve lazily
    from ragwall.errors import RagwallError
    from ragwall.ingest import Ingester, IngestReport, Source, make_source
    from ragwall.payload import ChunkPayload
    from ragwall.retrieval.search import (
        HybridSearcher,
        ScoredChunk,
        SearchFilter,
        SearchResult,
        access_filter,
    )
    from ragwall.service import DEV_PRINCIPAL, Principal, Retrieval, RetrieveParams, Service
    from ragwall.settings import DefenseConfig, Settings
