"""What a caller may see: its sources, and chunks fetched by id.

Invariants:

- **A key's groups and trust floor bind every view.** A caller sees a source when they share a
  group (a group-less source only by an unrestricted key) and its tier's prior reaches the key's
  ``min_trust`` (``ragwall.service.names.sees``); :meth:`Catalog.visible_sources` lists those
  alone, and :meth:`Catalog.fetch` reads through the same access filter as a search
  (``ragwall.retrieval.search.access_filter``: groups, trust floor, quarantine, live state).
- **"Not yours" and "does not exist" are one answer.** A fetch that finds nothing the caller may
  see raises :class:`ChunkNotFound` with the same message whether the chunk or document is
  missing, quarantined, pending or another group's.
- **Every fetch appends one audit record** with the key id, what was asked for and the chunk
  ids returned, under the caller's ``action`` (``mcp.fetch``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from ragwall.errors import ChunkNotFound, InvalidRequest
from ragwall.payload import Key
from ragwall.retrieval.search import SearchFilter, SearchResult, access_filter
from ragwall.retrieval.store import Filter, HasId, MatchAny
from ragwall.service.keys import Principal
from ragwall.service.names import sees, with_floor
from ragwall.service.retrieve import (
    audited_hits,
    context_tokens,
    current_request_id,
    defense_config,
)
from ragwall.service.runtime import Runtime

#: A document id: the sha256 of its bytes, as hits carry it (``provenance.doc_sha256``).
DOC_ID = re.compile(r"^[0-9a-f]{64}$")
#: The most chunks one fetch returns.
FETCH_LIMIT = 500
NOT_FOUND = "no such {what} visible to this key: check the id (ids come from search results)"


@dataclass(frozen=True)
class SourceView:
    """A source as a caller sees it: its groups are only those it shares with the caller."""

    id: str
    trust_tier: str
    groups: list[str]
    documents: int
    chunks: int
    last_ingest: str | None
    quarantined: bool


@dataclass(frozen=True)
class Fetched:
    request_id: str
    index_version: str
    result: SearchResult
    policy: str | None


class Catalog:
    """Sources and chunks, as one caller may see them.

    Parameters:
        rt: the runtime (registry, index, audit, settings).
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def visible_sources(self, who: Principal, action: str | None = None) -> list[SourceView]:
        """The sources ``who`` can search, with what the active version holds of each; with
        ``action`` (an agent's call, such as ``mcp.list_sources``), audited under it."""
        registry = self.rt.registry
        active = registry.active_version()
        version = active.id if active else 1
        counts = registry.version_counts(version=version)
        runs = registry.last_runs(version=version)
        blocked, _ = registry.quarantined()
        out = []
        for src in registry.list_sources():
            if not sees(who, src, self.rt.settings.trust_priors):
                continue
            run = runs.get(src.id)
            shared = src.groups if who.groups is None else sorted(set(src.groups) & set(who.groups))
            docs, chunks = counts.get(src.id, (0, 0))
            out.append(
                SourceView(
                    src.id,
                    src.trust_tier,
                    list(shared),
                    docs,
                    chunks,
                    run.finished_at if run else None,
                    src.id in blocked,
                )
            )
        if action is not None:
            self.rt.audit.append(
                action,
                who.key_id,
                request_id=current_request_id(),
                sources=[v.id for v in out],
                **who.audit_context(),
            )
        return out

    def fetch(
        self,
        who: Principal,
        chunk_id: str | None = None,
        doc_id: str | None = None,
        policy: str | None = None,
        action: str = "fetch",
    ) -> Fetched:
        """One chunk (``chunk_id``) or one document's chunks (``doc_id``, in order), read through
        the caller's access filter and checked by the defenses under its policy."""
        if (chunk_id is None) == (doc_id is None):
            raise InvalidRequest("name exactly one of a chunk id or a document id")
        what = "chunk" if chunk_id is not None else "document"
        if chunk_id is not None and not _is_uuid(chunk_id):
            raise ChunkNotFound(NOT_FOUND.format(what=what))
        if doc_id is not None and not DOC_ID.match(doc_id):
            raise ChunkNotFound(NOT_FOUND.format(what=what))
        request_id = current_request_id()
        blocked_sources, blocked_docs = self.rt.registry.quarantined()
        flt = access_filter(
            who.groups, with_floor(who, SearchFilter()), blocked_sources, blocked_docs
        )
        narrow = HasId((chunk_id,)) if chunk_id is not None else MatchAny(Key.DOC_SHA256, (doc_id,))
        flt = flt & Filter(must=(narrow,))
        policy = policy or who.policy or self.rt.settings.default_policy
        defended = self.rt.settings.defenses_by_default
        with self.rt.index.lease() as active:
            cfg = defense_config(self.rt.settings, self.rt.registry, policy) if defended else None
            result = active.searcher.fetch(flt, FETCH_LIMIT, cfg)
            version = active.name
        self.rt.audit.append(
            action,
            who.key_id,
            request_id=request_id,
            index_version=version,
            asked={"chunk_id": chunk_id} if chunk_id is not None else {"doc_id": doc_id},
            results=audited_hits(result.hits),
            context_tokens=context_tokens(result.hits),
            dropped=result.dropped,
            **who.audit_context(),
        )
        if not result.hits and not result.dropped:
            raise ChunkNotFound(NOT_FOUND.format(what=what))
        return Fetched(request_id, version, result, policy if defended else None)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
