"""`ragwall eval poisoning` and `ragwall eval injection` end to end on slices of real data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, shared
from tests.eval.test_retrieval import _slice

pytestmark = pytest.mark.slow

RAGWALL = str(Path(sys.executable).with_name("ragwall"))


def _run(*args: str) -> tuple[int, dict, str]:
    proc = subprocess.run([RAGWALL, *args], capture_output=True, text=True, timeout=1200)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
    return proc.returncode, json.loads(last), proc.stderr


def test_eval_poisoning_on_a_slice(tmp_path):
    attack = json.loads(shared("poisonedrag", "nq.json").read_text())
    subset = dict(list(attack.items())[:12])
    attack_file = tmp_path / "attack.json"
    attack_file.write_text(json.dumps(subset))
    clean = _slice(tmp_path, n_queries=10, distractors=40)
    code, result, err = _run(
        "eval",
        "poisoning",
        "--attack",
        str(attack_file),
        "--background",
        str(clean),
        "--background",
        str(ROOT / "samples"),
        "--clean",
        str(clean),
        "--json",
    )
    assert code == 0, err
    assert set(result) >= {"asr@5", "asr@5_single", "clean_ndcg@10", "clean_flag_rate"}
    assert result["questions"] == 12
    # Undefended, planted passages about off-topic questions win easily; defended, they are flagged.
    assert result["asr@5"]["off"] >= 0.9
    assert result["asr@5"]["on"] < result["asr@5"]["off"]
    assert 0.0 <= result["clean_flag_rate"] <= 1.0
    assert abs(result["clean_ndcg@10"]["on"] - result["clean_ndcg@10"]["off"]) <= 0.05
    assert "poisoning" in err  # the human-readable table


def test_eval_poisoning_gate_and_bad_input(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": {"no": "fields"}}')
    code, _, err = _run(
        "eval", "poisoning", "--attack", str(bad), "--background", str(ROOT / "samples")
    )
    assert code == 2 and "PoisonedRAG" in err


def test_eval_injection_reports_rates(tmp_path):
    rows = [
        json.loads(x) for x in shared("injection", "bipia-train.jsonl").read_text().splitlines()
    ]
    sample = tmp_path / "sample.jsonl"
    sample.write_text(
        "\n".join(json.dumps({"text": r["text"], "label": r["label"]}) for r in rows[::10])
    )
    windows = tmp_path / "docs"
    windows.mkdir()
    (windows / "notes.md").write_text((ROOT / "samples" / "handbook" / "expenses.md").read_text())
    code, result, err = _run(
        "eval", "injection", "--dataset", str(sample), "--windows", str(windows), "--json"
    )
    assert code == 0, err
    row = result["datasets"][str(sample)]
    assert row["texts"] == len(rows[::10]) and row["attacks"] == sum(r["label"] for r in rows[::10])
    for name in ("rules", "old_head", "model", "detector"):
        assert set(row[name]) >= {"precision", "recall", "fpr"}
        # rules + model flag at least what either part flags alone
        assert row["detector"]["recall"] >= row[name]["recall"]
    assert row["detector"]["recall"] > 0.5 and row["detector"]["fpr"] < 0.5
    assert result["recall"] == row["detector"]["recall"]  # one set: the old top-level keys
    assert result["windows"][str(windows)]["windows"] >= 1
    assert "model" in err and "old_head" in err  # the table a person reads
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n')
    code, _, err = _run("eval", "injection", "--dataset", str(bad))
    assert code == 2 and "label" in err


@pytest.mark.xfail(
    strict=True,
    reason="known weakness of the injection model (README, Defenses): 1 of the samples' 14 "
    "chunks, the password-reset page's account-security advice, is flagged (7 %)",
)
def test_sample_documents_are_rarely_flagged():
    code, result, err = _run("eval", "injection", "--documents", str(ROOT / "samples"), "--json")
    assert code == 0, err
    assert result["chunks"] > 10 and result["documents"] >= 5
    assert result["injection_rate"] <= 0.05, result["examples"]


def test_eval_injection_without_input_exits_2():
    code, _, err = _run("eval", "injection")
    assert code == 2 and "--dataset" in err
