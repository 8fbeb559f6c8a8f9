"""``ragwall keys …``: create, list and revoke API keys, and set their budgets.

Invariants: a key is shown once (only its hash is stored), and never listed; with ``--out`` it is
written to a new owner-only file, reserved before the key exists, and a key whose file could not
be written is revoked at once (its secret is lost, so it must not stay usable).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ragwall.api import secret_file
from ragwall.api.cli.common import actor, err, out, reported, run, service
from ragwall.service import MAX_DAILY_REQUESTS, MAX_RPM, Budget

Rpm = Annotated[
    int | None,
    typer.Option(
        "--rpm", min=1, max=MAX_RPM, help="Budget: calls allowed in any 60 s (per server process)."
    ),
]
DailyRequests = Annotated[
    int | None,
    typer.Option(
        "--daily-requests",
        min=1,
        max=MAX_DAILY_REQUESTS,
        help="Budget: calls allowed in any 24 h (per server process).",
    ),
]


def keys_create(
    scope: Annotated[str, typer.Option(help="retrieve (read) or admin.")] = "retrieve",
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="Bind to a group (repeat).")
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    policy: Annotated[
        str | None,
        typer.Option(help="Flagged hits for this key: flag, demote or drop (default: server's)."),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the key to this file (mode 0600) instead of printing it."
        ),
    ] = None,
    rpm: Rpm = None,
    daily_requests: DailyRequests = None,
    min_trust: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Trust floor: the key never sees chunks below it (0.6 keeps external and "
            "untrusted sources out with the default priors).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a key and print it once (only its hash is stored). An admin key cannot be bound
    to groups (admin views cover the whole index). With --rpm or --daily-requests, a call past
    the budget gets 429 (tokens minted from the key share it). With --min-trust, every view of
    the key (search, fetch, sources) leaves out chunks and sources below that trust."""
    with reported():  # --out: the new file first, so a key is never created with nowhere to go
        fd = None if out_file is None else secret_file.reserve(out_file)
    try:
        with service() as svc:
            with reported():
                key, record = svc.create_key(
                    actor(),
                    scope,
                    group or None,
                    name,
                    policy,
                    Budget(rpm, daily_requests),
                    min_trust,
                )
            if fd is not None:
                try:
                    secret_file.write(fd, key)
                    fd = None
                except OSError as exc:  # the secret is lost: the key must not stay usable
                    svc.revoke_key(actor(), record.id)
                    err.print(
                        f"[red]error:[/red] could not write the key to {out_file} "
                        f"({exc.strerror or exc}); key {record.id} was revoked"
                    )
                    raise typer.Exit(2) from exc
    finally:
        if fd is not None and out_file is not None:
            secret_file.discard(fd, out_file)
    if out_file is not None:
        err.print(
            f"key {record.id} (scope {record.scope}, groups "
            f"{list(record.groups or []) or 'all'}) written to {out_file} (mode 0600); "
            f"read it with: cat {out_file}"
        )
        return
    if as_json:
        print(
            json.dumps(
                {
                    "key": key,
                    "id": record.id,
                    "scope": record.scope,
                    "groups": list(record.groups) if record.groups is not None else None,
                    "min_trust": record.min_trust,
                }
            )
        )
        return
    err.print(
        f"key {record.id} (scope {record.scope}, groups {list(record.groups or []) or 'all'}); "
        "it is shown once, store it now:"
    )
    print(key)


def keys_list() -> None:
    """List keys (never their secrets)."""
    table = Table("id", "name", "scope", "groups", "min trust", "budget", "created", "revoked")
    for r in run(lambda svc: svc.list_keys()):
        table.add_row(
            r.id,
            r.name,
            r.effective_scope
            if r.effective_scope == r.scope
            else f"{r.effective_scope} (stored as {r.scope}: group-bound keys cannot be admin)",
            ",".join(r.groups) if r.groups is not None else "(all)",
            "" if r.min_trust is None else f"{r.min_trust:g}",
            describe_budget(r.budget),
            r.created_at[:19],
            (r.revoked_at or "")[:19],
        )
    out.print(table)


def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id."""
    run(lambda svc: svc.revoke_key(actor(), key_id))
    out.print(f"revoked {key_id}")


def keys_set(
    key_id: str,
    rpm: Rpm = None,
    daily_requests: DailyRequests = None,
    no_rpm: Annotated[bool, typer.Option("--no-rpm", help="Remove the per-minute limit.")] = False,
    no_daily_requests: Annotated[
        bool, typer.Option("--no-daily-requests", help="Remove the per-day limit.")
    ] = False,
) -> None:
    """Change a key's budget; it applies from the key's next call, on a running server too.
    Options left out stay as they are."""
    changes: dict[str, int | None] = {}
    for name, value, clear in (
        ("rpm", rpm, no_rpm),
        ("daily_requests", daily_requests, no_daily_requests),
    ):
        flag = name.replace("_", "-")
        if value is not None and clear:
            err.print(f"[red]error:[/red] give --{flag} or --no-{flag}, not both")
            raise typer.Exit(2)
        if value is not None or clear:
            changes[name] = value
    if not changes:
        err.print(
            "[red]error:[/red] nothing to change: give --rpm, --daily-requests, --no-rpm or "
            "--no-daily-requests"
        )
        raise typer.Exit(2)
    record = run(lambda svc: svc.set_key_budget(actor(), key_id, changes))
    out.print(f"key {record.id}: budget {describe_budget(record.budget)}")


def describe_budget(budget: Budget) -> str:
    parts = []
    if budget.rpm is not None:
        parts.append(f"{budget.rpm}/min")
    if budget.daily_requests is not None:
        parts.append(f"{budget.daily_requests}/day")
    return ", ".join(parts) or "none"
