"""The `ragwall` command, run as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared

RAGWALL = str(Path(sys.executable).with_name("ragwall"))


@pytest.fixture
def run(tmp_path):
    env = {**os.environ, "RAGWALL_DATA_DIR": str(tmp_path / "data")}

    def _run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [RAGWALL, *args], env=env, capture_output=True, text=True, timeout=600
        )

    return _run


def test_sources_add_list_and_errors(run, tmp_path):
    ok = run("sources", "add", "kb", str(tmp_path), "--trust", "verified", "-g", "eng")
    assert ok.returncode == 0, ok.stderr
    dup = run("sources", "add", "kb", str(tmp_path), "--trust", "verified", "-g", "eng")
    assert dup.returncode == 2 and "already exists" in dup.stderr
    assert (
        run(
            "sources", "add", "kb", str(tmp_path), "--trust", "verified", "-g", "eng", "--exist-ok"
        ).returncode
        == 0
    )
    bad = run("sources", "add", "x", str(tmp_path), "--trust", "sortof")
    assert bad.returncode == 2 and "trust tier" in bad.stderr
    # Messages say what is wrong, without pydantic's boilerplate (issue 24).
    for args in (
        ("sources", "add", "bad id!", str(tmp_path)),
        ("sources", "add", "y", str(tmp_path), "-g", "a b"),
    ):
        bad = run(*args)
        assert bad.returncode == 2 and bad.stderr.startswith("error:"), bad.stderr
        assert "pydantic" not in bad.stderr and "type=value_error" not in bad.stderr
    listed = json.loads(run("sources", "list", "--json").stdout)
    assert [(s["id"], s["trust_tier"], s["groups"]) for s in listed] == [
        ("kb", "verified", ["eng"])
    ]
    missing = run("ingest", "nope")
    assert missing.returncode == 2 and "no source 'nope'" in missing.stderr


def test_ingest_json_summary_and_exit_status(run, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(shared("docs", "README.md"), corpus)
    shutil.copy(shared("docs", "fake-email.eml"), corpus)
    assert run("sources", "add", "kb", str(corpus)).returncode == 0

    first = run("ingest", "kb", "--json")
    assert first.returncode == 0, first.stderr
    # Not a terminal: progress comes as plain lines a log keeps, not as a bar that vanishes.
    assert "ingest kb: 2/2 documents" in first.stderr, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["documents"] == 2 and summary["chunks"] > 0 and summary["failed"] == []

    second = json.loads(run("ingest", "kb", "--json").stdout.strip().splitlines()[-1])
    assert second == {
        "documents": 0,
        "chunks": 0,
        "unchanged": 2,
        "removed": 0,
        "failed": [],
        "skipped": [],
        "notes": [],
    }

    shutil.copy(shared("docs", "empty.txt"), corpus)
    (corpus / "diagram.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    third = run("ingest", "kb", "--json")
    assert third.returncode == 1
    summary = json.loads(third.stdout.strip().splitlines()[-1])
    assert [f["reason"] for f in summary["failed"]] == ["empty"]
    # An image is skipped with its reason, not failed; the summary line counts both.
    assert [s["reason"] for s in summary["skipped"]] == ["unsupported_type"]
    assert "1 failed, 1 skipped" in third.stderr

    one_off = run("ingest", str(shared("docs", "fake-html.html")), "--source", "kb", "--json")
    assert one_off.returncode == 0, one_off.stderr
    assert json.loads(one_off.stdout.strip().splitlines()[-1])["documents"] == 1
    # A one-off ingest does not remove the source's other documents.
    assert json.loads(run("sources", "list", "--json").stdout)[0]["documents"] == 3


def test_audit_key_from_the_environment_keys_the_chain_and_is_never_written(tmp_path):
    secret = "correct-horse-battery-staple-4411"
    env = {**os.environ, "RAGWALL_DATA_DIR": str(tmp_path / "data")}

    def run_with(key: str | None, *args: str) -> subprocess.CompletedProcess:
        e = {k: v for k, v in env.items() if k != "RAGWALL_AUDIT_KEY"}
        if key:
            e["RAGWALL_AUDIT_KEY"] = key
        return subprocess.run([RAGWALL, *args], env=e, capture_output=True, text=True, timeout=600)

    outputs = [run_with(secret, "sources", "add", "kb", str(tmp_path))]
    outputs.append(run_with(secret, "sources", "quarantine", "kb", "--reason", "test"))
    assert all(o.returncode == 0 for o in outputs), outputs[-1].stderr
    keyed = run_with(secret, "audit", "verify", "--json")
    outputs.append(keyed)
    assert keyed.returncode == 0 and json.loads(keyed.stdout)["ok"]
    log = (tmp_path / "data" / "audit.log").read_text()
    assert '"mac": "hmac-sha256"' in log
    keyless = run_with(None, "audit", "verify")
    outputs.append(keyless)
    assert keyless.returncode == 1 and "RAGWALL_AUDIT_KEY" in keyless.stderr
    assert secret not in log
    assert all(secret not in o.stdout + o.stderr for o in outputs)


def _audit(tmp_path: Path) -> list[dict]:
    log = tmp_path / "data" / "audit.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.slow
def test_every_cli_admin_command_appends_one_audit_record(run, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "refunds.md").write_text("# Refunds\n\nRefunds above 500 EUR need approval.\n")
    doc = "ab" * 32
    steps = [
        (("sources", "add", "kb", str(corpus), "-g", "eng"), "source.add"),
        (("ingest", "kb", "--json"), "source.ingest"),
        (("sources", "quarantine", "kb", "--reason", "probe"), "source.quarantine"),
        (("sources", "release", "kb"), "source.release"),
        (("documents", "quarantine", doc, "--reason", "probe"), "document.quarantine"),
        (("documents", "release", doc), "document.release"),
        (("keys", "create", "--name", "ops", "--min-trust", "0.6", "--json"), "key.create"),
        (None, "key.revoke"),  # revokes the key just created
        (("sources", "remove", "kb"), "source.remove"),
    ]
    key = None
    for args, action in steps:
        before = len(_audit(tmp_path))
        if args is None:
            args = ("keys", "revoke", key["id"])
        done = run(*args)
        assert done.returncode == 0, (args, done.stderr)
        if action == "key.create":
            key = json.loads(done.stdout)
        records = _audit(tmp_path)[before:]
        assert [r["action"] for r in records] == [action], args
        assert records[0]["key_id"].startswith("cli")
    by_action = {r["action"]: r for r in _audit(tmp_path)}
    assert by_action["source.add"]["source"]["groups"] == ["eng"]
    assert by_action["source.ingest"]["summary"]["documents"] == 1
    assert by_action["source.remove"]["chunks"] >= 1
    assert by_action["key.create"]["created_key_id"] == key["id"]
    assert by_action["key.create"]["min_trust"] == key["min_trust"] == 0.6
    assert by_action["key.revoke"]["revoked_key_id"] == key["id"]
    assert key["key"] not in (tmp_path / "data" / "audit.log").read_text()  # never the secret

    # A refused command, and an identical re-registration with --exist-ok, change nothing.
    before = len(_audit(tmp_path))
    assert run("documents", "quarantine", "not-a-sha").returncode == 2
    assert run("sources", "add", "kb2", str(corpus)).returncode == 0
    assert run("sources", "add", "kb2", str(corpus), "--exist-ok").returncode == 0
    assert [r["action"] for r in _audit(tmp_path)[before:]] == ["source.add"]
    verified = run("audit", "verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"], verified.stdout


def test_keys_create_out_writes_a_private_file_and_never_prints_the_key(run, tmp_path):
    target = tmp_path / "dev-key"
    done = run("keys", "create", "--name", "dev", "--out", str(target))
    assert done.returncode == 0, done.stderr
    key = target.read_text().strip()
    assert key.startswith("rw_") and (target.stat().st_mode & 0o777) == 0o600
    assert key not in done.stdout + done.stderr and str(target) in done.stderr
    again = run("keys", "create", "--out", str(target))
    assert again.returncode == 2 and target.read_text().strip() == key  # never overwritten


def test_keys_create_out_refuses_links_before_creating_a_key(run, tmp_path):
    """Issue 24: --out onto a link (dangling or not) exits 2 with a message, and no key exists
    whose secret was lost (none created, none audited)."""
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere" / "key")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("")
    linked = tmp_path / "linked"
    linked.symlink_to(elsewhere)
    for target in (dangling, linked):
        done = run("keys", "create", "--out", str(target))
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error:") and "symbolic link" in done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "nowhere").exists() and elsewhere.read_text() == ""  # never followed
    # an admin key bound to a group is refused, and the file reserved for it is removed
    target = tmp_path / "admin-key"
    bound = run("keys", "create", "--scope", "admin", "--group", "finance", "--out", str(target))
    assert bound.returncode == 2 and "cannot be bound to groups" in bound.stderr, bound.stderr
    assert not target.exists()
    db = sqlite3.connect(tmp_path / "data" / "ragwall.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM api_keys").fetchone() == (0,)
    assert not [r for r in _audit(tmp_path) if r["action"] == "key.create"]


def test_make_run_keeps_the_dev_key_private():
    """`make run` writes the key with --out (mode 0600) and prints how to read it, not it."""
    from tests.conftest import ROOT

    done = subprocess.run(
        ["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    create = [line for line in done.stdout.splitlines() if "keys create" in line]
    assert create and all("--out" in line and ">" not in line for line in create)
    hint = [line for line in done.stdout.splitlines() if "Authorization: Bearer" in line]
    assert hint and all(line.startswith("echo '") for line in hint)  # shown, not evaluated


def test_a_second_ingest_of_a_busy_source_is_refused(run, tmp_path):
    from filelock import FileLock

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    assert run("sources", "add", "kb", str(corpus)).returncode == 0
    (tmp_path / "data" / "locks").mkdir(parents=True, exist_ok=True)
    with FileLock(str(tmp_path / "data" / "locks" / "ingest-kb.lock")):  # a running ingest
        busy = run("ingest", "kb")
    assert busy.returncode == 2 and "is being ingested now" in busy.stderr, busy.stderr


def test_output_for_scripts_is_never_wrapped_or_cut(run, tmp_path):
    """Issue 24: off a terminal, `--help` and tables were cut at 80 columns ("2026-12-0…")."""
    helped = run("reindex", "--help")
    assert helped.returncode == 0
    assert "--max-new-source-share" in helped.stdout and "…" not in helped.stdout
    assert any(  # a long help text on one line
        "re-process this source's documents in the active version, unchanged files included" in x
        for x in helped.stdout.splitlines()
    )
    deep = tmp_path / ("a-folder-with-a-long-name-" * 4)
    deep.mkdir()
    assert run("sources", "add", "kb", str(deep)).returncode == 0
    listed = run("sources", "list")
    assert str(deep) in listed.stdout and "…" not in listed.stdout
