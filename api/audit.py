"""A tamper-evident audit trail: an append-only JSON-lines log whose records are hash-chained.

Each record carries the hash of the one before it and its own hash over its canonical JSON, so an
edited, removed or reordered record breaks the chain. The head (count and last hash) is also kept
in SQLite, so cutting records off the end is detected too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


@dataclass
class VerifyReport:
    ok: bool
    records: int
    problems: list[str]


class AuditLog:
    def __init__(self, log_path: Path, head_db: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.path = log_path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(head_db), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "seq INTEGER NOT NULL, hash TEXT NOT NULL)"
        )
        row = self._db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        self._seq, self._head = (row[0], row[1]) if row else (0, GENESIS)

    def close(self) -> None:
        self._db.close()

    def append(self, action: str, key_id: str, **fields: Any) -> dict[str, Any]:
        """Append one record; returns it with its hash."""
        with self._lock:
            record = {
                "seq": self._seq + 1,
                "time": datetime.now(UTC).isoformat(),
                "key_id": key_id,
                "action": action,
                **fields,
                "prev": self._head,
            }
            record["hash"] = record_hash(record)
            line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._db.execute(
                "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                (record["seq"], record["hash"]),
            )
            self._seq, self._head = record["seq"], record["hash"]
            return record

    def verify(self) -> VerifyReport:
        problems: list[str] = []
        prev, expected_seq, count = GENESIS, 1, 0
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"line {number}: not valid JSON")
                continue
            count += 1
            if record.get("seq") != expected_seq:
                problems.append(
                    f"line {number}: sequence {record.get('seq')} where {expected_seq} was expected "
                    "(a record was removed, inserted or moved)"
                )
            if record.get("prev") != prev:
                problems.append(f"line {number}: does not chain to the record before it")
            if record.get("hash") != record_hash(record):
                problems.append(f"line {number}: content does not match its hash (edited)")
            prev = record.get("hash", "")
            expected_seq = (record.get("seq") or expected_seq) + 1
        row = self._db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        head_seq, head_hash = row if row else (0, GENESIS)
        if head_seq != count or (count and prev != head_hash):
            problems.append(
                f"the log ends at record {count} but the head says {head_seq} "
                "(records were cut off the end, or the log was replaced)"
            )
        return VerifyReport(ok=not problems, records=count, problems=problems)
