"""Stale hits: a hit whose document, or whose source's syncing, is out of date carries a
``stale`` flag saying why (issue 29).

Invariants:

- **Informational, never a defense**: the flag is added after the defenses ran, so the flag,
  demote and drop policies never act on it; an agent decides what an old page is worth.
- A hit is flagged for the first of: its document is older than its source's ``stale_after``
  (by ``doc_modified_at``, the file's mtime when its content was ingested); its source's last
  sync failed; its source's last successful sync is overdue by more than twice its refresh.
- A source without a schedule (no row in ``ragwall.service.syncs``) flags nothing, and a chunk
  ingested before ``doc_modified_at`` existed is never flagged for its age.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ragwall.durations import format_duration
from ragwall.service.syncs import SyncState

KIND = "stale"


def flag_stale(hits: Iterable[Any], syncs: Mapping[str, SyncState], now: datetime) -> int:
    """Append a ``stale`` flag to each hit that is (module docstring); returns how many."""
    flagged = 0
    for hit in hits:
        sync = syncs.get(str(hit.provenance.get("source_id")))
        reason = _why(hit.provenance, sync, now) if sync is not None else None
        if reason is not None:
            hit.flags.append({"kind": KIND, "reason": reason})
            flagged += 1
    return flagged


def _why(provenance: Mapping[str, Any], sync: SyncState, now: datetime) -> str | None:
    modified = provenance.get("doc_modified_at")
    if sync.stale_after_s and modified:
        try:
            age = now - datetime.fromisoformat(str(modified))
        except ValueError:
            age = None
        if age is not None and age.total_seconds() > sync.stale_after_s:
            return (
                f"document_age: modified {age.days} days ago ({int(age.total_seconds())} s), "
                f"older than its source's stale_after of {format_duration(sync.stale_after_s)}"
            )
    if sync.last_sync_ok is False:
        return f"sync_failed: its source's last sync failed ({sync.last_failure_reason})"
    late = sync.overdue_s(now)
    if late is not None:
        return f"sync_overdue: its source's last successful sync is {int(late)} s overdue"
    return None


def utc_now() -> datetime:
    return datetime.now(UTC)
