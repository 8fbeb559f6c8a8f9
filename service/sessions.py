"""Admin console sessions, kept in the registry (the data dir's SQLite database).

Invariants:

- **Only the SHA-256 of a session token is stored**; the token itself lives in the browser's
  cookie alone, so a copy of the database opens no session. The admin key a session signed in
  with is never stored either: a session keeps the key's id (the audit actor) and scope.
- **Sessions outlive the process**: a restart (or a second server on the same data dir) signs
  no one out.
- **A session ends** at its expiry (``RAGWALL_CONSOLE_SESSION_MINUTES`` after sign-in), at sign
  out (its row is deleted), or when its key is revoked (the console checks the key on every
  request); an expired row never answers and is deleted when presented or at the next sign-in.
- **At most** :data:`MAX_SESSIONS` live sessions: a sign-in beyond that ends the one that
  expires first.
- Each session has its own CSRF token, compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

MAX_SESSIONS = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_sessions (
    token_sha256 TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    flash TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS console_sessions_expiry ON console_sessions (expires_at);
"""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class ConsoleSession:
    """A live session as one request sees it. ``id`` is the cookie's token (never stored)."""

    id: str
    key_id: str
    scope: str
    csrf: str
    expires_at: float  # time.time()
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, message), shown once
    store: SessionStore | None = field(default=None, repr=False, compare=False)

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= self.expires_at

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token).encode(), self.csrf.encode())

    def say(self, message: str, kind: str = "ok") -> None:
        """A message for the next page this session loads (kept in the registry)."""
        self.flash.append((kind, message))
        if self.store is not None:
            self.store.add_flash(self.id, kind, message)

    def take_flash(self) -> list[tuple[str, str]]:
        shown, self.flash = self.flash, []
        if shown and self.store is not None:
            self.store.clear_flash(self.id)
        return shown


class SessionStore:
    """The console's sessions, in the ``console_sessions`` table of the state database."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def create(self, key_id: str, scope: str, minutes: int) -> ConsoleSession:
        """A new session for a signed-in key; expired sessions are purged first."""
        now = time.time()
        session = ConsoleSession(
            id=secrets.token_urlsafe(32),
            key_id=key_id,
            scope=scope,
            csrf=secrets.token_urlsafe(32),
            expires_at=now + minutes * 60,
            store=self,
        )
        with self._tx() as db:
            db.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))
            (live,) = db.execute("SELECT COUNT(*) FROM console_sessions").fetchone()
            if live >= MAX_SESSIONS:  # the one nearest its end goes first
                db.execute(
                    "DELETE FROM console_sessions WHERE token_sha256 IN (SELECT token_sha256 "
                    "FROM console_sessions ORDER BY expires_at LIMIT ?)",
                    (live - MAX_SESSIONS + 1,),
                )
            db.execute(
                "INSERT INTO console_sessions (token_sha256, key_id, scope, csrf, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                (token_digest(session.id), key_id, scope, session.csrf, now, session.expires_at),
            )
        return session

    def lookup(self, token: str | None) -> tuple[ConsoleSession | None, bool]:
        """(the live session, whether an expired one was presented)."""
        if not token:
            return None, False
        digest = token_digest(token)
        with self._lock:
            row = self._db.execute(
                "SELECT key_id, scope, csrf, expires_at, flash FROM console_sessions "
                "WHERE token_sha256 = ?",
                (digest,),
            ).fetchone()
            if row is None:
                return None, False
            if row[3] <= time.time():
                self._db.execute("DELETE FROM console_sessions WHERE token_sha256 = ?", (digest,))
                return None, True
        flash = [(str(k), str(m)) for k, m in json.loads(row[4])]
        return ConsoleSession(token, row[0], row[1], row[2], row[3], flash, self), False

    def end(self, token: str | None) -> None:
        """Sign out: the session's row is deleted."""
        with self._lock:
            self._db.execute(
                "DELETE FROM console_sessions WHERE token_sha256 = ?", (token_digest(token or ""),)
            )

    def expire_now(self, token: str) -> None:
        """Make a session expired (tests and operators: the next request is refused)."""
        with self._lock:
            self._db.execute(
                "UPDATE console_sessions SET expires_at = 0 WHERE token_sha256 = ?",
                (token_digest(token),),
            )

    def add_flash(self, token: str, kind: str, message: str) -> None:
        with self._tx() as db:
            digest = token_digest(token)
            row = db.execute(
                "SELECT flash FROM console_sessions WHERE token_sha256 = ?", (digest,)
            ).fetchone()
            if row is not None:
                shown = [*json.loads(row[0]), [kind, message]]
                db.execute(
                    "UPDATE console_sessions SET flash = ? WHERE token_sha256 = ?",
                    (json.dumps(shown), digest),
                )

    def clear_flash(self, token: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE console_sessions SET flash = '[]' WHERE token_sha256 = ?",
                (token_digest(token),),
            )
