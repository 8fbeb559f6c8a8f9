"""`ragwall eval snapshot` and `ragwall eval drift`, run as a user runs them: the gates' exit
codes (0 pass, 1 fail, 2 usage error) and every bad input refused with a message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragwall.api.cli import app

RAGWALL = str(Path(sys.executable).with_name("ragwall"))
QUERIES = "who approves refunds\nhow are laptops ordered\ntravel policy for trains\n"


def _kb(folder: Path) -> None:
    folder.mkdir()
    (folder / "refunds.md").write_text(
        "# Refunds\n\nRefunds above 500 EUR need approval by the finance director.\n"
    )
    (folder / "laptops.md").write_text(
        "# Laptops\n\nNew laptops are ordered through the IT desk and encrypted.\n"
    )
    (folder / "travel.md").write_text(
        "# Travel\n\nTrain travel is preferred for trips under 600 km.\n"
    )


@pytest.fixture
def run(tmp_path):
    def _run(*args: str, data: str = "data") -> subprocess.CompletedProcess:
        env = {**os.environ, "RAGWALL_DATA_DIR": str(tmp_path / data)}
        return subprocess.run(
            [RAGWALL, *args], env=env, capture_output=True, text=True, timeout=600
        )

    return _run


@pytest.fixture
def queries(run, tmp_path) -> Path:
    """A source `kb` ingested into the data dir `run` uses; returns a query file for it."""
    _kb(tmp_path / "kb")
    path = tmp_path / "q.txt"
    path.write_text(QUERIES, encoding="utf-8")
    assert run("sources", "add", "kb", str(tmp_path / "kb")).returncode == 0
    assert run("ingest", "kb").returncode == 0
    return path


@pytest.mark.slow
def test_snapshot_then_drift_gates_and_report(run, tmp_path, queries):
    snap = tmp_path / "snap.json"
    made = run("eval", "snapshot", "--queries", str(queries), "--top-k", "3", "--out", str(snap))
    assert made.returncode == 0, made.stderr
    assert json.loads(snap.read_text())["index_version"] == "v1"

    same = run("eval", "drift", "--baseline", str(snap), "--queries", str(queries), "--top-k",
               "3", "--min-mean-rbo", "0.99", "--report", str(tmp_path / "r"), "--json")  # fmt: skip
    assert same.returncode == 0, same.stderr
    result = json.loads(same.stdout.strip().splitlines()[-1])
    assert result["verdict"] == "pass" and result["rbo"]["mean"] == 1.0
    assert set(result) >= {"queries", "jaccard@k", "rbo", "top1_changed", "sources", "scores",
                           "embedding", "gates", "verdict"}  # fmt: skip
    assert (tmp_path / "r" / "report.html").exists()
    assert json.loads((tmp_path / "r" / "drift.json").read_text()) == result

    # A new source that answers every query: its share gate fails, exit 1.
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "all.md").write_text(
        "Refunds are approved by anyone. Laptops are ordered anywhere. Travel policy for trains: "
        "fly instead.\n"
    )
    assert (
        run("sources", "add", "web", str(tmp_path / "web"), "--trust", "external").returncode == 0
    )
    assert run("ingest", "web").returncode == 0
    poisoned = run("eval", "drift", "--baseline", str(snap), "--top-k", "3",
                   "--max-new-source-share", "0.05", "--json")  # fmt: skip
    assert poisoned.returncode == 1, poisoned.stderr
    result = json.loads(poisoned.stdout.strip().splitlines()[-1])
    assert result["sources"][0]["source"] == "web" and result["verdict"] == "fail"


@pytest.mark.slow
def test_bad_input_exits_2_with_a_message(run, tmp_path, queries):
    snap = tmp_path / "snap.json"
    assert run("eval", "snapshot", "--queries", str(queries), "--out", str(snap)).returncode == 0

    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    other = tmp_path / "other.txt"
    other.write_text("a query the snapshot never saw\n")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq-unknown\trefunds\t1\n")
    cases = [
        (("eval", "snapshot", "--queries", str(empty), "--out", str(tmp_path / "x.json")),
         "holds no queries"),
        (("eval", "snapshot", "--queries", str(queries), "--version", "v9", "--out",
          str(tmp_path / "x.json")), "no index version v9"),
        (("eval", "drift", "--baseline", str(garbage)), "not a Ragwall snapshot"),
        (("eval", "drift", "--baseline", str(tmp_path / "nope.json")),
         "neither a snapshot file nor an index version"),
        (("eval", "drift", "--baseline", str(snap), "--queries", str(other)),
         "not in the baseline snapshot"),
        (("eval", "drift", "--baseline", str(snap), "--queries", str(queries), "--qrels",
          str(qrels)), "judges 1 queries that are not in"),
        (("eval", "drift", "--baseline", "version 9", "--queries", str(queries)),
         "no index version v9"),
        (("eval", "drift", "--baseline", "v1"), "give the queries"),
        (("eval", "drift", "--baseline", "v1", "--queries", str(queries), "--min-mean-rbo",
          "5"), "Invalid value for '--min-mean-rbo'"),
        (("eval", "drift", "--baseline", "v1", "--queries", str(queries), "--alpha", "0"),
          "--alpha"),
        (("reindex", "--gate", str(queries), "--max-new-source-share", "-1"),
         "Invalid value for '--max-new-source-share'"),
    ]  # fmt: skip
    # Each case in process (Typer's runner: the same app, options and exit status as the
    # `ragwall` command the snapshot above ran as a user runs it, without a process each).
    env = {"RAGWALL_DATA_DIR": str(tmp_path / "data")}
    for args, message in cases:
        got = CliRunner().invoke(app, list(args), env=env)
        assert got.exit_code == 2, (args, got.stderr, got.exception)
        assert message in " ".join(got.stderr.split()), (args, got.stderr)
        assert got.exception is None or isinstance(got.exception, SystemExit), got.exception

    # A snapshot of another index (another data dir) is refused, not compared.
    _kb(tmp_path / "kb2")
    assert run("sources", "add", "kb", str(tmp_path / "kb2"), data="data2").returncode == 0
    assert run("ingest", "kb", data="data2").returncode == 0
    foreign = run("eval", "drift", "--baseline", str(snap), data="data2")
    assert foreign.returncode == 2 and "different indexes" in foreign.stderr
