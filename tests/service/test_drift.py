"""Drift evals through the service on real data: a Cranfield subset in the real index, the
PoisonedRAG attack passages as a new source, identical and changed rebuilds, the reindex gate."""

from __future__ import annotations

import json
import shutil

import pytest

from ragwall.datasets import DatasetError, load_corpus, write_documents
from ragwall.eval.drift.compare import Gates
from ragwall.eval.drift.queries import QuerySet, load_dataset_queries
from ragwall.service import NotFound, Service, Side, parse_side
from ragwall.settings import Settings
from tests.conftest import shared

QUERIES = 15  # Cranfield dev queries in the subset
ATTACKED = 15  # PoisonedRAG questions


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A Cranfield subset (the judged documents of QUERIES dev queries, plus others), those
    queries with their qrels, and PoisonedRAG questions with their passages on disk."""
    cran = shared("cranfield")
    dev = load_dataset_queries(cran, "dev")
    ids = list(dev.queries)[:QUERIES]
    qrels = {q: dev.qrels[q] for q in ids}  # type: ignore[index]
    corpus = load_corpus(cran)
    keep = {d for j in qrels.values() for d in j} | set(list(corpus)[:60])
    root = tmp_path_factory.mktemp("drift-data")
    write_documents({d: corpus[d] for d in corpus if d in keep}, root / "cranfield")
    attack = json.loads(shared("poisonedrag", "nq.json").read_text(encoding="utf-8"))
    items = list(attack.items())[:ATTACKED]
    (root / "attack").mkdir()
    for k, v in items:
        for i, text in enumerate(v["adv_texts"]):
            (root / "attack" / f"{k}-{i}.txt").write_text(text, encoding="utf-8")
    cranfield = QuerySet({q: dev.queries[q] for q in ids}, qrels, "cranfield dev")
    attacked = {f"prag-{k}": v["question"] for k, v in items}
    return root, cranfield, attacked


@pytest.fixture(scope="module")
def ingested(data, encoder, tmp_path_factory):
    """The Cranfield subset ingested once; each test works on its own copy of the data dir."""
    root, _, _ = data
    built = tmp_path_factory.mktemp("drift-index") / "data"
    s = Settings(data_dir=built, embed_buffer_chunks=64, query_encoder="torch")
    with Service(s, encoder=encoder) as svc:
        svc.add_source("admin", "cranfield", str(root / "cranfield"), "internal")
        svc.ingest("admin", "cranfield")
    return built


@pytest.fixture
def service(settings, encoder, ingested):
    shutil.copytree(ingested, settings.data_dir)
    s = settings.model_copy(update={"query_encoder": "torch"})
    with Service(s, encoder=encoder) as svc:
        yield svc


def _audit(svc: Service) -> list[dict]:
    return [json.loads(line) for line in svc.settings.audit_path.read_text().splitlines()]


@pytest.mark.slow
def test_a_poisoning_campaign_heads_the_source_drift_and_fails_the_gate(service, data):
    root, cranfield, attacked = data
    mixed = QuerySet({**cranfield.queries, **attacked}, cranfield.qrels, "mixed")
    before = service.snapshot("admin", mixed, 10)
    assert before.index_version == "v1" and len(before.queries) == QUERIES + ATTACKED
    assert all(len(q.hits) == 30 for q in before.queries)  # 3 * top_k chunks kept
    service.add_source("admin", "web-import", str(root / "attack"), "external")
    service.ingest("admin", "web-import")

    result = service.drift(
        "admin", mixed, Side(snapshot=before), Side(), 10, Gates(max_new_source_share=0.05)
    )
    head = result["sources"][0]
    assert head["source"] == "web-import" and head["before"] == 0.0 and head["new"]
    assert head["after"] >= 0.4  # the attacked questions retrieve the planted passages
    assert result["gates"]["max_new_source_share"]["passed"] is False
    assert result["gates"]["max_new_source_share"]["source"] == "web-import"
    assert result["verdict"] == "fail"
    most = [q["id"] for q in result["most_changed"]]
    assert sum(q.startswith("prag-") for q in most) >= 0.8 * len(most)
    per = {r["id"]: r for r in result["per_query"]}
    cran_rbo = [per[q]["rbo"] for q in cranfield.queries]
    assert sum(cran_rbo) / len(cran_rbo) >= 0.9
    assert result["ndcg@10"]["queries"] == QUERIES
    assert result["embedding"]["method"] is None  # a snapshot holds no vectors
    assert _audit(service)[-1]["action"] == "eval.drift"


@pytest.mark.slow
def test_an_identical_rebuild_shows_no_drift_and_a_gated_reindex_keeps_a_changed_version(
    service, data
):
    _, cranfield, _ = data
    gate = {
        "queries": cranfield.queries,
        "qrels": cranfield.qrels,
        "min_mean_rbo": 0.98,
        "max_ndcg_drop": 0.0,
    }
    job = service.reindex("admin", {"rebuild": True, "gate": gate})
    assert job.state == "succeeded", job.error
    assert job.result["reused_vectors"] == 0 and job.result["gate"]["verdict"] == "pass"
    report = service.job_report(job.id)
    assert report.read_text(encoding="utf-8").count("<svg") == 3

    same = service.drift("admin", cranfield, Side(version=1), Side(version=2), 10)
    assert same["rbo"]["mean"] >= 0.98
    lo, hi = same["ndcg@10"]["ci95"]
    assert lo <= 0.0 <= hi
    assert same["embedding"]["method"] == "cosine"
    assert same["embedding"]["matched"] == same["embedding"]["sampled"] > 100
    assert same["embedding"]["cosine"]["mean"] >= 0.999

    # Smaller chunks move the results: the gate keeps the new version ready, not active.
    strict = {**gate, "min_mean_rbo": 0.995}
    job = service.reindex("admin", {"chunk_max_tokens": 48, "gate": strict})
    assert job.state == "failed" and "drift gate failed" in job.error
    assert job.result["version"] == "v3" and job.result["switched"] is False
    info = service.index_info()
    assert info["active"] == "v2"
    assert {v["version"]: v["state"] for v in info["versions"]}["v3"] == "ready"
    assert service.job_report(job.id).exists()
    changed = service.drift("admin", cranfield, Side(version=2), Side(version=3), 10)
    assert changed["jaccard@k_chunks"]["mean"] < 0.5  # other chunks, mostly the same documents
    assert changed["embedding"]["method"] == "cosine"
    assert changed["embedding"]["matched"] < changed["embedding"]["sampled"]
    # --force switches anyway, and says so in the audit trail.
    job = service.reindex("admin", {"chunk_max_tokens": 48, "gate": strict, "force": True})
    assert job.state == "succeeded" and job.result["forced"] is True
    actions = [r["action"] for r in _audit(service)]
    assert "index.gate_failed" in actions and "index.gate_override" in actions
    # A rollback passes over the version its gate rejected, back to the good one.
    assert service.rollback("admin")["active"] == "v2"


@pytest.mark.slow
def test_bad_versions_and_foreign_snapshots_are_refused(service, data, tmp_path):
    _, cranfield, _ = data
    with pytest.raises(NotFound, match="no index version v7"):
        service.snapshot("admin", cranfield, 10, version=7)
    service.runtime.registry.add_version(
        "retired", str(tmp_path / "gone"), {}, "fp", "now", version=5
    )
    with pytest.raises(NotFound, match="v5 is retired"):
        service.snapshot("admin", cranfield, 10, version=5)
    # The CLI's comparison is checked as the HTTP job is (check_request): a retired version is
    # refused before any work, not half-way through.
    with pytest.raises(NotFound, match="v5 is retired"):
        service.drift("admin", cranfield, Side(version=5), Side(), 5)
    snap = service.snapshot("admin", cranfield, 5)
    foreign = snap.model_copy(update={"index_id": "another"})
    with pytest.raises(DatasetError, match="different indexes"):
        service.drift("admin", cranfield, Side(snapshot=foreign), Side(), 5)
    with pytest.raises(DatasetError, match="neither a snapshot file nor an index version"):
        parse_side(str(tmp_path / "missing.json"))
    with pytest.raises(DatasetError, match="give the queries"):
        service.drift("admin", None, Side(version=1), Side(), 5)
