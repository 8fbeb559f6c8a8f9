"""The comparison on hand-made snapshots (each measure and gate), and the report, rendered in
a real headless Chromium."""

from __future__ import annotations

import pytest

from ragwall.datasets import DatasetError
from ragwall.eval.drift.compare import Gates, compare
from ragwall.eval.drift.report import render_html, write_report
from ragwall.eval.drift.snapshot import (
    Snapshot,
    SnapshotHit,
    SnapshotQuery,
    load_snapshot,
    save_snapshot,
)
from tests.browser import launch


def _hit(rank: int, doc: str, source: str = "wiki", flags=(), trust=0.8, score=None) -> SnapshotHit:
    return SnapshotHit(
        rank=rank,
        chunk_id=f"id-{doc}",
        chunk=f"{doc}:0-10",
        doc=doc,
        doc_sha256=doc * 4,
        doc_name=f"{doc}.txt",
        source_id=source,
        scores={"fused": score if score is not None else 1 / (60 + rank), "dense": 0.5},
        trust=trust,
        flags=list(flags),
    )


def _snap(version: str, ranked: dict[str, list[tuple[str, str]]], **kw) -> Snapshot:
    return Snapshot(
        index_id=kw.get("index_id", "idx"),
        collection="ragwall",
        index_version=version,
        fingerprint="fp",
        embedding_model="m",
        ranking={},
        top_k=kw.get("top_k", 5),
        queries=[
            SnapshotQuery(
                id=q,
                text=f"query <{q}>",
                hits=[_hit(i, d, s) for i, (d, s) in enumerate(docs, start=1)],
            )
            for q, docs in ranked.items()
        ],
    )


BASE = {f"q{i}": [(f"d{i}{j}", "wiki") for j in range(5)] for i in range(20)}


def test_identical_snapshots_show_no_drift_and_pass_every_gate():
    a, b = _snap("v1", BASE), _snap("v2", BASE)
    qrels = {q: {docs[0][0]: 1} for q, docs in BASE.items()}
    gates = Gates(max_ndcg_drop=0.0, min_mean_rbo=0.99, max_new_source_share=0.0)
    r = compare(a, b, qrels=qrels, top_k=5, gates=gates)
    assert r["rbo"]["mean"] == pytest.approx(1.0) and r["jaccard@k"]["mean"] == 1.0
    assert r["top1_changed"] == 0.0 and r["most_changed"] == []
    assert r["ndcg@10"]["delta"] == 0.0 and r["ndcg@10"]["p_value"] == 1.0
    assert r["ndcg@10"]["ci95"] == [0.0, 0.0]
    assert r["verdict"] == "pass" and all(g["passed"] for g in r["gates"].values())


def test_a_version_compared_with_itself_has_an_rbo_of_exactly_one(settings, encoder, tmp_path):
    """Through the service, on the real engine, over a corpus whose fused scores tie often
    (``tests/retrieval/tied_corpus.py``): every tie is broken the same way in both snapshots."""
    from ragwall.eval.drift.queries import QuerySet
    from ragwall.service import Service, Side
    from tests.retrieval.tied_corpus import QUERY, write_tied_corpus

    folder = write_tied_corpus(tmp_path / "tied")
    queries = QuerySet(
        {"tied": QUERY, "codes": "card reader fault codes", "back": "who pays customers back"},
        None,
        "tied corpus",
    )
    torch_queries = settings.model_copy(update={"query_encoder": "torch"})
    with Service(torch_queries, encoder=encoder) as svc:
        svc.add_source("admin", "tied", str(folder), "internal")
        svc.ingest("admin", "tied")
        r = svc.drift("admin", queries, Side(version=1), Side(version=1), top_k=10)
    assert [q["rbo"] for q in r["per_query"]] == [1.0, 1.0, 1.0]
    assert r["rbo"]["mean"] == 1.0 and r["jaccard@k"]["mean"] == 1.0
    assert r["top1_changed"] == 0.0 and r["most_changed"] == []


