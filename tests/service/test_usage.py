"""The usage report's reading of the audit trail: it finds the first record of its window in a
long log by binary search, counts each record once, and reads a log a crash cut mid-line; and
the durations it takes. No model: a log in the audit trail's format, written by the test."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ragwall.durations import parse_duration
from ragwall.errors import InvalidRequest
from ragwall.service.usage import usage


def test_a_window_of_a_long_log_counts_exactly_its_records(tmp_path):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lines = []
    for i in range(4000):  # ~1.5 MB: the search narrows it well below the whole file
        record = {
            "seq": i + 1,
            "time": (start + timedelta(seconds=i)).isoformat(),
            "key_id": f"k{i % 3}",
            "action": "retrieve" if i % 10 else "refused",
            "results": [{"id": str(j)} for j in range(i % 4)],
            "context_tokens": i % 7,
            "workflow_id": "wf" if i % 2 else None,
            "reason": "rate_limited" if i % 20 == 0 else "forbidden",
            "pad": "x" * 300,
        }
        lines.append(record)
    (tmp_path / "audit.log").write_text("".join(json.dumps(r) + "\n" for r in lines))
    for cut in (0, 1, 1999, 2500, 3999, 4000):
        since = start + timedelta(seconds=cut)
        report = usage(tmp_path / "audit.log", since, "key")
        kept = lines[cut:]
        served = [r for r in kept if r["action"] == "retrieve"]
        refused = [r for r in kept if r["action"] == "refused"]
        assert sum(r.requests for r in report.rows) == len(served), cut
        assert sum(r.hits for r in report.rows) == sum(len(r["results"]) for r in served)
        assert sum(r.context_tokens for r in report.rows) == sum(
            r["context_tokens"] for r in served
        )
        assert sum(r.rate_limited for r in report.rows) == sum(
            r["reason"] == "rate_limited" for r in refused
        )
        assert sum(r.refusals for r in report.rows) == sum(
            r["reason"] != "rate_limited" for r in refused
        )
    by_workflow = {r.key: r for r in usage(tmp_path / "audit.log", start, "workflow").rows}
    assert set(by_workflow) == {"wf", "(none)"}
    # A last line cut by a crash, and a missing log, are read without an error.
    with open(tmp_path / "audit.log", "a") as fh:
        fh.write('{"seq": 4001, "time": "2026-01-01T02:00:00+00:00", "act')
    assert usage(tmp_path / "audit.log", start, "actor").rows
    assert usage(tmp_path / "missing.log", start, "key").rows == []
    with pytest.raises(InvalidRequest):
        usage(tmp_path / "audit.log", start, "source")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800), (" 24h ", 86400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1", "h", "1.5h", "-1h", "0s", "1w", "99999d", "1h30m"])
def test_bad_durations_say_how_to_write_one(text):
    with pytest.raises(InvalidRequest):
        parse_duration(text)
