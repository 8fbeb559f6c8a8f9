"""The CLI's client for a running server: what an admin command does with ``--url`` and ``--key``.

An embedded data dir is open in one process only, so while ``ragwall serve`` holds it, every CLI
command that needs the index (ingest, reindex, index activate/rollback, sources remove) sends its
request to that server instead. Each such command takes the same two options (:data:`UrlOpt`,
:data:`KeyOpt`) and calls :func:`call` (one request) or :func:`wait_job` (poll a job to its end).

Invariants: the key is sent only as a bearer token and never printed; a refusal prints the server's
``code`` and ``message`` and exits 2, an unreachable server exits 2, and a job that ends in any
state but ``succeeded`` is returned to the caller, which decides its exit status.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import typer

from ragwall.api.terminal import console

UrlOpt = Annotated[
    str | None,
    typer.Option(
        help="Send the request to a running server (e.g. http://127.0.0.1:8000): the way to "
        "change an embedded index that a server holds open."
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        help="An admin API key for --url (default: $RAGWALL_API_KEY).", show_default=False
    ),
]

POLL_S = 1.0
TIMEOUT_S = 60.0
err = console(stderr=True)


def admin_key(key: str | None) -> str:
    """The key given, else ``$RAGWALL_API_KEY``; exits 2 when neither is set."""
    found = key or os.environ.get("RAGWALL_API_KEY")
    if not found:
        err.print("[red]error:[/red] --url needs an admin key: --key or RAGWALL_API_KEY")
        raise typer.Exit(2)
    return found


def message(response: Any) -> str:
    """``<status> <code>: <message>`` from a Ragwall error body (or the start of any other)."""
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.text[:300]}"


def call(
    url: str,
    key: str | None,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    expect: tuple[int, ...] = (200, 202),
    idempotent: bool = False,
) -> dict[str, Any]:
    """One request to the server at ``url``; its JSON answer. Exits 2 when it is refused or the
    server cannot be reached (the server's message is printed)."""
    import httpx

    headers = {"Authorization": f"Bearer {admin_key(key)}"}
    if idempotent:  # a retried POST returns the job the first one started
        headers["Idempotency-Key"] = uuid.uuid4().hex
    try:
        with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT_S) as client:
            reply = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] could not reach {url}: {exc}")
        raise typer.Exit(2) from exc
    if reply.status_code not in expect:
        err.print(f"[red]error:[/red] the server refused: {message(reply)}")
        raise typer.Exit(2)
    return reply.json()


def wait_job(
    url: str,
    key: str | None,
    job_id: str,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{job_id}`` until the job ends; returns the job as the server shows it."""
    while True:
        job = call(url, key, "GET", f"/v1/jobs/{job_id}", expect=(200,))
        if on_progress is not None and job.get("progress"):
            on_progress(job["progress"])
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(POLL_S)
