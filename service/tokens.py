"""Short-lived access tokens that Ragwall mints for agents: JWTs signed with EdDSA (Ed25519).

A key holder asks for a token narrower than its key (``POST /v1/tokens``): fewer groups, fewer
scopes, a lifetime of at most ``RAGWALL_TOKEN_MAX_TTL_S``, a workflow id and an actor name for the
audit trail. The token is accepted wherever a key is (the HTTP API, ``/mcp``), never by the admin
console.

Invariants:

- **Never wider than its key.** A token's groups are a subset of its key's (an unrestricted key may
  name any; a group-bound key's token without groups gets the key's), its scopes a subset of the
  key's, and a token with groups never holds ``admin`` (as no group-bound key does).
- **Dead with its key, at once.** Every verification looks the parent key up: a revoked key's
  tokens fail on their next use. A token revoked itself (``DELETE /v1/tokens/{jti}``) fails too;
  its record is kept until the token's expiry, then pruned.
- **The algorithm is never the token's to choose.** Verification takes ``EdDSA`` with this data
  dir's public key only; ``alg: none``, an HMAC token signed with the public key, a forged
  signature, another issuer or audience, an expired token: all ``None`` (401).
- **The signing key never leaves the data dir**: ``token-signing-key.pem``, mode 0600, created on
  first use (under a file lock, so two processes agree on one key); the public half is served as
  a JWKS (``GET /.well-known/jwks.json``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from filelock import FileLock

from ragwall.errors import Forbidden, InvalidRequest, NotFound
from ragwall.service.keys import KeyStore, Principal

ALGORITHM = "EdDSA"
DEFAULT_TTL_S = 900
LEEWAY_S = 30
WORKFLOW = re.compile(r"^[\x20-\x7e]{1,128}$")  # printable ASCII
_SCHEMA = """
CREATE TABLE IF NOT EXISTS access_tokens (
    jti TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
"""


@dataclass(frozen=True)
class Minted:
    token: str
    jti: str
    expires_at: datetime
    groups: tuple[str, ...] | None
    scopes: tuple[str, ...]


def key_scopes(scope: str) -> tuple[str, ...]:
    """What a key (or token) with ``scope`` may do: ``admin`` includes ``retrieve``."""
    return ("admin", "retrieve") if scope == "admin" else ("retrieve",)


class TokenIssuer:
    """Mints, verifies and revokes tokens (see the module docstring).

    Parameters:
        key_path: the signing key's file (created on first use).
        db_path: the SQLite database that records minted tokens and revocations.
        keys: the API keys, looked up on every verification.
        issuer, audience: the ``iss`` and ``aud`` claims written and required.
        max_ttl_s: the longest lifetime a token may ask for.
    """

    def __init__(
        self,
        key_path: Path,
        db_path: Path,
        keys: KeyStore,
        issuer: str,
        audience: str,
        max_ttl_s: int,
    ) -> None:
        self.key_path = key_path
        self.keys = keys
        self.issuer, self.audience, self.max_ttl_s = issuer, audience, max_ttl_s
        self._db = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._private: Ed25519PrivateKey | None = None

    def close(self) -> None:
        self._db.close()

    # -- the signing key -----------------------------------------------------------------------
    def _key(self) -> Ed25519PrivateKey:
        if self._private is None:
            with FileLock(str(self.key_path) + ".lock"):
                if not self.key_path.exists():
                    pem = Ed25519PrivateKey.generate().private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                    fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(pem)
                loaded = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise InvalidRequest(f"{self.key_path} is not an Ed25519 key: remove it")
            self._private = loaded
        return self._private

    def key_id(self) -> str:
        """The signing key's ``kid``: a hash of its public half."""
        raw = (
            self._key()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return uuid.uuid5(uuid.NAMESPACE_OID, raw.hex()).hex[:16]

    def jwks(self) -> dict[str, Any]:
        """The public key as a JSON Web Key Set."""
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(self._key().public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.key_id(), "alg": ALGORITHM, "use": "sig"}]}

    # -- minting -------------------------------------------------------------------------------
    def mint(
        self,
        who: Principal,
        ttl_s: int | None = None,
        groups: list[str] | None = None,
        scopes: list[str] | None = None,
        workflow_id: str | None = None,
        actor: str | None = None,
    ) -> Minted:
        """A token for ``who`` (a key's principal, never a token's), narrowed as asked; it lives
        ``ttl_s`` seconds (default: :data:`DEFAULT_TTL_S`, or the maximum if that is lower)."""
        if ttl_s is None:
            ttl_s = min(DEFAULT_TTL_S, self.max_ttl_s)
        if who.token_id is not None:
            raise Forbidden("tokens are minted with an API key, not with another token")
        if not 1 <= ttl_s <= self.max_ttl_s:
            raise InvalidRequest(
                f"ttl_s must be 1 to {self.max_ttl_s} seconds (RAGWALL_TOKEN_MAX_TTL_S)"
            )
        if workflow_id is not None and not WORKFLOW.match(workflow_id):
            raise InvalidRequest("workflow_id must be 1-128 printable ASCII characters")
        if actor is not None and not WORKFLOW.match(actor):
            raise InvalidRequest("actor must be 1-128 printable ASCII characters")
        granted = _narrow_groups(who.groups, groups)
        held = key_scopes(who.scope)
        wanted = tuple(sorted(set(scopes))) if scopes else held
        if not wanted or set(wanted) - set(held):
            raise Forbidden(f"this key holds the scopes {list(held)}; asked for {list(wanted)}")
        if "admin" in wanted and granted is not None:
            raise InvalidRequest("a token bound to groups cannot hold the admin scope")
        now = datetime.now(UTC).replace(microsecond=0)
        expires = now + timedelta(seconds=ttl_s)
        jti = uuid.uuid4().hex
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": who.key_id,
            "iat": now,
            "exp": expires,
            "jti": jti,
            "scope": " ".join(wanted),
            "groups": list(granted) if granted is not None else None,
            "wf": workflow_id,
            "act": actor,
        }
        token = jwt.encode(claims, self._key(), algorithm=ALGORITHM, headers={"kid": self.key_id()})
        self._prune(now)
        self._db.execute(
            "INSERT INTO access_tokens (jti, key_id, expires_at) VALUES (?, ?, ?)",
            (jti, who.key_id, expires.isoformat()),
        )
        return Minted(token, jti, expires, granted, wanted)

    # -- verifying -----------------------------------------------------------------------------
    def verify(self, token: str) -> Principal | None:
        """The token's principal, or ``None`` (see the module docstring)."""
        try:
            claims = jwt.decode(
                token,
                self._key().public_key(),
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "sub", "jti", "iss", "aud", "scope"]},
            )
        except jwt.PyJWTError:
            return None
        parent = self.keys.get(str(claims["sub"]))
        if parent is None or parent.revoked_at is not None:
            return None
        row = self._db.execute(
            "SELECT revoked_at FROM access_tokens WHERE jti = ?", (str(claims["jti"]),)
        ).fetchone()
        if row is None or row[0] is not None:
            return None
        scopes = str(claims["scope"]).split()
        groups = claims.get("groups")
        return Principal(
            key_id=parent.id,
            scope="admin" if "admin" in scopes else "retrieve",
            groups=tuple(groups) if groups is not None else None,
            policy=parent.policy,
            token_id=str(claims["jti"]),
            workflow_id=claims.get("wf"),
            actor=claims.get("act"),
            budget=parent.budget,  # a token spends its parent key's budget
            min_trust=parent.min_trust,  # and sees no more than its parent key
        )

    # -- revoking ------------------------------------------------------------------------------
    def revoke(self, who: Principal, jti: str) -> str:
        """Revoke a token; its parent key or an unrestricted admin may. Returns the parent key id.
        Another caller's token reads as one that does not exist."""
        row = self._db.execute(
            "SELECT key_id, revoked_at FROM access_tokens WHERE jti = ?", (jti,)
        ).fetchone()
        mine = row is not None and (row[0] == who.key_id or who.allows("admin"))
        if not mine:
            raise NotFound("no such token for this key (it may have expired)")
        self._db.execute(
            "UPDATE access_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE jti = ?",
            (datetime.now(UTC).isoformat(), jti),
        )
        return str(row[0])

    def _prune(self, now: datetime) -> None:
        """Forget tokens past their expiry (and the leeway): they fail verification anyway."""
        cutoff = (now - timedelta(seconds=LEEWAY_S + 1)).isoformat()
        self._db.execute("DELETE FROM access_tokens WHERE expires_at < ?", (cutoff,))


def _narrow_groups(held: tuple[str, ...] | None, asked: list[str] | None) -> tuple[str, ...] | None:
    if asked is None:
        return held
    wanted = tuple(sorted(set(asked)))
    if not wanted:
        raise InvalidRequest("groups must name at least one group (or be left out)")
    if held is not None and set(wanted) - set(held):
        extra = sorted(set(wanted) - set(held))
        raise Forbidden(f"this key's groups are {list(held)}; it cannot grant {extra}")
    return wanted


def describe(minted: Minted) -> dict[str, Any]:
    """A mint's audit fields (never the token)."""
    return {
        "jti": minted.jti,
        "expires_at": minted.expires_at.isoformat(),
        "groups": list(minted.groups) if minted.groups is not None else None,
        "scopes": list(minted.scopes),
    }
