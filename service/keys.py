"""Scoped API keys, stored hashed in the data directory's SQLite database.

A key reads ``rw_<key id>_<secret>``. Only the SHA-256 of the secret is stored, so a key is shown
once, at creation. Scopes: ``retrieve`` (read) and ``admin`` (sources, ingest; it may retrieve
too). A key may be bound to access groups: it then sees only chunks that share one of them.

Invariant: **a group-bound key never holds the admin scope.** Admin views (sources, flags, jobs,
drift reports, quarantine lists, index versions, metrics, the audit trail) are whole-index views,
so admin is for unrestricted keys only: :meth:`KeyStore.create` refuses ``admin`` with groups, and
a key stored that way by an older release authenticates as a ``retrieve`` key
(:attr:`Principal.group_bound_admin` set, so a refusal can say why); it still retrieves, filtered
by its groups.

A key may carry a **budget** (:class:`Budget`): at most ``rpm`` calls in any 60 s and
``daily_requests`` in any 24 h. The store only keeps the numbers; ``ragwall.service.budgets``
enforces them. Changing a budget takes effect at the key's next call (each call reads the key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ragwall.errors import ApiKeyError, KeyNotFound
from ragwall.settings import POLICIES

Scope = Literal["retrieve", "admin"]
SCOPES: tuple[str, ...] = ("retrieve", "admin")
_KEY = re.compile(r"^rw_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    scope TEXT NOT NULL,
    groups TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""
#: Columns added after the first release, with their SQL types (added when missing).
_ADDED_COLUMNS = {
    "policy": "TEXT",
    "rpm": "INTEGER",
    "daily_requests": "INTEGER",
    "min_trust": "REAL",
}
#: The largest budgets a key may hold. A moving window keeps one timestamp per call in the
#: window, so the daily bound also bounds the limiter's memory per key (about 30 MB).
MAX_RPM = 100_000
MAX_DAILY_REQUESTS = 200_000


@dataclass(frozen=True)
class Budget:
    """A key's request budget: at most ``rpm`` calls in any 60 s and ``daily_requests`` calls
    in any 24 h (moving windows); ``None``: no limit of that kind."""

    rpm: int | None = None
    daily_requests: int | None = None

    def __post_init__(self) -> None:
        for name, value, top in (
            ("rpm", self.rpm, MAX_RPM),
            ("daily_requests", self.daily_requests, MAX_DAILY_REQUESTS),
        ):
            if value is not None and not (isinstance(value, int) and 1 <= value <= top):
                raise ApiKeyError(
                    f"{name} must be a whole number from 1 to {top} (or no limit), not {value!r}"
                )

    @property
    def limited(self) -> bool:
        return self.rpm is not None or self.daily_requests is not None

    def describe(self) -> dict[str, int | None]:
        return {"rpm": self.rpm, "daily_requests": self.daily_requests}


UNLIMITED = Budget()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key id, its scope, and the groups it may see (None: unrestricted)."""

    key_id: str
    scope: str
    groups: tuple[str, ...] | None
    policy: str | None = None  # the key's defense policy; None: the server's default
    #: Stored as an admin key bound to groups (an older release allowed it): it acts as a
    #: retrieve key, and admin routes say why they refuse it.
    group_bound_admin: bool = False
    #: Set when the caller presented an access token (``ragwall.service.tokens``) minted from
    #: the key ``key_id``: the token's id, and the workflow and actor it names.
    token_id: str | None = None
    workflow_id: str | None = None
    actor: str | None = None
    #: The key's budget (a token shares its parent key's; ``ragwall.service.budgets``).
    budget: Budget = UNLIMITED
    #: The least chunk trust the key may see (None: no floor); it binds every view, as groups do.
    min_trust: float | None = None

    def audit_context(self) -> dict[str, str]:
        """What an audit record says of the caller beyond its key id: the token, workflow and
        actor, when a token named them."""
        found = {"token": self.token_id, "workflow_id": self.workflow_id, "act": self.actor}
        return {k: v for k, v in found.items() if v is not None}

    def allows(self, scope: str) -> bool:
        return self.scope == "admin" or self.scope == scope

    def refusal(self, scope: str) -> str:
        """Why this key may not use a route that needs ``scope`` (for a 403's message)."""
        if scope == "admin" and self.group_bound_admin:
            return group_bound_admin_message(self.key_id, self.groups or ())
        return f"this key has scope {self.scope!r}; {scope!r} is needed"


def group_bound_admin_message(key_id: str, groups: tuple[str, ...]) -> str:
    return (
        f"key {key_id} is an admin key bound to groups {list(groups)}; group-bound keys cannot "
        "hold the admin scope (admin views cover the whole index), so it may only retrieve. "
        "Replace it with an unrestricted admin key (`ragwall keys create --scope admin`, no "
        f"--group) and revoke it (`ragwall keys revoke {key_id}`)"
    )


