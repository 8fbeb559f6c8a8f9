"""Durable ingest state in SQLite: sources, indexed documents and ingest runs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ragwall.errors import SourceExists, SourceNotFound
from ragwall.ingest.sources import Source

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    location TEXT NOT NULL,
    trust_tier TEXT NOT NULL,
    groups TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    source_id TEXT NOT NULL,
    uri TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    version TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    size INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    terms INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    PRIMARY KEY (source_id, uri)
);
CREATE TABLE IF NOT EXISTS quarantine (
    kind TEXT NOT NULL CHECK (kind IN ('source', 'document')),
    value TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    summary TEXT
);
"""


@dataclass(frozen=True)
class DocumentRecord:
    source_id: str
    uri: str
    sha256: str
    version: str
    fingerprint: str
    size: int
    chunks: int
    terms: int
    run_id: str
    ingested_at: str


class State:
    """The registry. One connection per process; SQLite's WAL lets readers run beside a writer."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- sources ---------------------------------------------------------------------------
    def add_source(self, source: Source) -> None:
        try:
            self._db.execute(
                "INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?)",
                (
                    source.id,
                    source.kind,
                    source.location,
                    source.trust_tier,
                    json.dumps(source.groups),
                    source.created_at,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise SourceExists(
                f"source {source.id!r} already exists; pick another id or remove it first"
            ) from exc

    def get_source(self, source_id: str) -> Source:
        row = self._db.execute("SELECT * FROM sources WHERE id = ?", (source_id,)).fetchone()
        if row is None:
            known = ", ".join(s.id for s in self.list_sources()) or "none yet"
            raise SourceNotFound(
                f"no source {source_id!r} (known: {known}); add it with `ragwall sources add`"
            )
        return _source(row)

    def list_sources(self) -> list[Source]:
        return [_source(r) for r in self._db.execute("SELECT * FROM sources ORDER BY id")]

    def remove_source(self, source_id: str) -> None:
        self.get_source(source_id)
        with self.transaction() as db:
            db.execute("DELETE FROM documents WHERE source_id = ?", (source_id,))
            db.execute("DELETE FROM sources WHERE id = ?", (source_id,))

    # -- documents -------------------------------------------------------------------------
    def documents(self, source_id: str) -> dict[str, DocumentRecord]:
        rows = self._db.execute("SELECT * FROM documents WHERE source_id = ?", (source_id,))
        return {r[1]: DocumentRecord(*r) for r in rows}

    def put_document(self, record: DocumentRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.source_id,
                record.uri,
                record.sha256,
                record.version,
                record.fingerprint,
                record.size,
                record.chunks,
                record.terms,
                record.run_id,
                record.ingested_at,
            ),
        )

    def delete_document(self, source_id: str, uri: str) -> None:
        self._db.execute("DELETE FROM documents WHERE source_id = ? AND uri = ?", (source_id, uri))

    def corpus_terms(self) -> tuple[int, int]:
        """(total BM25 terms, total chunks) over every indexed document."""
        terms, chunks = self._db.execute(
            "SELECT COALESCE(SUM(terms), 0), COALESCE(SUM(chunks), 0) FROM documents"
        ).fetchone()
        return int(terms), int(chunks)

    # -- runs ------------------------------------------------------------------------------
    # -- quarantine: read on every retrieve, so a change holds from the moment it commits ------
    def quarantine(self, kind: str, value: str, reason: str, at: str) -> bool:
        """Quarantine a source id or a document sha256; False if it already was."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO quarantine (kind, value, reason, created_at) VALUES (?,?,?,?)",
            (kind, value, reason, at),
        )
        return cur.rowcount > 0

    def release(self, kind: str, value: str) -> bool:
        cur = self._db.execute("DELETE FROM quarantine WHERE kind = ? AND value = ?", (kind, value))
        return cur.rowcount > 0

    def quarantined(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(quarantined source ids, quarantined document hashes)."""
        rows = self._db.execute("SELECT kind, value FROM quarantine ORDER BY value").fetchall()
        return (
            tuple(v for k, v in rows if k == "source"),
            tuple(v for k, v in rows if k == "document"),
        )

    def quarantine_list(self) -> list[dict[str, str]]:
        rows = self._db.execute(
            "SELECT kind, value, reason, created_at FROM quarantine ORDER BY created_at"
        ).fetchall()
        return [dict(zip(("kind", "value", "reason", "created_at"), r, strict=True)) for r in rows]

    def start_run(self, run_id: str, source_id: str, started_at: str) -> None:
        self._db.execute(
            "INSERT INTO runs (id, source_id, started_at) VALUES (?, ?, ?)",
            (run_id, source_id, started_at),
        )

    def running_run(self, source_id: str) -> str | None:
        """The newest run of a source that has not finished (running, or crashed)."""
        row = self._db.execute(
            "SELECT id FROM runs WHERE source_id = ? AND finished_at IS NULL "
            "ORDER BY started_at DESC LIMIT 1",
            (source_id,),
        ).fetchone()
        return row[0] if row else None

    def finish_run(self, run_id: str, finished_at: str, summary: dict) -> None:
        self._db.execute(
            "UPDATE runs SET finished_at = ?, summary = ? WHERE id = ?",
            (finished_at, json.dumps(summary), run_id),
        )


def _source(row: tuple) -> Source:
    return Source(
        id=row[0],
        kind=row[1],
        location=row[2],
        trust_tier=row[3],
        groups=json.loads(row[4]),
        created_at=row[5],
    )
