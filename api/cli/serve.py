"""``ragwall serve``: the HTTP API (``ragwall.api.app``) on the configured index, with uvicorn.

The model and the index are loaded before the server starts (``Service.warm_up``), so a locked
index or a missing model fails here, clearly (exit 2), not on the first request.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ragwall.api.cli.common import reported
from ragwall.api.cli.common import settings as read_settings


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    dev: Annotated[bool, typer.Option(help="Dev mode: no API keys (never expose it).")] = False,
) -> None:
    """Serve the HTTP API on the configured index."""
    import uvicorn

    # deferred: FastAPI, uvicorn and the service load only to serve
    from ragwall.api.app import create_app
    from ragwall.service import Service
    from ragwall.telemetry import configure_logging

    settings = read_settings()
    if dev:
        settings = settings.model_copy(update={"dev_mode": True})
    configure_logging(settings.log_format, settings.log_level)
    with reported():
        svc = Service(settings)
        svc.warm_up()  # fail here, clearly, if the index is locked or the model is missing
    try:
        uvicorn.run(
            create_app(settings, svc, schedule=True),  # sources' due syncs run here
            host=host,
            port=port,
            log_config=None,  # configure_logging's handler, in its format
            log_level=settings.log_level.lower(),
            access_log=False,  # ragwall.request logs one line per request instead
        )
    finally:
        svc.close()
