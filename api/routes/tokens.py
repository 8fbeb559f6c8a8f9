"""Access tokens: ``POST /v1/tokens`` mints one narrower than the caller's key, ``DELETE
/v1/tokens/{jti}`` revokes one, ``GET /.well-known/jwks.json`` publishes the public key that
verifies them (``ragwall.service.tokens``).

Asking for wider groups or scopes than the key holds is 403 ``forbidden``; a ``ttl_s`` over
``RAGWALL_TOKEN_MAX_TTL_S`` is 422. A token cannot mint another (403).

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from typing import Any

from fastapi import APIRouter

from ragwall.api.access_models import TokenOut, TokenRequest
from ragwall.api.deps import Reader, SvcDep

router = APIRouter(tags=["tokens"])


@router.post("/v1/tokens", response_model=TokenOut, status_code=201)
def mint_token(body: TokenRequest, svc: SvcDep, who: Reader) -> TokenOut:
    """A short-lived token for an agent: a subset of this key's groups and scopes."""
    minted = svc.mint_token(who, body.ttl_s, body.groups, body.scopes, body.workflow_id, body.actor)
    return TokenOut(
        token=minted.token,
        token_type="Bearer",
        expires_at=minted.expires_at.isoformat(),
        jti=minted.jti,
        groups=list(minted.groups) if minted.groups is not None else None,
        scopes=list(minted.scopes),
    )


@router.delete("/v1/tokens/{jti}", status_code=204)
def revoke_token(jti: str, svc: SvcDep, who: Reader) -> None:
    """Revoke a token at once (its own key, or an unrestricted admin key)."""
    svc.revoke_token(who, jti)


@router.get("/.well-known/jwks.json")
def jwks(svc: SvcDep) -> dict[str, Any]:
    """The public key that verifies Ragwall's access tokens (EdDSA, Ed25519)."""
    return svc.jwks()
