"""``ragwall sources …`` and ``ragwall documents …``: register, list and remove sources, and
quarantine or release sources and documents.

Each command is one service call (``common.run``) plus its output; ``sources remove`` with
``--url`` is one request to the running server that holds the data dir.
"""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import quote

import typer
from rich.table import Table

from ragwall.api import remote
from ragwall.api.cli.common import actor, out, reported, run
from ragwall.durations import format_duration, parse_duration
from ragwall.errors import InvalidRequest
from ragwall.service import SyncState
from ragwall.settings import MAX_WEB_PAGES, TRUST_TIERS

#: ``sources remove`` on a data dir that a running server holds.
REMOVE_LOCKED = (
    "A running server holds this data dir: add "
    "`--url http://HOST:PORT --key ADMIN_KEY` to remove the source there."
)

ReasonOpt = Annotated[str, typer.Option(help="Why, for the audit log.")]


def sources_add(
    source_id: Annotated[str, typer.Argument(help="A short id, e.g. 'wiki'.")],
    path: Annotated[
        str,
        typer.Argument(
            help="A folder, a glob such as 'docs/**/*.md', or a web site's sitemap (or list of "
            "URLs) such as https://docs.example.com/sitemap.xml."
        ),
    ],
    trust: Annotated[str, typer.Option(help=f"Trust tier: {', '.join(TRUST_TIERS)}.")] = "internal",
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group",
            "-g",
            help="Access group whose keys see the source (repeat). Without one, only keys "
            "without groups (unrestricted keys) see it; a group-bound key never does.",
        ),
    ] = None,
    exist_ok: Annotated[
        bool, typer.Option(help="Succeed quietly if the same source exists.")
    ] = False,
    refresh: Annotated[
        str | None,
        typer.Option(
            help="`ragwall serve` syncs it this often: 30s, 15m, 1h, 7d (default: never)."
        ),
    ] = None,
    stale_after: Annotated[
        str | None, typer.Option(help="Flag its documents older than this, e.g. 180d.")
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(help="folder, glob or web; checked against PATH (default: what PATH is)."),
    ] = None,
    max_pages: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_WEB_PAGES, help="A web source reads at most this many pages."),
    ] = None,
) -> None:
    """Register a source with a trust tier, access groups and, optionally, a sync schedule."""
    with reported():
        refresh_s, stale_s = _seconds(refresh), _seconds(stale_after)
    source = run(
        lambda svc: svc.add_source(
            actor(), source_id, path, trust, group or [], exist_ok=exist_ok, refresh_s=refresh_s,
            stale_after_s=stale_s, kind=kind, max_pages=max_pages,
        )
    )  # fmt: skip
    out.print(
        f"source [bold]{source.id}[/bold]: {source.kind} {source.location} "
        f"(trust {source.trust_tier}, groups {source.groups or '[]'})"
    )


def sources_set(
    source_id: Annotated[str, typer.Argument(help="The source's id.")],
    refresh: Annotated[
        str | None, typer.Option(help="Sync it this often: 30s, 15m, 1h, 7d.")
    ] = None,
    stale_after: Annotated[
        str | None, typer.Option(help="Flag its documents older than this, e.g. 180d.")
    ] = None,
    no_refresh: Annotated[bool, typer.Option("--no-refresh", help="Stop syncing it.")] = False,
    no_stale_after: Annotated[
        bool, typer.Option("--no-stale-after", help="Never flag its documents stale.")
    ] = False,
) -> None:
    """Change a source's sync schedule; a running server picks it up at its next tick.
    Options left out stay as they are."""
    changes: dict[str, int | None] = {}
    with reported():
        for name, value, clear in (
            ("refresh", refresh, no_refresh),
            ("stale_after", stale_after, no_stale_after),
        ):
            flag = name.replace("_", "-")
            if value is not None and clear:
                raise InvalidRequest(f"give --{flag} or --no-{flag}, not both")
            if value is not None or clear:
                changes[f"{name}_s"] = _seconds(value)
        if not changes:
            raise InvalidRequest(
                "nothing to change: give --refresh, --stale-after, --no-refresh or --no-stale-after"
            )
    _, sync = run(lambda svc: svc.set_source_schedule(actor(), source_id, changes))
    out.print(f"source [bold]{source_id}[/bold]: {_schedule(sync)}")


