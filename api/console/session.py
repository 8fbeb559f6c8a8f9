"""Console sessions: server-side, with an expiry, each with its own CSRF token.

Invariants:

- **The browser holds only a random session id** (an HttpOnly, SameSite=Strict cookie; Secure
  over https). The admin key it signed in with is never stored, in the cookie or here: a session
  keeps the key's id (the audit actor) and scope.
- **A session ends** at its expiry (``RAGWALL_CONSOLE_SESSION_MINUTES`` after sign-in), at sign
  out, or when its key is revoked; an ended session is forgotten and never answers again.
- **Every state-changing console request is refused unless its CSRF token matches the
  session's** (compared in constant time with :func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "ragwall_console"
#: A pre-sign-in cookie whose value the sign-in form must echo (login CSRF).
LOGIN_COOKIE = "ragwall_console_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_SESSIONS = 1000


@dataclass
class ConsoleSession:
    id: str
    key_id: str
    scope: str
    csrf: str
    expires_at: float  # time.time()
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, message), shown once

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= self.expires_at

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token).encode(), self.csrf.encode())

    def say(self, message: str, kind: str = "ok") -> None:
        self.flash.append((kind, message))

    def take_flash(self) -> list[tuple[str, str]]:
        shown, self.flash = self.flash, []
        return shown


class SessionStore:
    """The console's sessions, in this process's memory (a restart signs everyone out)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, ConsoleSession] = {}

    def create(self, key_id: str, scope: str, minutes: int) -> ConsoleSession:
        now = time.time()
        session = ConsoleSession(
            id=secrets.token_urlsafe(32),
            key_id=key_id,
            scope=scope,
            csrf=secrets.token_urlsafe(32),
            expires_at=now + minutes * 60,
        )
        with self._lock:
            self._sessions = {k: s for k, s in self._sessions.items() if not s.expired(now)}
            if len(self._sessions) >= MAX_SESSIONS:  # the oldest sign-in goes first
                oldest = min(self._sessions.values(), key=lambda s: s.expires_at)
                del self._sessions[oldest.id]
            self._sessions[session.id] = session
        return session

    def lookup(self, session_id: str | None) -> tuple[ConsoleSession | None, bool]:
        """(the live session, whether an expired one was presented)."""
        if not session_id:
            return None, False
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None, False
            if session.expired():
                del self._sessions[session_id]
                return None, True
            return session, False

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def expire_now(self, session_id: str) -> None:
        """Make a session expired (tests and operators: the next request is refused)."""
        with self._lock:
            if session_id in self._sessions:
                self._sessions[session_id].expires_at = 0.0
