"""``ragwall mcp``: serve the MCP tools over stdio (``ragwall.api.mcp.stdio``) as one key's
principal: ``--key-file`` (a file holding the key), else ``$RAGWALL_API_KEY``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ragwall.api.cli.common import err, reported, service
from ragwall.api.cli.common import settings as read_settings


def mcp(
    key_file: Annotated[
        Path | None,
        typer.Option(
            help="A file holding the API key to act as (default: $RAGWALL_API_KEY).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Serve the MCP tools (search, fetch, list_sources) over stdio, as one API key."""
    # deferred: the MCP SDK and the service load only to serve
    from ragwall.api.mcp.stdio import serve_stdio
    from ragwall.telemetry import configure_logging

    if key_file is not None:
        try:
            key = key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            err.print(f"[red]error:[/red] cannot read the key file {key_file}: {exc}")
            raise typer.Exit(2) from exc
    else:
        key = os.environ.get("RAGWALL_API_KEY", "").strip()
    if not key:
        err.print("[red]error:[/red] `ragwall mcp` needs a key: --key-file FILE or RAGWALL_API_KEY")
        raise typer.Exit(2)
    settings = read_settings()
    configure_logging(settings.log_format, settings.log_level)
    with service() as svc, reported():
        who = svc.authenticate(key)
        if who is None:
            err.print("[red]error:[/red] the API key is invalid or revoked")
            raise typer.Exit(2)
        svc.warm_up()
        serve_stdio(svc, who)