def _seconds(text: str | None) -> int | None:
    return None if text is None else int(parse_duration(text).total_seconds())


def _schedule(sync: SyncState) -> str:
    refresh = format_duration(sync.refresh_s) if sync.refresh_s else "never"
    stale = format_duration(sync.stale_after_s) if sync.stale_after_s else "never"
    return f"refresh {refresh}, stale after {stale}"


def sources_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered sources with their document and chunk counts, schedule and last sync."""
    rows = []
    for s in run(lambda svc: svc.list_sources()):
        nxt = s.sync.next_sync_at()
        rows.append(
            {
                **s.source.model_dump(),
                "documents": s.documents,
                "chunks": s.chunks,
                "refresh": format_duration(s.sync.refresh_s) if s.sync.refresh_s else None,
                "stale_after": (
                    format_duration(s.sync.stale_after_s) if s.sync.stale_after_s else None
                ),
                "last_sync_at": s.sync.last_sync_at,
                "last_sync_ok": s.sync.last_sync_ok,
                "next_sync_at": nxt.isoformat() if nxt is not None else None,
                "last_failure_reason": s.sync.last_failure_reason,
            }
        )
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(
        "id", "kind", "location", "trust", "groups", "documents", "chunks", "refresh", "last sync"
    )
    for r in rows:
        table.add_row(
            r["id"],
            r["kind"],
            r["location"],
            r["trust_tier"],
            ",".join(r["groups"]),
            str(r["documents"]),
            str(r["chunks"]),
            r["refresh"] or "",
            _last_sync(r),
        )
    out.print(table)


def _last_sync(row: dict) -> str:
    if row["last_sync_at"] is None:
        return ""
    said = row["last_sync_at"][:19]
    return said if row["last_sync_ok"] else f"{said} failed ({row['last_failure_reason']})"


def sources_remove(source_id: str, url: remote.UrlOpt = None, key: remote.KeyOpt = None) -> None:
    """Delete a source and every chunk it contributed (with --url: on the running server)."""
    if url:
        path = f"/v1/sources/{quote(source_id, safe='')}"
        n = remote.call(url, key, "DELETE", path, expect=(200,))["chunks"]
    else:
        n = run(lambda svc: svc.remove_source(actor(), source_id), locked=REMOVE_LOCKED)
    out.print(f"removed source {source_id} and {n} chunks")


def _said(kind: str, value: str, on: bool, changed: bool) -> None:
    verb = "quarantined" if on else "released"
    out.print(f"{kind} {value} {verb}" + ("" if changed else f" (it already was {verb})"))


def sources_quarantine(source_id: str, reason: ReasonOpt = "") -> None:
    """Kill switch: no retrieve returns this source's chunks until it is released."""
    changed = run(lambda svc: svc.set_quarantine(actor(), "source", source_id, True, reason))
    _said("source", source_id, True, changed)


def sources_release(source_id: str) -> None:
    """Lift a source's quarantine."""
    changed = run(lambda svc: svc.set_quarantine(actor(), "source", source_id, False, ""))
    _said("source", source_id, False, changed)


def documents_quarantine(doc_sha256: str, reason: ReasonOpt = "") -> None:
    """Quarantine one document by the sha256 of its bytes (a hit's doc_sha256)."""
    changed = run(lambda svc: svc.set_quarantine(actor(), "document", doc_sha256, True, reason))
    _said("document", doc_sha256, True, changed)


def documents_release(doc_sha256: str) -> None:
    """Lift a document's quarantine."""
    changed = run(lambda svc: svc.set_quarantine(actor(), "document", doc_sha256, False, ""))
    _said("document", doc_sha256, False, changed)
