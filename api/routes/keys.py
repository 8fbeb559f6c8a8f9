"""API keys and their budgets (admin keys only): ``GET /v1/keys`` lists them (never a secret),
``PATCH /v1/keys/{key_id}`` changes a key's budget (audited as ``key.budget``); ``GET
/v1/usage`` reports calls, hits, context tokens, refusals and 429s per key, workflow or actor.

A budget field left out of the PATCH body stays as it is; ``null`` removes that limit. An unknown
or revoked key is 404 ``key_not_found``. Keys are created and revoked with ``ragwall keys``, where
the secret is shown once on the operator's terminal.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from ragwall.api.access_models import BudgetChange, KeyOut, UsageOut, UsageRowOut
from ragwall.api.deps import Admin, SvcDep
from ragwall.durations import parse_duration
from ragwall.service import KeyRecord

router = APIRouter(tags=["keys"])


def key_out(r: KeyRecord) -> KeyOut:
    return KeyOut(
        id=r.id,
        name=r.name,
        scope=r.effective_scope,
        groups=list(r.groups) if r.groups is not None else None,
        policy=r.policy,
        rpm=r.budget.rpm,
        daily_requests=r.budget.daily_requests,
        min_trust=r.min_trust,
        created_at=r.created_at,
        revoked_at=r.revoked_at,
    )


@router.get("/v1/keys", response_model=list[KeyOut])
def list_keys(svc: SvcDep, who: Admin) -> list[KeyOut]:
    """Every key (revoked ones too), with its scope, groups and budget."""
    return [key_out(r) for r in svc.list_keys()]


@router.patch("/v1/keys/{key_id}", response_model=KeyOut)
def set_key_budget(key_id: str, body: BudgetChange, svc: SvcDep, who: Admin) -> KeyOut:
    """Change a key's budget; it applies from the key's next call (its tokens' too)."""
    return key_out(svc.set_key_budget(who.key_id, key_id, body.model_dump(exclude_unset=True)))


@router.get("/v1/usage", response_model=UsageOut)
def get_usage(
    svc: SvcDep,
    who: Admin,
    since: Annotated[str, Query(description="How far back: 30m, 24h, 7d.")] = "24h",
    by: Annotated[Literal["key", "workflow", "actor"], Query()] = "key",
) -> UsageOut:
    """Calls served, hits and context tokens returned, refusals and 429s, from the audit trail."""
    report = svc.usage(parse_duration(since), by)
    return UsageOut(
        since=report.since.isoformat(),
        by=by,
        rows=[UsageRowOut(**vars(r)) for r in report.rows],
        uncounted_refusals=report.uncounted_refusals,
    )
