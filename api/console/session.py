"""Console sessions as the browser sees them: the cookies and the CSRF field.

Invariants:

- **The browser holds only a random session token** (an HttpOnly, SameSite=Strict cookie; Secure
  over https). The admin key it signed in with is never stored, in the cookie or on the server.
- The sessions themselves live in the registry, hashed (``Service.sign_in``,
  ``Service.console_session``): a restart signs no one out, and a copy of the database opens no
  session.
- **Every state-changing console request is refused unless its CSRF token matches the
  session's** (compared in constant time with :func:`hmac.compare_digest`).
"""

from __future__ import annotations

from ragwall.service import MAX_SESSIONS, ConsoleSession

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOGIN_COOKIE",
    "MAX_SESSIONS",
    "ConsoleSession",
]

COOKIE = "ragwall_console"
#: A pre-sign-in cookie whose value the sign-in form must echo (login CSRF).
LOGIN_COOKIE = "ragwall_console_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
