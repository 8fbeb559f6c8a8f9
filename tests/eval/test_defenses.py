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
    subset = dict(list(attack.items())[:8])
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
        "--faq",
        str(shared("squad")),
        "--faq",
        str(shared("injection", "benign-docs.jsonl")),
        "--faq-articles",
        "2",
        "--lever-min-trust",
        "0.6",
        "--max-asr-single",
        "0",
        "--json",
    )
    singles = [row["1"]["on"] for row in result["asr@5"].values()]
    assert code == (1 if max(singles) > 0 else 0), err  # the gate
    assert result["questions"] == 8
    asr = result["asr@5"]
    assert set(asr) == {"passage", "question+passage"}
    for form, row in asr.items():
        assert set(row) == {"5", "1"}
        for count, v in row.items():
            # Undefended, a planted passage about a question the background never answers wins.
            assert v["off"] >= 0.75, (form, count, v)
            assert v["on"] <= v["off"]
            won = result["won_with_defenses_on"][f"{form}/{count}"]
            assert len(won) == round(v["on"] * 8) and set(won) <= set(subset)
    # The black-box form opens with the question: the mirror check sees it.
    assert asr["question+passage"]["1"]["on"] <= 0.125
    assert result["attack_top5_flags"]["question+passage/1"]["on"].get("query_mirror", 0) >= 6
    assert asr["question+passage"]["5"]["on"] == 0.0 and asr["passage"]["5"]["on"] == 0.0
    # min_trust above the external tier's 0.5 keeps every planted passage out.
    assert set(result["lever"]["asr@5"].values()) == {0.0}
    (cost,) = result["clean"].values()
    assert 0.0 <= cost["flag_rate"] <= 1.0 and cost["queries"] == 10
    assert abs(cost["ndcg@10"]["on"] - cost["ndcg@10"]["off"]) <= 0.05
    faq = result["faq"]
    for tier in ("internal", "external"):
        assert set(faq[tier]) == {"verbatim", "other"}
        assert sum(k["queries"] for k in faq[tier].values()) == faq["queries"] <= 2 * 2 * 6
    # The query-time heuristics never watch a curated source: an internal FAQ is not flagged.
    assert all(
        faq["internal"][k]["flags_by_kind"].get("query_mirror", 0) == 0 for k in faq["internal"]
    )
    assert faq["external_with_lever_ndcg@10"] <= faq["external"]["other"]["ndcg@10"]["on"]
    assert "poisoning" in err and "question+passage" in err  # the human-readable table


def test_eval_poisoning_gate_and_bad_input(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": {"no": "fields"}}')
    code, _, err = _run(
        "eval", "poisoning", "--attack", str(bad), "--background", str(ROOT / "samples")
    )
    assert code == 2 and "PoisonedRAG" in err
    code, _, err = _run(
        "eval", "poisoning", "--attack", str(bad), "--background", str(ROOT / "samples"),
        "--form", "questions",
    )  # fmt: skip
    assert code == 2 and "--form" in err


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
