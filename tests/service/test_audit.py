"""The audit chain detects every edit, removal, reordering and truncation."""

from __future__ import annotations

import json

import pytest

from ragwall.service.audit import AuditLog


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
    from ragwall.service.audit import record_hash

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


def _keyed(tmp_path, key=b"k" * 32, n=3):
    audit = AuditLog(tmp_path / "audit.log", tmp_path / "state.sqlite3", key)
    for i in range(n):
        audit.append("retrieve", f"key{i}", query_sha256=f"{i:064d}")
    return audit


def test_a_keyed_chain_verifies_only_with_its_key(tmp_path):
    audit = _keyed(tmp_path)
    assert audit.verify().ok
    audit.close()
    record = json.loads((tmp_path / "audit.log").read_text().splitlines()[0])
    assert record["mac"] == "hmac-sha256"
    wrong = AuditLog(tmp_path / "audit.log", tmp_path / "state.sqlite3", b"another key")
    report = wrong.verify()
    assert not report.ok and sum("HMAC" in p for p in report.problems) == 3
    wrong.close()
    keyless = AuditLog(tmp_path / "audit.log", tmp_path / "state.sqlite3")
    report = keyless.verify()
    assert not report.ok and any("RAGWALL_AUDIT_KEY" in p for p in report.problems)
    keyless.close()


def test_a_chain_rebuilt_without_the_key_is_detected(tmp_path):
    """Someone who can write the data dir recomputes every hash and the head: a plain chain
    cannot tell; a keyed one can."""
    import sqlite3

    from ragwall.service.audit import GENESIS, record_hash

    audit = _keyed(tmp_path)
    audit.close()
    lines = (tmp_path / "audit.log").read_text().splitlines()
    prev, forged = GENESIS, []
    for line in lines:
        record = json.loads(line)
        record["key_id"] = "nobody"
        record["prev"] = prev
        record["hash"] = record_hash(record)  # a forger without the key can only use SHA-256
        prev = record["hash"]
        forged.append(json.dumps(record, sort_keys=True))
    (tmp_path / "audit.log").write_text("\n".join(forged) + "\n")
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        db.execute("UPDATE audit_head SET hash = ?", (prev,))
    checker = AuditLog(tmp_path / "audit.log", tmp_path / "state.sqlite3", b"k" * 32)
    report = checker.verify()
    assert not report.ok and report.records == 3
    checker.close()
    # Stripping the mac marker to pass as an old unkeyed record is caught after keyed ones.
    audit = _keyed(tmp_path / "b")
    audit.close()
    lines = (tmp_path / "b" / "audit.log").read_text().splitlines()
    last = json.loads(lines[-1])
    del last["mac"]
    last["hash"] = record_hash(last)
    lines[-1] = json.dumps(last, sort_keys=True)
    (tmp_path / "b" / "audit.log").write_text("\n".join(lines) + "\n")
    checker = AuditLog(tmp_path / "b" / "audit.log", tmp_path / "b" / "state.sqlite3", b"k" * 32)
    report = checker.verify()
    assert not report.ok and any("unkeyed record after keyed" in p for p in report.problems)
    checker.close()


def test_records_written_before_the_key_was_set_are_a_warning(tmp_path, log):
    log.close()
    keyed = AuditLog(log.path, tmp_path / "state.sqlite3", b"k" * 32)
    keyed.append("retrieve", "key9")
    report = keyed.verify()
    assert report.ok and report.records == 6
    assert any("records 1..5" in w and "not authenticated" in w for w in report.warnings)
    keyed.close()


_WRITER = """
import sys
from pathlib import Path
from ragwall.service.audit import AuditLog

folder, name, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
log = AuditLog(folder / "audit.log", folder / "state.sqlite3")
for i in range(n):
    log.append("retrieve", name, n=i)
log.close()
"""


def test_writers_in_many_processes_keep_one_chain(tmp_path):
    """A server and CLI commands append to one log: each append chains from the log's real
    head, never from one remembered before another process appended (issue 24: the chain
    forked when `keys create` ran beside a server)."""
    import subprocess
    import sys

    server = AuditLog(tmp_path / "audit.log", tmp_path / "state.sqlite3")
    server.append("source.add", "admin")  # the server's head is now in memory
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), f"cli{i}", "80"])
        for i in range(3)
    ]
    for i in range(120):  # the server keeps appending while the CLI processes do
        server.append("retrieve", "server", n=i)
    assert all(w.wait(timeout=120) == 0 for w in writers)
    server.append("retrieve", "server", n="last")
    report = server.verify()
    assert report.ok, report.problems
    assert report.records == 1 + 120 + 3 * 80 + 1
    assert server.records == report.records
    server.close()
