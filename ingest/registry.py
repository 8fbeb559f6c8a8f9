"""Durable state in SQLite: sources, indexed documents, ingest runs, index versions and jobs.

Documents are recorded per index version (``index_version``): each version is a complete index,
and its rows say exactly what its store holds, so a rollback finds a registry that matches the
index it switches to. A data dir made before index versions existed is migrated in place on
open: its documents become version 1's (one transaction; :meth:`Registry.migrated` says whether it
ran).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ragwall.errors import SourceExists, SourceNotFound
from ragwall.ingest.sources import Source

_DOCUMENTS = """
CREATE TABLE IF NOT EXISTS documents (
    index_version INTEGER NOT NULL,
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
    PRIMARY KEY (index_version, source_id, uri)
);
"""

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    location TEXT NOT NULL,
    trust_tier TEXT NOT NULL,
    groups TEXT NOT NULL,
    created_at TEXT NOT NULL,
    max_pages INTEGER
);
"""
    + _DOCUMENTS
    + """
CREATE TABLE IF NOT EXISTS quarantine (
    kind TEXT NOT NULL CHECK (kind IN ('source', 'document')),
    value TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS index_versions (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('building', 'ready', 'active', 'retired', 'failed')),
    location TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    config TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    job_id TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    actor TEXT NOT NULL,
    params TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    progress TEXT,
    result TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    summary TEXT,
    index_version INTEGER
);
"""
)


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


