"""Structured logs: one JSON object a line on stderr, or readable text on a terminal.

Every record carries ``time``, ``level``, ``logger`` and ``message``; the request and job events
add their fields as ``extra={"fields": {...}}``, which appear as top-level keys of the JSON
object (and as ``key=value`` pairs in text). No formatter here ever sees a secret: callers pass
key ids, never keys, and query text only when ``RAGWALL_LOG_QUERIES=1``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["auto", "json", "text"]

_HANDLER_NAME = "ragwall-stderr"
#: Loggers that log at the configured level; every other logger at WARNING and above.
OWN_LOGGERS = ("ragwall", "uvicorn")


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """A record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A record for a person: time, level, message, then ``key=value`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        pairs = " ".join(f"{k}={_text(v)}" for k, v in fields.items() if v is not None)
        line = f"{_time(record)} {record.levelname:<7} {record.getMessage()}"
        line = f"{line}  {pairs}" if pairs else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items()) or "-"
    return str(value)


def configure_logging(
    fmt: LogFormat = "auto", level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record (Ragwall's and uvicorn's) to ``stream`` (stderr) in ``fmt``:
    ``auto`` is text on a terminal and JSON otherwise. Calling it again replaces the handler."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    if fmt == "json":
        # Every stderr line a JSON object: no progress bars from the model loaders, and Python
        # warnings as log records.
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.captureWarnings(True)
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries log at WARNING and above (some log INFO chatter on the root logger itself);
    # Ragwall's and uvicorn's loggers at the level asked for.
    root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        # Whatever configured uvicorn before (its own dictConfig, an earlier server in this
        # process): its handlers would print each line twice, and its levels and "disabled"
        # flag would hide lines; they inherit from "uvicorn" instead.
        child = logging.getLogger(name)
        child.handlers.clear()
        child.propagate = True
        child.disabled = False
        child.setLevel(logging.NOTSET)
    logging.getLogger("uvicorn").handlers.clear()
    logging.getLogger("uvicorn").propagate = True
    return handler


def event(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``message`` with structured ``fields`` (``None`` values are left out)."""
    logger.log(level, message, extra={"fields": {k: v for k, v in fields.items() if v is not None}})
