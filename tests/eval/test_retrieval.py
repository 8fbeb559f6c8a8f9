"""`ragwall eval retrieval` on a real judged collection (a slice of Cranfield)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragwall.datasets import DatasetError, load_beir
from tests.conftest import shared

QUERIES = 15  # judged Cranfield dev queries in the slice


def _slice(tmp_path: Path, n_queries: int = QUERIES, distractors: int = 60) -> Path:
    """The first judged queries of Cranfield dev, with their judged documents plus the first
    ``distractors`` documents of the corpus."""
    src = shared("cranfield")
    qrels = (src / "qrels" / "dev.tsv").read_text().splitlines()
    header, rows = qrels[0], [r.split("\t") for r in qrels[1:]]
    keep_q = list(dict.fromkeys(r[0] for r in rows))[:n_queries]
    rows = [r for r in rows if r[0] in keep_q]
    docs = {r[1] for r in rows}
    corpus = [json.loads(x) for x in (src / "corpus.jsonl").read_text().splitlines()]
    docs |= {d["_id"] for d in corpus[:distractors]}
    out = tmp_path / "cran-slice"
    (out / "qrels").mkdir(parents=True)
    (out / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus if d["_id"] in docs))
    queries = [json.loads(x) for x in (src / "queries.jsonl").read_text().splitlines()]
    (out / "queries.jsonl").write_text(
        "\n".join(json.dumps(q) for q in queries if q["_id"] in keep_q)
    )
    (out / "qrels" / "dev.tsv").write_text("\n".join([header] + ["\t".join(r) for r in rows]))
    return out


@pytest.mark.slow
def test_eval_retrieval_json_and_table(tmp_path):
    dataset = _slice(tmp_path)
    ragwall = str(Path(sys.executable).with_name("ragwall"))
    run = subprocess.run(
        [ragwall, "eval", "retrieval", "--dataset", str(dataset), "--split", "dev", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(result["stages"]) == {
        "dense",
        "bm25",
        "fused",
        "fused (document-level)",
        "fused+freshness",
    }
    for name, metrics in {**result["stages"], **result["peers"]}.items():
        assert set(metrics) >= {"ndcg@10", "recall@100", "mrr@10", "ms_per_query"}, name
        assert 0.0 < metrics["ndcg@10"] <= 1.0 and metrics["queries"] == QUERIES
    assert {"bm25s", "rank-bm25", "rrf(bm25s, dense) k=60"} <= set(result["peers"])
    # On judged data the system must be in the league of plain BM25, not broken.
    assert result["stages"]["fused"]["ndcg@10"] >= 0.8 * result["peers"]["bm25s"]["ndcg@10"]
    assert "nDCG@10" in run.stderr  # the human-readable table
    # Each stage against the RRF peer, query by query, with its interval.
    vs = result["versus_peer"]
    assert vs["peer"] == "rrf(bm25s, dense) k=60"
    assert set(vs) == {"peer", *result["stages"]}
    peer = result["peers"][vs["peer"]]
    for name in ("dense", "bm25", "fused"):
        d = vs[name]
        assert d["wins"] + d["losses"] + d["ties"] == QUERIES
        assert d["ci95"][0] <= d["mean_diff"] <= d["ci95"][1] and 0.0 < d["p"] <= 1.0
        gap = result["stages"][name]["ndcg@10"] - peer["ndcg@10"]
        assert abs(d["mean_diff"] - gap) < 1e-3
    assert "against rrf(bm25s, dense) k=60" in run.stderr
    boost = result["freshness"]  # the recency boost on against off, query by query
    assert boost["wins"] + boost["losses"] + boost["ties"] == QUERIES
    gap = result["stages"]["fused+freshness"]["ndcg@10"] - result["stages"]["fused"]["ndcg@10"]
    assert abs(boost["mean_diff"] - gap) < 1e-3
    assert "recency boost (half-life 180 d" in run.stderr


def test_rrf_reference_sums_reciprocal_ranks():
    from ragwall.eval.retrieval import _rrf

    # a: 1/61 + 1/62, b: 1/62 + 1/61, c: 1/63, d: 1/63 -> ties keep first-seen order
    assert _rrf([["a", "b", "c"], ["b", "a", "d"]]) == ["a", "b", "c", "d"]
    assert _rrf([["x", "y"], ["y"]]) == ["y", "x"]  # 1/62 + 1/61 beats 1/61
    assert _rrf([["x"], []], k=0) == ["x"]


def test_dataset_errors_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="corpus.jsonl"):
        load_beir(tmp_path, "dev")
    (tmp_path / "corpus.jsonl").write_text('{"_id": "1", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text("not json\n")
    with pytest.raises(DatasetError, match="not JSON"):
        load_beir(tmp_path, "dev")


def test_versus_peer_pairs_queries():
    from ragwall.eval.retrieval import versus

    peer = {"per_query_ndcg@10": {"a": 0.5, "b": 0.2, "c": 0.9, "d": 0.4}}
    same = versus(peer, peer)
    assert same["mean_diff"] == 0.0 and same["ci95"] == [0.0, 0.0]
    assert (same["wins"], same["losses"], same["ties"]) == (0, 0, 4) and same["p"] == 1.0
    # Better on every query by 0.1: a positive interval that excludes 0.
    up = versus(
        peer, {"per_query_ndcg@10": {q: v + 0.1 for q, v in peer["per_query_ndcg@10"].items()}}
    )
    assert up["mean_diff"] == 0.1 and up["ci95"][0] > 0 and up["wins"] == 4
    # One big win and three small losses: the mean says +, the interval says noise.
    mixed = versus(peer, {"per_query_ndcg@10": {"a": 0.9, "b": 0.19, "c": 0.89, "d": 0.39}})
    assert mixed["mean_diff"] > 0 and mixed["ci95"][0] < 0 < mixed["ci95"][1]
    assert (mixed["wins"], mixed["losses"]) == (1, 3)
