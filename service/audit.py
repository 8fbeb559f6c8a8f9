"""A tamper-evident audit trail: an append-only JSON-lines log whose records are hash-chained.

Each record carries the hash of the one before it and its own hash over its canonical JSON, so an
edited, removed or reordered record breaks the chain. The head (count and last hash) is also kept
in SQLite, so cutting records off the end is detected too.

A plain hash chain can be rebuilt whole by anyone who can write the data dir. With a key
(``RAGWALL_AUDIT_KEY``, kept outside the data dir) each record's hash is an HMAC-SHA256 instead,
and the record says so (``"mac": "hmac-sha256"``): without the key, an edited, forged or
rebuilt chain no longer verifies.

Many writers, one chain: a server, CLI commands and jobs in other processes append to the same
log. Every append takes an exclusive file lock (``audit.log.lock`` beside the log) and, inside
it, reads the head from the log's end (or keeps its own when the file is exactly as long as its
last append left it), then writes and fsyncs its record before releasing the lock. No writer
chains from a head it remembers from before another's append, so the chain never forks however
many processes write.

Durability: each record is fsynced to the log before the request that caused it returns. The head
is committed without its own fsync (SQLite ``synchronous=NORMAL``, which a full fsync made the
slowest step of a retrieve, ~4 ms): a crash of the process loses nothing, and a power cut can
leave the head a few records behind the log. Such a lag is not a break in the chain; ``verify``
reports it as a warning, and the next append carries the head forward from the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from filelock import FileLock

if TYPE_CHECKING:
    from ragwall.settings import Settings

GENESIS = "0" * 64


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


MAC = "hmac-sha256"


def record_hash(record: dict[str, Any], key: bytes | None = None) -> str:
    """SHA-256 of the record's canonical JSON (without ``hash``); HMAC-SHA256 with ``key``."""
    body = _canonical({k: v for k, v in record.items() if k != "hash"})
    if key is not None:
        return hmac.new(key, body, hashlib.sha256).hexdigest()
    return hashlib.sha256(body).hexdigest()


@dataclass
class VerifyReport:
    ok: bool
    records: int
    problems: list[str]
    warnings: list[str] = field(default_factory=list)


