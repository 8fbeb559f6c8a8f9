"""``ragwall audit verify``: check the audit chain end to end.

Exit status: 0 when the chain is intact, 1 when a record was edited, removed or reordered.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ragwall.api.cli.common import err, out, run


def audit_verify(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check the audit chain; exit 1 if any record was edited, removed or reordered."""
    report = run(lambda svc: svc.verify_audit())
    if as_json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "problems": report.problems,
                    "warnings": report.warnings,
                }
            )
        )
    else:
        for problem in report.problems:
            err.print(f"[red]tampered:[/red] {problem}")
        for warning in report.warnings:
            err.print(f"[yellow]warning:[/yellow] {warning}")
        out.print(f"{report.records} records; chain {'intact' if report.ok else 'BROKEN'}")
    if not report.ok:
        raise typer.Exit(1)
