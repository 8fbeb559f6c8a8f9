"""Sync schedules and their outcomes, per source (SQLite, in the data dir's state database).

Invariants:

- **Every full ingest of a source is a sync**, whichever door started it (the scheduler, an
  ingest job, the CLI): its start is recorded as an attempt, its end as its outcome (``ok``, or
  failed with a reason: ``mass_removal``, ``cancelled``, ``error``). A one-off ingest of some
  paths is not a sync.
- **The next sync is due one refresh after the last attempt** (at once for a source never
  synced), whatever that attempt's end, so a failing source is retried once per refresh and
  never in a tight loop. The rows are the schedule: after a restart it resumes from them.
- The last failure (when, its reason, its message) is kept after later successes, for the
  operator who asks why a source was stale last night.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

#: The longest refresh or stale-after a source may have (ten years).
MAX_SCHEDULE_S = 3650 * 86400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS source_syncs (
    source_id TEXT PRIMARY KEY,
    refresh_s INTEGER,
    stale_after_s INTEGER,
    last_attempt_at TEXT,
    last_sync_at TEXT,
    last_sync_ok INTEGER,
    last_ok_at TEXT,
    last_failure_at TEXT,
    last_failure_reason TEXT,
    last_failure_error TEXT
);
"""
_COLUMNS = (
    "source_id, refresh_s, stale_after_s, last_attempt_at, last_sync_at, last_sync_ok, "
    "last_ok_at, last_failure_at, last_failure_reason, last_failure_error"
)


@dataclass(frozen=True)
class SyncState:
    """A source's schedule and its last sync (times are ISO 8601, UTC)."""

    source_id: str
    refresh_s: int | None = None
    stale_after_s: int | None = None
    last_attempt_at: str | None = None
    last_sync_at: str | None = None
    last_sync_ok: bool | None = None
    last_ok_at: str | None = None  # when its last successful sync ended
    last_failure_at: str | None = None
    last_failure_reason: str | None = None
    last_failure_error: str | None = None

    def next_sync_at(self) -> datetime | None:
        """When the next scheduled sync is due (``None``: no schedule)."""
        if self.refresh_s is None:
            return None
        if self.last_attempt_at is None:
            return datetime.fromtimestamp(0, UTC)  # never synced: due at once
        return datetime.fromisoformat(self.last_attempt_at) + timedelta(seconds=self.refresh_s)

    def due(self, now: datetime) -> bool:
        when = self.next_sync_at()
        return when is not None and when <= now

    def overdue_s(self, now: datetime) -> float | None:
        """Seconds past its last successful sync beyond twice its refresh (``None`` when not
        overdue or unscheduled): a source whose syncs stopped working."""
        if self.refresh_s is None:
            return None
        age = self.age_s(now)
        if age is None:
            return None
        late = age - 2 * self.refresh_s
        return late if late > 0 else None

    def age_s(self, now: datetime) -> float | None:
        """Seconds since its last successful sync (``None``: never synced)."""
        if self.last_ok_at is None:
            return None
        return (now - datetime.fromisoformat(self.last_ok_at)).total_seconds()


class SyncStore:
    """The ``source_syncs`` table; a source without a row has no schedule and no sync yet."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def get(self, source_id: str) -> SyncState:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM source_syncs WHERE source_id = ?", (source_id,)
        ).fetchone()
        return _state(row) if row else SyncState(source_id)

    def all(self) -> dict[str, SyncState]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM source_syncs ORDER BY source_id")
        return {r[0]: _state(r) for r in rows}

    def set_schedule(
        self, source_id: str, refresh_s: int | None, stale_after_s: int | None
    ) -> None:
        self._db.execute(
            "INSERT INTO source_syncs (source_id, refresh_s, stale_after_s) VALUES (?, ?, ?) "
            "ON CONFLICT(source_id) DO UPDATE SET refresh_s = excluded.refresh_s, "
            "stale_after_s = excluded.stale_after_s",
            (source_id, refresh_s, stale_after_s),
        )

    def attempted(self, source_id: str, at: datetime) -> None:
        self._db.execute(
            "INSERT INTO source_syncs (source_id, last_attempt_at) VALUES (?, ?) "
            "ON CONFLICT(source_id) DO UPDATE SET last_attempt_at = excluded.last_attempt_at",
            (source_id, at.isoformat()),
        )

    def finished(
        self,
        source_id: str,
        at: datetime,
        ok: bool,
        reason: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record a sync's end; a failure also becomes the last failure."""
        self._db.execute(
            "INSERT INTO source_syncs (source_id) VALUES (?) ON CONFLICT(source_id) DO NOTHING",
            (source_id,),
        )
        self._db.execute(
            "UPDATE source_syncs SET last_sync_at = ?, last_sync_ok = ? WHERE source_id = ?",
            (at.isoformat(), int(ok), source_id),
        )
        if ok:
            self._db.execute(
                "UPDATE source_syncs SET last_ok_at = ? WHERE source_id = ?",
                (at.isoformat(), source_id),
            )
        if not ok:
            self._db.execute(
                "UPDATE source_syncs SET last_failure_at = ?, last_failure_reason = ?, "
                "last_failure_error = ? WHERE source_id = ?",
                (at.isoformat(), reason or "error", (error or "")[:500], source_id),
            )

    def forget(self, source_id: str) -> None:
        self._db.execute("DELETE FROM source_syncs WHERE source_id = ?", (source_id,))


def _state(row: tuple) -> SyncState:
    return SyncState(
        row[0], row[1], row[2], row[3], row[4], None if row[5] is None else bool(row[5]), *row[6:]
    )
