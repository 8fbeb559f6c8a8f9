"""The audit chain detects every edit, removal, reordering and truncation."""

from __future__ import annotations

import json

import pytest

from api.audit import AuditLog


@pytest.fixture
def log(tmp_path):
    audit = AuditLog(tmp_path / "audit.log", tmp_path / "state.sqlite3")
    for i in range(5):
        audit.append("retrieve", f"key{i}", query_sha256=f"{i:064d}", results=[{"id": str(i)}])
    yield audit
    audit.close()


def _lines(log):
    return log.path.read_text().splitlines()


def _write(log, lines):
    log.path.write_text("\n".join(lines) + "\n")


def test_intact_chain_verifies(log):
    report = log.verify()
    assert report.ok and report.records == 5 and report.problems == []


def test_edit_is_detected(log):
    lines = _lines(log)
    record = json.loads(lines[2])
    record["key_id"] = "someone-else"
    lines[2] = json.dumps(record, sort_keys=True)
    _write(log, lines)
    report = log.verify()
    assert not report.ok and any("edited" in p for p in report.problems)


def test_edit_with_rehash_still_breaks_the_chain(log):
    from api.audit import record_hash

    lines = _lines(log)
    record = json.loads(lines[1])
    record["results"] = []
    record["hash"] = record_hash(record)
    lines[1] = json.dumps(record, sort_keys=True)
    _write(log, lines)
    assert any("chain" in p for p in log.verify().problems)


def test_removal_reordering_and_truncation_are_detected(log):
    lines = _lines(log)
    _write(log, lines[:2] + lines[3:])
    assert not log.verify().ok
    _write(log, [lines[0], lines[2], lines[1], *lines[3:]])
    assert not log.verify().ok
    _write(log, lines[:4])  # the last record cut off: only the head in SQLite can tell
    report = log.verify()
    assert not report.ok and any("cut off" in p for p in report.problems)
    _write(log, lines)
    assert log.verify().ok


def test_chain_continues_across_reopen(tmp_path, log):
    log.close()
    again = AuditLog(tmp_path / "audit.log", tmp_path / "state.sqlite3")
    again.append("source.add", "admin")
    assert again.verify().ok and again.verify().records == 6
    again.close()


def test_a_head_left_behind_by_a_power_cut_is_a_warning_and_the_chain_goes_on(tmp_path, log):
    # What a power cut after the log's fsync but before the head's commit leaves behind.
    log._db.execute(
        "UPDATE audit_head SET seq = 3, hash = ? WHERE id = 1",
        (json.loads(_lines(log)[2])["hash"],),
    )
    report = log.verify()
    assert report.ok and report.records == 5
    assert report.warnings and "4..5" in report.warnings[0]
    log.close()
    again = AuditLog(tmp_path / "audit.log", tmp_path / "state.sqlite3")
    again.append("source.add", "admin")  # chains on from record 5, not from the stale head
    report = again.verify()
    assert report.ok and report.records == 6 and not report.warnings
    again.close()


def test_a_head_that_disagrees_with_the_log_is_still_tampering(log):
    log._db.execute("UPDATE audit_head SET seq = 3, hash = ? WHERE id = 1", ("f" * 64,))
    assert not log.verify().ok
