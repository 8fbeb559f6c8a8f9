"""A web page's validators (ETag, Last-Modified), kept with the sha256 of the body they
describe, in the data dir's state database.

Invariant: a stored validator is used for a conditional GET only while the index version being
synced holds that very body (its document's sha256 equals the validator's). A 304 then proves
the indexed version current. After a rollback to an older version, or into a new version that
holds nothing yet, the sha256 differs or is missing, and the page is read whole.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS web_validators (
    source_id TEXT NOT NULL,
    uri TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    PRIMARY KEY (source_id, uri)
);
"""


@dataclass(frozen=True)
class Validators:
    sha256: str
    etag: str | None
    last_modified: str | None


class ValidatorStore:
    """The ``web_validators`` table (its own connection; SQLite's WAL serialises writers)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def of(self, source_id: str) -> dict[str, Validators]:
        rows = self._db.execute(
            "SELECT uri, sha256, etag, last_modified FROM web_validators WHERE source_id = ?",
            (source_id,),
        )
        return {r[0]: Validators(r[1], r[2], r[3]) for r in rows}

    def put(
        self, source_id: str, uri: str, sha256: str, etag: str | None, last_modified: str | None
    ) -> None:
        if etag is None and last_modified is None:
            self._db.execute(
                "DELETE FROM web_validators WHERE source_id = ? AND uri = ?", (source_id, uri)
            )
            return
        self._db.execute(
            "INSERT OR REPLACE INTO web_validators VALUES (?, ?, ?, ?, ?)",
            (source_id, uri, sha256, etag, last_modified),
        )

    def keep_only(self, source_id: str, uris: set[str]) -> None:
        """Forget the validators of the source's pages not in ``uris`` (gone from its listing)."""
        stale = set(self.of(source_id)) - uris
        self._db.executemany(
            "DELETE FROM web_validators WHERE source_id = ? AND uri = ?",
            [(source_id, uri) for uri in sorted(stale)],
        )

    def forget(self, source_id: str) -> None:
        self._db.execute("DELETE FROM web_validators WHERE source_id = ?", (source_id,))
