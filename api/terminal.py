"""The CLI's consoles and command groups, shaped by where their output goes.

On a terminal, rich formats to the terminal's width. When the stream is not a terminal (a pipe,
a log, a script), nothing is hard-wrapped or truncated: tables keep full dates and model names,
messages stay on one line, and ``--help`` is Click's plain text with full option names instead
of rich panels cut at 80 columns.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

#: The width used off a terminal: wide enough that nothing wraps or is cut.
UNBOUNDED = 1_000_000


def typer_app(help: str) -> typer.Typer:  # noqa: A002 - typer's own name
    """A command group; plain, unwrapped help when stdout is not a terminal."""
    if sys.stdout.isatty():
        return typer.Typer(help=help, no_args_is_help=True)
    width = {"max_content_width": UNBOUNDED, "terminal_width": UNBOUNDED}
    return typer.Typer(
        help=help, no_args_is_help=True, rich_markup_mode=None, context_settings=width
    )


def console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that wraps only on a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=UNBOUNDED, soft_wrap=True)


def open_unit(value: float) -> float:
    """An option callback: the value must lie strictly between 0 and 1 (a significance level)."""
    if not 0.0 < value < 1.0:
        raise typer.BadParameter(f"{value} is not strictly between 0 and 1")
    return value
