"""Access: API keys, admin console sessions, and refused calls, each audited.

Invariants:

- **A key's secret is shown once and never recorded**: the registry keeps its sha256, the audit
  record of its creation names its id, scope and groups (``ragwall.service.keys``).
- **Every key change and console sign-in or sign-out appends one audit record**, under the
  actor that made it.
- **A console session lives as long as its key**: a session whose key was revoked ends at its
  next use.
- **Refusals are audited, bounded**: at most ``RAGWALL_REFUSAL_RECORDS_PER_MINUTE`` records a
  minute, so a flood of bad calls cannot fill the disk; the next record written says how many
  were left out.
"""

from __future__ import annotations

import dataclasses
import getpass
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from ragwall.errors import InvalidRequest, KeyNotFound
from ragwall.service.audit import VerifyReport
from ragwall.service.keys import UNLIMITED, Budget, KeyRecord, Principal
from ragwall.service.runtime import Runtime
from ragwall.service.sessions import ConsoleSession
from ragwall.service.tokens import Minted, describe


def cli_actor() -> str:
    """The audit actor for the command line: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli"


class Access:
    """Key, session and refusal operations over the runtime's key store, sessions and audit
    log."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._refusal_lock = threading.Lock()
        self._refusal_window = time.monotonic()
        self._refusals_in_window = self._refusals_suppressed = 0

    def create_key(
        self,
        actor: str,
        scope: str = "retrieve",
        groups: Sequence[str] | None = None,
        name: str = "",
        policy: str | None = None,
        budget: Budget = UNLIMITED,
        min_trust: float | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; returns its secret (shown once, never recorded) and its record."""
        key, record = self.rt.keys.create(
            scope, list(groups) if groups else None, name, policy, budget, min_trust
        )
        self.rt.audit.append(
            "key.create",
            actor,
            created_key_id=record.id,
            scope=record.scope,
            groups=list(record.groups) if record.groups is not None else None,
            name=record.name,
            policy=record.policy,
            min_trust=record.min_trust,
            **budget.describe(),
        )
        return key, record

    def revoke_key(self, actor: str, key_id: str) -> None:
        self.rt.keys.revoke(key_id)
        self.rt.audit.append("key.revoke", actor, revoked_key_id=key_id)

    def set_key_budget(
        self, actor: str, key_id: str, changes: Mapping[str, int | None]
    ) -> KeyRecord:
        """Change a key's budget: ``changes`` maps ``rpm`` and/or ``daily_requests`` to a new
        value (``None``: no limit of that kind); a field it leaves out stays. Audited."""
        unknown = set(changes) - {"rpm", "daily_requests"}
        if unknown:
            raise InvalidRequest(f"a budget has rpm and daily_requests, not {sorted(unknown)}")
        current = self.rt.keys.get(key_id)
        if current is None or current.revoked_at is not None:
            raise KeyNotFound(f"no active key {key_id!r}; `ragwall keys list` shows them")
        budget = dataclasses.replace(current.budget, **changes)
        record = self.rt.keys.set_budget(key_id, budget)
        self.rt.audit.append("key.budget", actor, changed_key_id=key_id, **budget.describe())
        return record

    def authenticate(self, credential: str) -> Principal | None:
        """The caller an API key or an access token names (Ragwall's own, or the identity
        provider's when one is configured: ``ragwall.service.oidc``); ``None`` for an invalid,
        expired or revoked one (a token dies with its key: ``ragwall.service.tokens``)."""
        if credential.count(".") != 2:  # not a JWT (header.payload.signature): a key
            return self.rt.keys.authenticate(credential)
        oidc = self.rt.oidc
        if oidc is not None:
            try:  # only to route it: each verifier checks everything itself
                unverified = jwt.decode(credential, options={"verify_signature": False})
            except jwt.PyJWTError:
                return None
            if oidc.handles(unverified):
                return oidc.verify(credential)
        return self.rt.tokens.verify(credential)

    def mint_token(
        self,
        who: Principal,
        ttl_s: int | None = None,
        groups: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        workflow_id: str | None = None,
        actor: str | None = None,
    ) -> Minted:
        """A short-lived token narrower than ``who``'s key; audited (never the token itself)."""
        minted = self.rt.tokens.mint(
            who,
            ttl_s,
            list(groups) if groups is not None else None,
            list(scopes) if scopes is not None else None,
            workflow_id,
            actor,
        )
        self.rt.audit.append(
            "token.mint", who.key_id, workflow_id=workflow_id, act=actor, **describe(minted)
        )
        return minted

    def revoke_token(self, who: Principal, jti: str) -> None:
        """Revoke a token (its parent key or an unrestricted admin key may); audited."""
        parent = self.rt.tokens.revoke(who, jti)
        self.rt.audit.append(
            "token.revoke", who.key_id, jti=jti, parent_key_id=parent, **who.audit_context()
        )

    def jwks(self) -> dict[str, Any]:
        return self.rt.tokens.jwks()

    def list_keys(self) -> list[KeyRecord]:
        """Every key the registry holds (revoked ones too), without secrets."""
        return self.rt.keys.list()

    def verify_audit(self) -> VerifyReport:
        """Re-hash the audit chain end to end (``AuditLog.verify``)."""
        return self.rt.audit.verify()

    def record_session(self, key_id: str, action: str) -> None:
        """Audit an admin console sign-in or sign-out (``action``: ``sign_in`` or
        ``sign_out``) under the key's id; the session itself lives in the console."""
        if action not in ("sign_in", "sign_out"):
            raise InvalidRequest(f"action must be sign_in or sign_out, not {action!r}")
        self.rt.audit.append(f"console.{action}", key_id)

    def sign_in(self, who: Principal) -> ConsoleSession:
        """Open an admin console session for ``who`` (an admin key's principal; the key itself
        is never stored) lasting ``RAGWALL_CONSOLE_SESSION_MINUTES``; audited."""
        if not who.allows("admin"):
            raise InvalidRequest(who.refusal("admin"))
        if who.token_id is not None:
            raise InvalidRequest("the admin console takes an API key, not an access token")
        session = self.rt.sessions.create(
            who.key_id, who.scope, self.rt.settings.console_session_minutes
        )
        self.record_session(who.key_id, "sign_in")
        return session

    def console_session(self, token: str | None) -> tuple[ConsoleSession | None, bool]:
        """The live session a console cookie holds, and whether one had expired; a session whose
        key has been revoked since ends here (``None, True``)."""
        session, expired = self.rt.sessions.lookup(token)
        if session is not None and not any(
            k.id == session.key_id and k.revoked_at is None for k in self.rt.keys.list()
        ):
            self.rt.sessions.end(session.id)
            return None, True
        return session, expired

    def sign_out(self, session: ConsoleSession) -> None:
        """End a console session; audited."""
        self.rt.sessions.end(session.id)
        self.record_session(session.key_id, "sign_out")

    def record_refusal(
        self, who: Principal | str | None, method: str, route: str, status: int, code: str
    ) -> bool:
        """Audit a refused call (401, 403, 413, 422, 429, …): who (when known: the caller, so
        its key and the token, workflow and actor it named; or only a key id), what, why.

        At most ``RAGWALL_REFUSAL_RECORDS_PER_MINUTE`` are written a minute, so a flood of bad
        calls cannot fill the disk; the next record written says how many were left out.
        Returns whether this one was written.
        """
        with self._refusal_lock:
            now = time.monotonic()
            if now - self._refusal_window >= 60.0:
                self._refusal_window, self._refusals_in_window = now, 0
            if self._refusals_in_window >= self.rt.settings.refusal_records_per_minute:
                self._refusals_suppressed += 1
                return False
            self._refusals_in_window += 1
            suppressed, self._refusals_suppressed = self._refusals_suppressed, 0
        self.rt.audit.append(
            "refused",
            _key_id(who),
            method=method,
            route=route[:200],
            status=status,
            reason=code,
            suppressed_before=suppressed,
            **(who.audit_context() if isinstance(who, Principal) else {}),
        )
        return True


def _key_id(who: Principal | str | None) -> str:
    if isinstance(who, Principal):
        return who.key_id
    return who or "anonymous"
