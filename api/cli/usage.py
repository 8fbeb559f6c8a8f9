"""``ragwall usage``: calls served, hits and context tokens returned, refusals and 429s per key,
workflow or actor, read from the audit trail (``ragwall.service.usage`` says what counts)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ragwall.api.cli.common import err, out, reported, run
from ragwall.durations import parse_duration
from ragwall.service import GROUPINGS


def usage(
    since: Annotated[str, typer.Option(help="How far back: 30m, 24h, 7d.")] = "24h",
    by: Annotated[str, typer.Option(help="Group by key, workflow or actor.")] = "key",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Usage per key, workflow or actor over the last --since, from the audit trail."""
    with reported():
        window = parse_duration(since)
    if by not in GROUPINGS:
        err.print(f"[red]error:[/red] --by takes {', '.join(GROUPINGS)}, not {by!r}")
        raise typer.Exit(2)
    report = run(lambda svc: svc.usage(window, by))
    if as_json:
        print(
            json.dumps(
                {
                    "since": report.since.isoformat(),
                    "by": report.by,
                    "rows": [vars(r) for r in report.rows],
                    "uncounted_refusals": report.uncounted_refusals,
                }
            )
        )
        return
    table = Table(by, "requests", "hits", "context tokens", "refusals", "429s")
    for r in report.rows:
        table.add_row(
            r.key,
            str(r.requests),
            str(r.hits),
            str(r.context_tokens),
            str(r.refusals),
            str(r.rate_limited),
        )
    out.print(table)
    note = f"since {report.since.isoformat(timespec='seconds')}"
    if report.uncounted_refusals:
        note += (
            f"; {report.uncounted_refusals} refusals were left out of the audit trail by its "
            "per-minute bound (RAGWALL_REFUSAL_RECORDS_PER_MINUTE)"
        )
    err.print(note)
