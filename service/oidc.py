"""Access tokens from the company's identity provider (Okta, Entra ID, Keycloak, …): OIDC JWTs.

Configured with ``RAGWALL_OIDC_ISSUER`` and ``RAGWALL_OIDC_AUDIENCE`` (both required to turn it
on), ``RAGWALL_OIDC_JWKS_URL`` (default: the ``jwks_uri`` of the issuer's discovery document),
``RAGWALL_OIDC_GROUPS_CLAIM`` (default ``groups``) and ``RAGWALL_OIDC_SCOPES_CLAIM`` (default
``scope``; the values ``ragwall:retrieve`` and ``ragwall:admin``).

Invariants:

- **The algorithm is never the token's to choose**: RS256, ES256 or EdDSA, and only the one the
  provider's key declares (a key without ``alg`` admits the allow-list). ``alg: none`` and HMAC
  are refused before any key is looked at.
- **Everything is checked**: ``iss``, ``aud``, ``exp``, ``nbf`` and ``iat`` (30 s leeway), and a
  lifetime (``exp - iat``) of at most an hour; a token without a Ragwall scope is refused.
- **The provider is not hammered**: the JWKS is cached; an unknown ``kid`` refreshes it at most
  once per :data:`REFRESH_COOLDOWN_S`, so a flood of tokens with made-up ``kid`` values costs
  the provider one request a cooldown.
- **Groups bind as a key's do**: the groups claim becomes the store filter; a token that carries
  groups never acts as admin (as no group-bound key does).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
import jwt

from ragwall.service.keys import UNLIMITED, Budget, Principal

log = logging.getLogger("ragwall.service.oidc")

ALGORITHMS = ("RS256", "ES256", "EdDSA")
LEEWAY_S = 30
MAX_LIFETIME_S = 3600
REFRESH_COOLDOWN_S = 30.0
SCOPE_PREFIX = "ragwall:"
FETCH_TIMEOUT_S = 5.0


class OidcVerifier:
    """Verifies an identity provider's access tokens (see the module docstring).

    Parameters:
        issuer, audience: the ``iss`` and ``aud`` a token must carry.
        jwks_url: where the provider's keys are; ``None``: from its discovery document.
        groups_claim, scopes_claim: the claims that hold the caller's groups and scopes.
        budget: each subject's budget (``RAGWALL_OIDC_RPM``, ``RAGWALL_OIDC_DAILY_REQUESTS``).
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        groups_claim: str = "groups",
        scopes_claim: str = "scope",
        budget: Budget = UNLIMITED,
    ) -> None:
        self.issuer, self.audience = issuer, audience
        self.budget = budget
        self.groups_claim, self.scopes_claim = groups_claim, scopes_claim
        self._jwks_url = jwks_url
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def handles(self, claims: dict[str, Any]) -> bool:
        """Whether an (unverified) token names this provider as its issuer."""
        return claims.get("iss") == self.issuer

    def verify(self, token: str) -> Principal | None:
        """The token's principal, or ``None`` for any token that fails a check."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS or not isinstance(kid, str):
            return None
        key = self._key(kid)
        if key is None or (key.algorithm_name and key.algorithm_name != alg):
            return None
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        if int(claims["exp"]) - int(claims["iat"]) > MAX_LIFETIME_S:
            return None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal | None:
        raw_scopes = claims.get(self.scopes_claim) or ""
        scopes = raw_scopes.split() if isinstance(raw_scopes, str) else list(raw_scopes)
        granted = {s[len(SCOPE_PREFIX) :] for s in scopes if str(s).startswith(SCOPE_PREFIX)}
        if not granted & {"retrieve", "admin"}:
            return None
        raw_groups = claims.get(self.groups_claim)
        if raw_groups is not None and not isinstance(raw_groups, list):
            return None
        groups = tuple(sorted({str(g) for g in raw_groups})) if raw_groups is not None else None
        admin = "admin" in granted and groups is None
        return Principal(
            key_id=f"oidc:{claims['sub']}"[:128],
            scope="admin" if admin else "retrieve",
            groups=groups,
            group_bound_admin="admin" in granted and groups is not None,
            token_id=str(claims.get("jti")) if claims.get("jti") else None,
            actor=str(claims.get("azp") or claims.get("client_id") or "") or None,
            budget=self.budget,
        )

    # -- the provider's keys -------------------------------------------------------------------
    def _key(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= REFRESH_COOLDOWN_S:
                self._fetched_at = time.monotonic()
                try:
                    self._keys = self._fetch()
                except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWTError) as exc:
                    # keep the keys it had; the next refresh waits for the cooldown
                    log.warning("could not fetch the identity provider's keys: %s", exc)
            return self._keys.get(kid)

    def _fetch(self) -> dict[str, jwt.PyJWK]:
        with httpx.Client(timeout=FETCH_TIMEOUT_S, follow_redirects=False) as client:
            url = self._jwks_url
            if url is None:
                discovery = client.get(
                    self.issuer.rstrip("/") + "/.well-known/openid-configuration"
                )
                discovery.raise_for_status()
                url = str(discovery.json()["jwks_uri"])
            got = client.get(url)
            got.raise_for_status()
            found = {}
            for jwk in got.json().get("keys", []):
                if jwk.get("use", "sig") != "sig" or not jwk.get("kid"):
                    continue
                try:
                    found[str(jwk["kid"])] = jwt.PyJWK(jwk)
                except jwt.PyJWTError:
                    continue  # an algorithm or key type it does not know: skipped
            return found