class AuditLog:
    def __init__(self, log_path: Path, head_db: Path, key: bytes | None = None) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.path = log_path
        self._key = key or None
        self._lock = threading.Lock()
        self._file_lock = FileLock(str(log_path) + ".lock", thread_local=False)
        self._fh: TextIO | None = None
        self._fh_inode: int | None = None
        self._size: int | None = None  # the log's size after this writer's last append
        self._db = sqlite3.connect(str(head_db), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # the log line itself is fsynced
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "seq INTEGER NOT NULL, hash TEXT NOT NULL)"
        )
        row = self._db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        self._seq, self._head = (row[0], row[1]) if row else (0, GENESIS)
        last = _last_record(self.path)
        if last is not None and isinstance(last.get("seq"), int) and last["seq"] > self._seq:
            # The head lags the log (a power cut after the log's fsync): chain on from the log.
            self._seq, self._head = last["seq"], str(last.get("hash", ""))

    @classmethod
    def for_settings(cls, settings: Settings) -> AuditLog:
        """The data dir's log, keyed when ``RAGWALL_AUDIT_KEY`` is set: every writer and the
        verifier open it here, so none can forget the key (unkeyed records after keyed ones
        fail ``verify``)."""
        return cls(settings.audit_path, settings.state_path, settings.audit_key_bytes())

    def _reopen(self) -> None:
        """(Re)open the log for appending: kept open between records (opening cost ~0.8 ms)."""
        if self._fh is not None:
            self._fh.close()
        self._fh = self.path.open("a", encoding="utf-8")
        self._fh_inode = os.fstat(self._fh.fileno()).st_ino

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
        self._db.close()

    def append(self, action: str, key_id: str, **fields: Any) -> dict[str, Any]:
        """Append one record; returns it with its hash. Safe across threads and processes."""
        with self._lock, self._file_lock:
            if self._fh is None or self._fh_inode != _inode(self.path):
                self._reopen()
            self._sync_head()
            record = {
                "seq": self._seq + 1,
                "time": datetime.now(UTC).isoformat(),
                "key_id": key_id,
                "action": action,
                **fields,
                "prev": self._head,
            }
            if self._key is not None:
                record["mac"] = MAC
            record["hash"] = record_hash(record, self._key)
            line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
            self._fh.write(line)
            self._fh.flush()
            os.fdatasync(self._fh.fileno())
            self._size = os.fstat(self._fh.fileno()).st_size
            self._db.execute(
                "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash "
                "WHERE excluded.seq > audit_head.seq",
                (record["seq"], record["hash"]),
            )
            self._seq, self._head = record["seq"], record["hash"]
            return record

    def _sync_head(self) -> None:
        """Under the file lock: take the head from the log's end unless the log is exactly as
        this writer left it (another process may have appended since)."""
        size = os.fstat(self._fh.fileno()).st_size
        if size == self._size:
            return
        last = _last_record(self.path)
        if last is not None and isinstance(last.get("seq"), int):
            self._seq, self._head = last["seq"], str(last.get("hash", ""))
        elif size == 0:
            row = self._db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            self._seq, self._head = (row[0], row[1]) if row else (0, GENESIS)

    @property
    def records(self) -> int:
        """How many records the chain holds (the log's last sequence number, so records other
        processes appended count)."""
        last = _last_record(self.path)
        if last is not None and isinstance(last.get("seq"), int):
            return max(self._seq, last["seq"])
        return self._seq

    def head_time(self) -> datetime | None:
        """When the log's newest record was appended, read from the file's end (so records
        other processes appended, such as the CLI's, count); ``None`` for an empty log."""
        last = _last_record(self.path)
        return _parse_time(last.get("time")) if last is not None else None

    def head_age_s(self) -> float | None:
        """Seconds since the newest record was appended; ``None`` for an empty log."""
        head = self.head_time()
        return None if head is None else max(0.0, (datetime.now(UTC) - head).total_seconds())

    def verify(self) -> VerifyReport:
        problems: list[str] = []
        prev, expected_seq, count = GENESIS, 1, 0
        keyed = unkeyed_prefix = 0
        row = self._db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        head_seq, head_hash = row if row else (0, GENESIS)
        at_head = GENESIS  # the hash of the log's record number head_seq
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"line {number}: not valid JSON")
                continue
            count += 1
            if count == head_seq:
                at_head = record.get("hash")
            if record.get("seq") != expected_seq:
                problems.append(
                    f"line {number}: sequence {record.get('seq')} where {expected_seq} was expected "
                    "(a record was removed, inserted or moved)"
                )
            if record.get("prev") != prev:
                problems.append(f"line {number}: does not chain to the record before it")
            if record.get("mac") == MAC:
                keyed += 1
                if self._key is None:
                    if keyed == 1:
                        problems.append(
                            f"line {number}: records from here on are keyed (HMAC); set "
                            "RAGWALL_AUDIT_KEY to the key the server used to verify them"
                        )
                elif record.get("hash") != record_hash(record, self._key):
                    problems.append(
                        f"line {number}: content does not match its HMAC "
                        "(edited, forged, or written with another key)"
                    )
            elif record.get("hash") != record_hash(record):
                problems.append(f"line {number}: content does not match its hash (edited)")
            elif self._key is not None:
                if keyed:
                    problems.append(
                        f"line {number}: an unkeyed record after keyed ones (forged by someone "
                        "without the key, or written by a server that was not given it)"
                    )
                else:
                    unkeyed_prefix += 1
            prev = record.get("hash", "")
            expected_seq = (record.get("seq") or expected_seq) + 1
        warnings: list[str] = []
        if unkeyed_prefix:
            warnings.append(
                f"records 1..{unkeyed_prefix} were written before RAGWALL_AUDIT_KEY was set: "
                "they are chained but not authenticated"
            )
        if head_seq < count and at_head == head_hash:
            warnings.append(
                f"records {head_seq + 1}..{count} chain correctly but come after the last head "
                f"the database recorded ({head_seq}): written just before an unclean shutdown, "
                "or appended by someone with write access to the log"
            )
        elif head_seq != count or (count and prev != head_hash):
            problems.append(
                f"the log ends at record {count} but the head says {head_seq} "
                "(records were cut off the end, or the log was replaced)"
            )
        return VerifyReport(ok=not problems, records=count, problems=problems, warnings=warnings)


def _last_record(path: Path) -> dict[str, Any] | None:
    """The log's last complete record, read from the end of the file; None if there is none."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            tail = fh.read().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(tail):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        return record if isinstance(record, dict) else None
    return None


def _inode(path: Path) -> int | None:
    """The inode behind ``path`` now: a log moved away (rotated) is reopened, not written on."""
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _parse_time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
