"""What every ``ragwall`` command shares: its consoles, the service it opens, and how it fails.

Invariants:

- **A Ragwall error ends a command in one way only** (:func:`fail`, through :func:`reported` and
  :func:`run`): ``error: <message>`` on stderr and exit status 2. A locked data dir (a running
  server holds it) adds the command's hint (``locked``): how to send the request to the server.
- A command opens the service only through :func:`service` (the model and the store open on first
  use) and acts as :func:`actor` (``cli:<user>``) in the audit trail.
- Output for scripts and logs is never wrapped or cut (``ragwall.api.terminal``).

Command modules import this module, never each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import typer
from pydantic import ValidationError

from ragwall.api.terminal import console
from ragwall.errors import RagwallError, StoreLocked, validation_message
from ragwall.settings import Settings

if TYPE_CHECKING:
    from ragwall.service import Service

T = TypeVar("T")

out = console()
err = console(stderr=True)


def settings() -> Settings:
    """The ``RAGWALL_*`` settings; an invalid one exits 2, saying which."""
    try:
        return Settings()
    except ValidationError as exc:
        err.print(f"[red]error:[/red] invalid RAGWALL_* setting: {validation_message(exc)}")
        raise typer.Exit(2) from exc


def fail(exc: RagwallError) -> typer.Exit:
    """Print a Ragwall error; the exit (status 2) for the caller to raise."""
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


@contextmanager
def reported(locked: str | None = None) -> Iterator[None]:
    """Run the block; a Ragwall error exits 2 with its message (:func:`fail`), a locked data
    dir with the ``locked`` hint on the next line when one is given."""
    try:
        yield
    except StoreLocked as exc:
        if locked is None:
            raise fail(exc) from exc
        err.print(f"[red]error:[/red] {exc}\n{locked}")
        raise typer.Exit(2) from exc
    except RagwallError as exc:
        raise fail(exc) from exc


def service() -> Service:
    """The service over the configured data dir (the model and store open on first use)."""
    # deferred: the service loads qdrant, torch and transformers (1.2 s); `--help` needs none
    from ragwall.service import Service

    try:
        return Service(settings())
    except RagwallError as exc:
        raise fail(exc) from exc


def run(op: Callable[[Service], T], locked: str | None = None) -> T:
    """One service operation: open the service, call ``op`` with it, close it. A Ragwall error
    exits 2 with its message (a locked data dir: with the ``locked`` hint)."""
    with service() as svc, reported(locked):
        return op(svc)


def actor() -> str:
    """Who the audit trail records for this command (``cli:<user>``)."""
    # deferred: the service loads qdrant, torch and transformers (1.2 s)
    from ragwall.service import cli_actor

    return cli_actor()