class Registry:
    """The registry. One connection per process; SQLite's WAL lets readers run beside a writer."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # A writer waits up to 30 s for another (a job thread beside requests, another process)
        # rather than failing with "database is locked" when the box is busy.
        self._db = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._tx_lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self.migrated = self._migrate_documents()
        self._db.executescript(_SCHEMA)
        if "index_version" not in {r[1] for r in self._db.execute("PRAGMA table_info(runs)")}:
            self._db.execute("ALTER TABLE runs ADD COLUMN index_version INTEGER")  # older runs
        if "max_pages" not in {r[1] for r in self._db.execute("PRAGMA table_info(sources)")}:
            self._db.execute("ALTER TABLE sources ADD COLUMN max_pages INTEGER")  # web sources

    def close(self) -> None:
        self._db.close()

    def _migrate_documents(self) -> bool:
        """A documents table without ``index_version`` (made before index versions) becomes
        version 1's, in one transaction. Returns whether a migration ran."""
        cols = [r[1] for r in self._db.execute("PRAGMA table_info(documents)")]
        if not cols or "index_version" in cols:
            return False
        with self.transaction() as db:
            db.execute("ALTER TABLE documents RENAME TO documents_pre_versions")
            db.execute(_DOCUMENTS)
            db.execute("INSERT INTO documents SELECT 1, * FROM documents_pre_versions")
            db.execute("DROP TABLE documents_pre_versions")
        return True

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction at a time on this connection (threads share it: a reindex job
        beside requests), so two never nest."""
        with self._tx_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def index_id(self) -> str:
        """This registry's identity (a random id made on first use): what tells one index's
        snapshots from another's, whatever its collection is called."""
        query = "SELECT value FROM meta WHERE key = 'index_id'"
        row = self._db.execute(query).fetchone()
        if row is not None:  # the usual case: a read, no write transaction
            return str(row[0])
        with self.transaction() as db:
            row = db.execute(query).fetchone()
            if row is not None:  # another process made it first
                return str(row[0])
            value = uuid.uuid4().hex
            db.execute("INSERT INTO meta VALUES ('index_id', ?)", (value,))
            return value

    # -- sources ---------------------------------------------------------------------------
    def add_source(self, source: Source) -> None:
        try:
            self._db.execute(
                "INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    source.id,
                    source.kind,
                    source.location,
                    source.trust_tier,
                    json.dumps(source.groups),
                    source.created_at,
                    source.max_pages,
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
        """Forget a source and its documents in every index version."""
        self.get_source(source_id)
        with self.transaction() as db:
            db.execute("DELETE FROM documents WHERE source_id = ?", (source_id,))
            db.execute("DELETE FROM sources WHERE id = ?", (source_id,))

    # -- documents, per index version ------------------------------------------------------
    def documents(self, source_id: str, *, version: int) -> dict[str, DocumentRecord]:
        rows = self._db.execute(
            "SELECT source_id, uri, sha256, version, fingerprint, size, chunks, terms, run_id, "
            "ingested_at FROM documents WHERE index_version = ? AND source_id = ?",
            (version, source_id),
        )
        return {r[1]: DocumentRecord(*r) for r in rows}

    def document_hashes(self, *, version: int) -> dict[tuple[str, str], str]:
        """``{(source_id, uri): sha256}`` of every document the version holds."""
        rows = self._db.execute(
            "SELECT source_id, uri, sha256 FROM documents WHERE index_version = ?", (version,)
        )
        return {(r[0], r[1]): r[2] for r in rows}

    def put_document(self, record: DocumentRecord, *, version: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                version,
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

    def delete_document(self, source_id: str, uri: str, *, version: int) -> None:
        self._db.execute(
            "DELETE FROM documents WHERE index_version = ? AND source_id = ? AND uri = ?",
            (version, source_id, uri),
        )

    def drop_documents(self, *, version: int, source_id: str | None = None) -> None:
        """Forget every document of a version (of one source, when given)."""
        if source_id is None:
            self._db.execute("DELETE FROM documents WHERE index_version = ?", (version,))
        else:
            self._db.execute(
                "DELETE FROM documents WHERE index_version = ? AND source_id = ?",
                (version, source_id),
            )

    def corpus_terms(self, *, version: int) -> tuple[int, int]:
        """(total BM25 terms, total chunks) over every document of a version."""
        terms, chunks = self._db.execute(
            "SELECT COALESCE(SUM(terms), 0), COALESCE(SUM(chunks), 0) FROM documents "
            "WHERE index_version = ?",
            (version,),
        ).fetchone()
        return int(terms), int(chunks)

    def version_counts(self, *, version: int) -> dict[str, tuple[int, int]]:
        """``{source_id: (documents, chunks)}`` of a version."""
        rows = self._db.execute(
            "SELECT source_id, COUNT(*), COALESCE(SUM(chunks), 0) FROM documents "
            "WHERE index_version = ? GROUP BY source_id",
            (version,),
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    # -- index versions --------------------------------------------------------------------
    def versions(self) -> list[VersionRecord]:
        rows = self._db.execute(f"SELECT {_VERSION_COLS} FROM index_versions ORDER BY id")
        return [_version(r) for r in rows]

    def get_version(self, version: int) -> VersionRecord | None:
        row = self._db.execute(
            f"SELECT {_VERSION_COLS} FROM index_versions WHERE id = ?", (version,)
        ).fetchone()
        return _version(row) if row else None

    def active_version(self) -> VersionRecord | None:
        row = self._db.execute(
            f"SELECT {_VERSION_COLS} FROM index_versions WHERE state = 'active'"
        ).fetchone()
        return _version(row) if row else None

    def add_version(
        self,
        state: str,
        location: str | None,
        config: dict,
        fingerprint: str,
        created_at: str,
        job_id: str | None = None,
        version: int | None = None,
    ) -> int:
        """Register a version; ``location`` may contain ``{id}`` (filled with the new id)."""
        with self.transaction() as db:
            if version is None:
                (top,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM index_versions").fetchone()
                version = int(top) + 1
            db.execute(
                "INSERT INTO index_versions (id, state, location, created_at, config, "
                "fingerprint, job_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    version,
                    state,
                    (location or "").format(id=version),
                    created_at,
                    json.dumps(config, sort_keys=True),
                    fingerprint,
                    job_id,
                ),
            )
        return version

    def set_version_state(
        self, version: int, state: str, at: str | None = None, error: str | None = None
    ) -> None:
        self._db.execute(
            "UPDATE index_versions SET state = ?, finished_at = COALESCE(?, finished_at), "
            "error = COALESCE(?, error) WHERE id = ?",
            (state, at, error, version),
        )

    def set_version_location(self, version: int, location: str) -> None:
        self._db.execute("UPDATE index_versions SET location = ? WHERE id = ?", (location, version))

    def activate(self, version: int) -> int | None:
        """Make ``version`` the active one in one transaction; returns the one it replaced."""
        with self.transaction() as db:
            row = db.execute("SELECT id FROM index_versions WHERE state = 'active'").fetchone()
            previous = int(row[0]) if row else None
            db.execute("UPDATE index_versions SET state = 'ready' WHERE state = 'active'")
            cur = db.execute(
                "UPDATE index_versions SET state = 'active' WHERE id = ? AND state IN "
                "('ready', 'building', 'active')",
                (version,),
            )
            if cur.rowcount != 1:
                raise ValueError(f"version {version} cannot be activated")
        return previous

    # -- jobs ------------------------------------------------------------------------------
    def add_job(
        self,
        job_id: str,
        kind: str,
        actor: str,
        params: dict,
        created_at: str,
        idempotency_key: str | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO jobs (id, kind, state, actor, params, idempotency_key, created_at) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
            (job_id, kind, actor, json.dumps(params, sort_keys=True), idempotency_key, created_at),
        )

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self._db.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def job_by_key(self, idempotency_key: str) -> JobRecord | None:
        row = self._db.execute(
            f"SELECT {_JOB_COLS} FROM jobs WHERE idempotency_key = ?", (idempotency_key,)
        ).fetchone()
        return _job(row) if row else None

    def unfinished_jobs(self) -> list[JobRecord]:
        rows = self._db.execute(
            f"SELECT {_JOB_COLS} FROM jobs WHERE state IN ('queued', 'running') ORDER BY created_at"
        )
        return [_job(r) for r in rows]

    def update_job(self, job_id: str, **fields: object) -> None:
        """Set some of: state, started_at, finished_at, progress, result, error."""
        allowed = {"state", "started_at", "finished_at", "progress", "result", "error"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"update_job takes some of {sorted(allowed)}")
        values = [json.dumps(v) if k in ("progress", "result") else v for k, v in fields.items()]
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values, job_id))

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

    def start_run(
        self, run_id: str, source_id: str, started_at: str, index_version: int | None = None
    ) -> None:
        """Record a run starting; ``index_version``: the version it writes into."""
        self._db.execute(
            "INSERT INTO runs (id, source_id, started_at, index_version) VALUES (?, ?, ?, ?)",
            (run_id, source_id, started_at, index_version),
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

    def last_runs(self, version: int | None = None) -> dict[str, RunRecord]:
        """``{source_id: its newest ingest run}`` (finished or not); with ``version``, its newest
        run into that index version (runs recorded before versions were noted count as any)."""
        where = "" if version is None else "(index_version = ? OR index_version IS NULL) AND "
        args = () if version is None else (version, version)
        rows = self._db.execute(
            "SELECT id, source_id, started_at, finished_at, summary FROM runs AS r "
            f"WHERE {where}started_at = (SELECT MAX(started_at) FROM runs WHERE "
            f"{where}source_id = r.source_id)",
            args,
        )
        return {
            r[1]: RunRecord(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else None)
            for r in rows
        }

    def recent_jobs(self, limit: int = 50, kinds: tuple[str, ...] = ()) -> list[JobRecord]:
        """The newest ``limit`` jobs (of ``kinds`` when given), newest first."""
        where = f"WHERE kind IN ({', '.join('?' * len(kinds))}) " if kinds else ""
        rows = self._db.execute(
            f"SELECT {_JOB_COLS} FROM jobs {where}ORDER BY created_at DESC LIMIT ?",
            (*kinds, limit),
        )
        return [_job(r) for r in rows]


_VERSION_COLS = "id, state, location, created_at, finished_at, config, fingerprint, job_id, error"
_JOB_COLS = (
    "id, kind, state, actor, params, idempotency_key, created_at, started_at, finished_at, "
    "progress, result, error"
)


@dataclass(frozen=True)
class VersionRecord:
    """One index version: a complete index in its own shard folder or collection."""

    id: int
    state: str
    location: str
    created_at: str
    finished_at: str | None
    config: dict
    fingerprint: str
    job_id: str | None
    error: str | None


@dataclass(frozen=True)
class RunRecord:
    """One ingest run of a source; ``summary`` is the run's report once it finished."""

    id: str
    source_id: str
    started_at: str
    finished_at: str | None
    summary: dict | None


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str
    state: str
    actor: str
    params: dict
    idempotency_key: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: dict | None
    result: dict | None
    error: str | None


def _version(row: tuple) -> VersionRecord:
    return VersionRecord(*row[:5], json.loads(row[5]), *row[6:])


def _job(row: tuple) -> JobRecord:
    return JobRecord(
        *row[:4],
        json.loads(row[4]),
        *row[5:9],
        json.loads(row[9]) if row[9] else None,
        json.loads(row[10]) if row[10] else None,
        row[11],
    )


def _source(row: tuple) -> Source:
    return Source(
        id=row[0],
        kind=row[1],
        location=row[2],
        trust_tier=row[3],
        groups=json.loads(row[4]),
        created_at=row[5],
        max_pages=row[6],
    )