DEV_PRINCIPAL = Principal(key_id="dev-mode", scope="admin", groups=None)


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    scope: str
    groups: tuple[str, ...] | None
    created_at: str
    revoked_at: str | None
    policy: str | None = None
    budget: Budget = UNLIMITED
    min_trust: float | None = None

    @property
    def effective_scope(self) -> str:
        """The scope the key acts with: an admin key bound to groups (stored by an older
        release) acts as ``retrieve``."""
        return "retrieve" if self.scope == "admin" and self.groups is not None else self.scope


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(api_keys)")}
        for column, kind in _ADDED_COLUMNS.items():  # keys made by an older release
            if column not in columns:
                self._db.execute(f"ALTER TABLE api_keys ADD COLUMN {column} {kind}")

    def close(self) -> None:
        self._db.close()

    def create(
        self,
        scope: str,
        groups: list[str] | None = None,
        name: str = "",
        policy: str | None = None,
        budget: Budget = UNLIMITED,
        min_trust: float | None = None,
    ) -> tuple[str, KeyRecord]:
        """A new key; returns (the full key, to show once; its record)."""
        if scope not in SCOPES:
            raise ApiKeyError(f"scope must be one of {list(SCOPES)}, not {scope!r}")
        if min_trust is not None and not 0.0 <= min_trust <= 1.0:
            raise ApiKeyError(
                f"min_trust must lie in 0..1 (a trust prior's scale), not {min_trust}"
            )
        if policy is not None and policy not in POLICIES:
            raise ApiKeyError(f"policy must be one of {list(POLICIES)}, not {policy!r}")
        if scope == "admin" and groups:
            raise ApiKeyError(
                "an admin key cannot be bound to groups: admin views (sources, flags, jobs, drift "
                "reports, metrics, the audit trail) cover the whole index. Create an unrestricted "
                "admin key (no --group), or a retrieve key bound to the groups"
            )
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = KeyRecord(
            id=key_id,
            name=name or f"{scope}-key",
            scope=scope,
            groups=tuple(sorted(set(groups))) if groups else None,
            created_at=datetime.now(UTC).isoformat(),
            revoked_at=None,
            policy=policy,
            budget=budget,
            min_trust=min_trust,
        )
        self._db.execute(
            "INSERT INTO api_keys (id, name, secret_sha256, scope, groups, created_at, policy, "
            "rpm, daily_requests, min_trust) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.name,
                _digest(secret),
                record.scope,
                json.dumps(list(record.groups)) if record.groups is not None else None,
                record.created_at,
                record.policy,
                budget.rpm,
                budget.daily_requests,
                min_trust,
            ),
        )
        return f"rw_{key_id}_{secret}", record

    def authenticate(self, key: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown, revoked or wrong key."""
        match = _KEY.match(key.strip())
        if not match:
            return None
        key_id, secret = match.groups()
        row = self._db.execute(
            "SELECT secret_sha256, scope, groups, revoked_at, policy, rpm, daily_requests, "
            "min_trust FROM api_keys WHERE id = ?",
            (key_id,),
        ).fetchone()
        if row is None or row[3] is not None:
            return None
        if not hmac.compare_digest(row[0], _digest(secret)):
            return None
        groups = tuple(json.loads(row[2])) if row[2] is not None else None
        budget = Budget(row[5], row[6])
        if row[1] == "admin" and groups is not None:  # stored by an older release: not admin
            return Principal(
                key_id,
                "retrieve",
                groups,
                row[4],
                group_bound_admin=True,
                budget=budget,
                min_trust=row[7],
            )
        return Principal(
            key_id=key_id,
            scope=row[1],
            groups=groups,
            policy=row[4],
            budget=budget,
            min_trust=row[7],
        )

    def get(self, key_id: str) -> KeyRecord | None:
        """One key's record (revoked ones too), or ``None``."""
        found = [r for r in self._select("WHERE id = ?", (key_id,))]
        return found[0] if found else None

    def list(self) -> list[KeyRecord]:
        return self._select("ORDER BY created_at")

    def _select(self, where: str, args: tuple = ()) -> list[KeyRecord]:
        rows = self._db.execute(
            "SELECT id, name, scope, groups, created_at, revoked_at, policy, rpm, daily_requests, "
            f"min_trust FROM api_keys {where}",
            args,
        )
        return [
            KeyRecord(
                r[0],
                r[1],
                r[2],
                tuple(json.loads(r[3])) if r[3] is not None else None,
                r[4],
                r[5],
                r[6],
                Budget(r[7], r[8]),
                r[9],
            )
            for r in rows
        ]

    def revoke(self, key_id: str) -> None:
        cur = self._db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (datetime.now(UTC).isoformat(), key_id),
        )
        if cur.rowcount == 0:
            raise KeyNotFound(f"no active key {key_id!r}; `ragwall keys list` shows them")

    def set_budget(self, key_id: str, budget: Budget) -> KeyRecord:
        """Replace an active key's budget; returns its new record."""
        cur = self._db.execute(
            "UPDATE api_keys SET rpm = ?, daily_requests = ? WHERE id = ? AND revoked_at IS NULL",
            (budget.rpm, budget.daily_requests, key_id),
        )
        if cur.rowcount == 0:
            raise KeyNotFound(f"no active key {key_id!r}; `ragwall keys list` shows them")
        record = self.get(key_id)
        assert record is not None
        return record
