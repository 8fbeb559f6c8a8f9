"""Usage per key, workflow or actor, read from the audit trail (``ragwall usage``).

What is counted, per group, over the records since a moment:

- ``requests``: calls served — :data:`SERVED` actions (REST retrieves and fetches, MCP tool calls);
- ``hits`` and ``context_tokens``: what those calls handed back (the record's ``results`` and
  ``context_tokens``: the hits' text in embedding-model tokens);
- ``refusals``: ``refused`` records other than budget ones (401, 403, 413, 422, …);
- ``rate_limited``: ``refused`` records with reason ``rate_limited`` (429).

Groups: ``key`` (the record's key id: a token counts under its parent key, an identity-provider
caller under ``oidc:<sub>``, an unauthenticated refusal under ``anonymous``), ``workflow``
(``workflow_id``) or ``actor`` (``act``); a record without one counts under ``(none)``.

Invariants: the report only reads (it never takes the audit lock), and reads one line at a time
(memory: one row per group). Refusal records are bounded per minute
(``RAGWALL_REFUSAL_RECORDS_PER_MINUTE``), so under a flood the report counts fewer refusals than
were made; it says how many were left out (``uncounted_refusals``), and the
``ragwall_rate_limited_total`` metric counts every 429.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from ragwall.errors import InvalidRequest

GroupBy = Literal["key", "workflow", "actor"]
GROUPINGS: tuple[str, ...] = ("key", "workflow", "actor")
#: Audit actions that are calls served to a caller.
SERVED = frozenset({"retrieve", "fetch", "mcp.search", "mcp.fetch", "mcp.list_sources"})
NONE = "(none)"
_FIELD = {"key": "key_id", "workflow": "workflow_id", "actor": "act"}


@dataclass
class UsageRow:
    key: str
    requests: int = 0
    hits: int = 0
    context_tokens: int = 0
    refusals: int = 0
    rate_limited: int = 0


@dataclass(frozen=True)
class UsageReport:
    since: datetime
    by: str
    rows: list[UsageRow]
    uncounted_refusals: int


def usage(log_path: Path, since: datetime, by: str) -> UsageReport:
    """The usage since ``since`` grouped ``by`` key, workflow or actor (module docstring)."""
    if by not in GROUPINGS:
        raise InvalidRequest(f"usage is grouped by one of {list(GROUPINGS)}, not {by!r}")
    rows: dict[str, UsageRow] = {}
    uncounted = 0
    field = _FIELD[by]
    try:
        fh = open(log_path, "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        return UsageReport(since, by, [], 0)
    with fh:
        fh.seek(_first_at_or_after(fh, since))
        for line in fh:
            record = _parse(line)
            if record is None or (_time(record) or since) < since:
                continue
            action = record.get("action")
            if action not in SERVED and action != "refused":
                continue
            name = str(record.get(field) or NONE)
            row = rows.setdefault(name, UsageRow(name))
            if action == "refused":
                uncounted += int(record.get("suppressed_before") or 0)
                if record.get("reason") == "rate_limited":
                    row.rate_limited += 1
                else:
                    row.refusals += 1
                continue
            row.requests += 1
            row.hits += len(record.get("results") or ())
            row.context_tokens += int(record.get("context_tokens") or 0)
    ordered = sorted(
        rows.values(), key=lambda r: (-r.requests, -r.refusals - r.rate_limited, r.key)
    )
    return UsageReport(since, by, ordered, uncounted)


def _first_at_or_after(fh: BinaryIO, since: datetime) -> int:
    """The start of a line at or before the first record written at ``since`` or later: a
    binary search over the log, whose records are appended in time order (to 64 KiB; the caller
    reads on from there and still checks each record's time)."""
    size = os.fstat(fh.fileno()).st_size
    low, high = 0, size  # invariant: the first record at or after `since` starts at >= low
    while high - low > 64 * 1024:
        mid = (low + high) // 2
        fh.seek(mid)
        fh.readline()  # to the next line start
        start = fh.tell()
        record = _parse(fh.readline())
        when = _time(record) if record is not None else None
        if when is None or start >= high:
            break
        if when < since:
            low = start
        else:
            high = start
    return low  # 0, or the start of a line written before `since`


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _time(record: dict[str, Any] | None) -> datetime | None:
    if record is None:
        return None
    try:
        when = datetime.fromisoformat(str(record.get("time")))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
