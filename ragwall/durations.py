"""Durations as people write them: ``30s``, ``15m``, ``1h``, ``7d`` (a whole number and a unit);
and moments as ISO 8601 times, UTC where no zone is given."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from ragwall.errors import InvalidRequest

_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest duration accepted (ten years): past it, a date is meant, not a duration.
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    """``"24h"`` → ``timedelta(hours=24)``; :class:`InvalidRequest` for anything else."""
    match = _DURATION.match(text or "")
    if not match:
        raise InvalidRequest(
            f"{text!r} is not a duration: write a whole number and a unit, s, m, h or d "
            "(30s, 15m, 24h, 7d)"
        )
    value = timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])
    if not timedelta(0) < value <= MAX_DURATION:
        raise InvalidRequest(f"{text!r}: a duration must be above 0 and at most 3650d")
    return value


def format_duration(seconds: int) -> str:
    """``900`` → ``"15m"``: the largest unit that divides it (``parse_duration``'s inverse)."""
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"


def iso_epoch(text: str) -> float:
    """Epoch seconds of an ISO 8601 time (``2026-01-31T00:00Z``; UTC when it names no zone).
    Raises ``ValueError`` for anything else."""
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