def test_a_rebuild_of_the_same_files_ranks_and_scores_exactly_as_the_first_build(
    settings, encoder, tmp_path
):
    """Two builds of the same files (an ingest, then ``reindex --rebuild``) write the same
    dense and BM25 vectors: documents are embedded and weighted in the source's order, whatever
    order the parser workers finish in, so every score and every rank is the same."""
    from ragwall.eval.drift.queries import QuerySet
    from ragwall.service import Service, Side
    from tests.retrieval.tied_corpus import QUERY, write_tied_corpus

    folder = write_tied_corpus(tmp_path / "tied")
    queries = QuerySet({"tied": QUERY, "codes": "card reader fault codes"}, None, "tied corpus")
    torch_queries = settings.model_copy(update={"query_encoder": "torch"})
    with Service(torch_queries, encoder=encoder) as svc:
        svc.add_source("admin", "tied", str(folder), "internal")
        svc.ingest("admin", "tied")
        job = svc.reindex("admin", {"rebuild": True})
        assert job.state == "succeeded", job.error
        first = svc.snapshot("admin", queries, version=1, top_k=10)
        second = svc.snapshot("admin", queries, version=2, top_k=10)
        r = svc.drift("admin", queries, Side(version=1), Side(version=2), top_k=10)
    assert r["rbo"]["mean"] == 1.0 and r["top1_changed"] == 0.0

    def hits(snap) -> list:  # noqa: ANN001 - a Snapshot
        return [[(h.chunk, h.scores) for h in q.hits] for q in snap.queries]

    assert all(q and any(scores.get("sparse") for _, scores in q) for q in hits(first))
    assert hits(first) == hits(second)


def test_a_new_source_in_many_results_heads_the_source_drift_and_fails_its_gate():
    poisoned = {
        q: ([("evil" + q, "web")] + docs[:4]) if i < 6 else docs
        for i, (q, docs) in enumerate(BASE.items())
    }
    r = compare(
        _snap("v1", BASE),
        _snap("v1", poisoned),
        top_k=5,
        gates=Gates(max_new_source_share=0.05, min_mean_rbo=0.5),
    )
    head = r["sources"][0]
    assert head == {"source": "web", "before": 0.0, "after": 0.3, "delta": 0.3, "new": True}
    assert r["gates"]["max_new_source_share"] == {
        "threshold": 0.05,
        "value": 0.3,
        "source": "web",
        "passed": False,
    }
    assert r["gates"]["min_mean_rbo"]["passed"] and r["verdict"] == "fail"
    assert {q["id"] for q in r["most_changed"]} == {f"q{i}" for i in range(6)}
    assert r["most_changed"][0]["after"][0] == {"doc": "evilq0.txt", "source": "web"}
    assert r["top1_changed"] == 0.3


def test_the_ndcg_gate_fails_only_on_a_significant_drop():
    qrels = {q: {docs[0][0]: 2} for q, docs in BASE.items()}
    # Every query loses its relevant document: a large, consistent drop.
    worse = {q: [(f"x{q}", "wiki")] + docs[1:] for q, docs in BASE.items()}
    r = compare(_snap("v1", BASE), _snap("v2", worse), qrels=qrels, top_k=5,
                gates=Gates(max_ndcg_drop=0.02))  # fmt: skip
    q = r["ndcg@10"]
    assert q["delta"] == -1.0 and q["p_value"] < 0.05 and q["ci95"][1] < 0
    assert not r["gates"]["max_ndcg_drop"]["passed"]
    # One query of 20 loses it: a drop of 0.05, not significant, so the gate holds.
    one = dict(BASE, q0=worse["q0"])
    r = compare(_snap("v1", BASE), _snap("v2", one), qrels=qrels, top_k=5,
                gates=Gates(max_ndcg_drop=0.02))  # fmt: skip
    assert r["ndcg@10"]["delta"] == -0.05 and r["ndcg@10"]["p_value"] > 0.05
    assert r["gates"]["max_ndcg_drop"]["passed"]
    # Without qrels the nDCG gate cannot pass.
    r = compare(_snap("v1", BASE), _snap("v2", BASE), top_k=5, gates=Gates(max_ndcg_drop=0.1))
    assert not r["gates"]["max_ndcg_drop"]["passed"] and r["verdict"] == "fail"


