"""Request and response models of the access routes: access tokens, keys and their budgets,
and the usage report.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragwall.api.models import clean_text
from ragwall.service import MAX_DAILY_REQUESTS, MAX_RPM


class TokenRequest(BaseModel):
    """An access token narrower than the caller's key."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ttl_s: int | None = Field(
        default=None,
        ge=1,
        description="Lifetime in seconds: default 900 (or RAGWALL_TOKEN_MAX_TTL_S if lower), at "
        "most RAGWALL_TOKEN_MAX_TTL_S.",
    )
    groups: list[str] | None = Field(
        default=None,
        max_length=100,
        description="A subset of the key's groups (default: the key's).",
    )
    scopes: list[Literal["retrieve", "admin"]] | None = Field(
        default=None, max_length=2, description="A subset of the key's scopes (default: the key's)."
    )
    workflow_id: str | None = Field(
        default=None, max_length=128, description="Names the workflow in the audit trail."
    )
    actor: str | None = Field(
        default=None, max_length=128, description="The agent's name, for the audit trail."
    )

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            clean_text(item)
            if not item or len(item) > 200:
                raise ValueError("each group must be 1-200 characters")
        return value


class TokenOut(BaseModel):
    token: str
    token_type: Literal["Bearer"]
    expires_at: str
    jti: str
    groups: list[str] | None
    scopes: list[str]


class KeyOut(BaseModel):
    """An API key's record (never its secret)."""

    id: str
    name: str
    scope: str
    groups: list[str] | None
    policy: str | None
    rpm: int | None = Field(description="Calls allowed in any 60 s (null: no limit).")
    daily_requests: int | None = Field(description="Calls allowed in any 24 h (null: no limit).")
    min_trust: float | None = Field(
        default=None, description="The key's trust floor: it never sees chunks below it."
    )
    created_at: str
    revoked_at: str | None


class BudgetChange(BaseModel):
    """A key's new budget: a field left out stays as it is; null removes that limit."""

    model_config = ConfigDict(extra="forbid", strict=True)

    rpm: int | None = Field(default=None, ge=1, le=MAX_RPM)
    daily_requests: int | None = Field(default=None, ge=1, le=MAX_DAILY_REQUESTS)


class UsageRowOut(BaseModel):
    """One caller's use: calls served, hits and context tokens returned, refusals, 429s."""

    key: str
    requests: int
    hits: int
    context_tokens: int
    refusals: int
    rate_limited: int


class UsageOut(BaseModel):
    since: str
    by: Literal["key", "workflow", "actor"]
    rows: list[UsageRowOut]
    uncounted_refusals: int = Field(
        description="Refusals left out of the audit trail by its per-minute bound (callers "
        "unknown); the `ragwall_rate_limited_total` metric counts every 429."
    )