def test_scores_trust_and_flags_drift():
    flagged = _snap("v2", BASE)
    for q in flagged.queries:
        q.hits[0] = _hit(1, q.hits[0].doc, flags=["injection"], trust=0.2, score=0.9)
    r = compare(_snap("v1", BASE), flagged, top_k=5)
    assert r["scores"]["flagged_share"] == {"baseline": 0.0, "candidate": 0.2}
    assert r["scores"]["mean_trust"]["candidate"] < r["scores"]["mean_trust"]["baseline"]
    assert r["scores"]["fused"]["ks"]["statistic"] == pytest.approx(0.2)


def test_incomparable_snapshots_are_refused():
    with pytest.raises(DatasetError, match="different indexes"):
        compare(_snap("v1", BASE), _snap("v1", BASE, index_id="other"))
    with pytest.raises(DatasetError, match="not in the candidate snapshot"):
        compare(_snap("v1", BASE), _snap("v2", {"q0": BASE["q0"]}), top_k=5)
    with pytest.raises(DatasetError, match="taken with top_k 5"):
        compare(_snap("v1", BASE), _snap("v2", BASE), top_k=10)


def test_snapshot_files_round_trip_and_bad_files_are_refused(tmp_path):
    snap = _snap("v1", BASE)
    save_snapshot(snap, tmp_path / "s.json")
    assert load_snapshot(tmp_path / "s.json") == snap
    (tmp_path / "bad.json").write_text('{"format": "something else"}', encoding="utf-8")
    with pytest.raises(DatasetError, match="not a Ragwall snapshot"):
        load_snapshot(tmp_path / "bad.json")
    with pytest.raises(DatasetError, match="cannot read"):
        load_snapshot(tmp_path / "missing.json")


def test_the_report_escapes_what_the_index_holds():
    evil = {"q<script>": [("<img src=x onerror=alert(1)>", "<b>src</b>")]}
    other = {"q<script>": [("plain", "wiki")]}
    page = render_html(compare(_snap("v1", BASE | evil), _snap("v2", BASE | other), top_k=1))
    assert "<script>" not in page and "<img src=x" not in page and "<b>src</b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


@pytest.mark.slow
def test_the_report_renders_its_plots_in_a_real_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    changed = {q: list(reversed(docs)) if i % 3 == 0 else docs for i, (q, docs) in
               enumerate(BASE.items())}  # fmt: skip
    changed["q1"] = [("new1", "web")] + BASE["q1"][:4]
    qrels = {q: {docs[0][0]: 1} for q, docs in BASE.items()}
    result = compare(_snap("v1", BASE), _snap("v2", changed), qrels=qrels, top_k=5,
                     gates=Gates(max_new_source_share=0.01))  # fmt: skip
    paths = write_report(result, tmp_path / "report")
    assert paths["json"].exists()
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(paths["html"].as_uri())
            assert page.locator("#verdict").inner_text() == "verdict: fail"
            for name in ("overlap", "ndcg", "sources"):
                svg = page.locator(f"#plot-{name} svg")
                assert svg.count() == 1, name
                box = svg.bounding_box()
                assert box and box["width"] > 100 and box["height"] > 100, (name, box)
                # Drawn, not an empty frame: the plot holds paths (bars, points, axes).
                assert page.locator(f"#plot-{name} svg path").count() > 10, name
            assert page.get_by_text("query <q1>").count() >= 1  # escaped text shows as text
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000
