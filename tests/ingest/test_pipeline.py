"""The ingest run end to end on the real model and the real embedded Qdrant engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragwall.ingest import Ingester, make_source
from ragwall.retrieval.client_store import ClientStore
from ragwall.retrieval.sparse import bm25_query_vector, tokenize
from ragwall.retrieval.store import Branch, Filter, Match, SparseVec
from tests.conftest import shared

PROVENANCE = {
    "text",
    "state",
    "source_id",
    "doc_uri",
    "doc_name",
    "doc_sha256",
    "doc_version",
    "doc_filetype",
    "chunk_index",
    "chunk_count",
    "char_start",
    "char_end",
    "page_start",
    "page_end",
    "title_path",
    "element_types",
    "token_count",
    "parser",
    "parser_version",
    "embedding_model",
    "ingest_run_id",
    "ingested_at",
    "trust_tier",
    "trust_prior",
    "trust",
    "groups",
}
LIVE = Filter(must=(Match("state", "live"),))


def _folder(tmp_path, names):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in names:
        shutil.copy(shared("docs", name), folder / name.replace("/", "_"))
    return folder


def _register(ingester, folder, tier="internal", groups=("eng",)):
    source = make_source("kb", str(folder), tier, list(groups))
    ingester.state.add_source(source)
    return source


def _all(store, flt=None):
    hits, offset, out = [], None, []
    while True:
        hits, offset = store.scroll(flt, limit=256, offset=offset)
        out += hits
        if offset is None:
            return out


def test_ingest_writes_chunks_with_full_provenance(ingester, tmp_path):
    folder = _folder(tmp_path, ["README.md", "fake-email.eml", "pdf/reliance.pdf", "simple.docx"])
    source = _register(ingester, folder, tier="external", groups=("finance", "eng"))
    report = ingester.ingest(source)
    assert report.documents == 4 and not report.failed
    hits = _all(ingester.store)
    assert len(hits) == report.chunks == ingester.store.count(LIVE)
    for hit in hits:
        p = hit.payload
        assert set(p) >= PROVENANCE, PROVENANCE - set(p)
        assert p["state"] == "live" and p["source_id"] == "kb"
        assert p["trust_tier"] == "external" and p["trust_prior"] == 0.5
        # Trust is the prior unless the detector flagged the chunk (then it is lower).
        flagged = p["injection_score"] >= 0.5 or p["hidden_text"]
        assert p["trust"] < 0.5 if flagged else p["trust"] == 0.5
        assert p["groups"] == ["eng", "finance"]
        assert p["ingest_run_id"] == report.run_id
        assert p["embedding_model"] == ingester.settings.embedding_model
        assert len(p["doc_sha256"]) == 64
    pdf_hits = [h for h in hits if h.payload["doc_name"].endswith(".pdf")]
    assert pdf_hits and all(h.payload["page_start"] for h in pdf_hits)
    assert {h.payload["parser"] for h in pdf_hits} == {"pypdf"}


def test_dense_and_sparse_vectors_are_searchable(ingester, tmp_path):
    folder = _folder(tmp_path, ["README.md", "fake-email.eml", "handbook-1p.docx"])
    source = _register(ingester, folder)
    ingester.ingest(source)
    query = "United States Trustee supervises standing trustees"
    dense = ingester.encoder.encode_query(query)
    sparse = bm25_query_vector(tokenize(query))
    for branches in (
        [Branch("dense", dense, 10)],
        [Branch("bm25", SparseVec(sparse.indices, sparse.values), 10)],
        [Branch("dense", dense, 10), Branch("bm25", SparseVec(sparse.indices, sparse.values), 10)],
    ):
        top = ingester.store.query(branches, limit=3, flt=LIVE)
        assert top and top[0].payload["doc_name"] == "handbook-1p.docx"


def test_reingest_is_idempotent_and_incremental(ingester, tmp_path):
    folder = _folder(tmp_path, ["README.md", "fake-email.eml", "handbook-1p.docx"])
    source = _register(ingester, folder)
    first = ingester.ingest(source)
    ids = {h.id for h in _all(ingester.store)}

    again = ingester.ingest(source)
    assert (again.documents, again.chunks, again.unchanged, again.removed) == (0, 0, 3, 0)
    assert {h.id for h in _all(ingester.store)} == ids

    old_readme = ingester.store.count(Filter(must=(Match("doc_name", "README.md"),)))
    (folder / "README.md").write_text("# Changed\n\nThe readme now talks about turbine blades.\n")
    changed = ingester.ingest(source)
    assert (changed.documents, changed.unchanged) == (1, 2)
    readme = _all(ingester.store, Filter(must=(Match("doc_name", "README.md"),)))
    assert readme and all(
        "turbine" in h.payload["text"] or "Changed" in h.payload["text"] for h in readme
    )
    assert len({h.payload["doc_version"] for h in readme}) == 1
    assert ingester.store.count() == first.chunks - old_readme + len(readme)

    (folder / "fake-email.eml").unlink()
    removed = ingester.ingest(source)
    assert removed.removed == 1 and removed.documents == 0
    assert ingester.store.count(Filter(must=(Match("doc_name", "fake-email.eml"),))) == 0
    assert "fake-email.eml" not in {
        r.split("/")[-1] for r in ingester.state.documents("kb", version=1)
    }


def test_failures_are_isolated_and_leave_nothing(ingester, tmp_path):
    folder = _folder(tmp_path, ["README.md", "empty.txt", "password_protected.xlsx", "simple.zip"])
    (folder / "fake.docx").write_bytes(b"not a zip" * 50)
    (folder / "moved.md").symlink_to(tmp_path / "gone.md")  # a dangling link is reported
    source = _register(ingester, folder)
    report = ingester.ingest(source)
    assert report.documents == 1
    reasons = {f.path.rsplit("/", 1)[-1]: f.reason for f in report.failed}
    assert reasons == {
        "empty.txt": "empty",
        "password_protected.xlsx": "encrypted",
        "fake.docx": "corrupt",
        "moved.md": "unreadable",  # the link as found in the source, its target a detail
    }
    (link,) = [f for f in report.failed if f.path.endswith("moved.md")]
    assert link.target == str(tmp_path / "gone.md") and "dangling" in link.message
    assert [(Path(s.path).name, s.reason) for s in report.skipped] == [
        ("simple.zip", "unsupported_type")
    ]
    assert {h.payload["doc_name"] for h in _all(ingester.store)} == {"README.md"}
    # A document that was fine and turns corrupt is taken out, not left stale.
    (folder / "README.md").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    again = ingester.ingest(source)
    assert "README.md" in {f.path.rsplit("/", 1)[-1] for f in again.failed}
    assert ingester.store.count() == 0


def test_summary_shape(ingester, tmp_path):
    folder = _folder(tmp_path, ["README.md", "empty.txt"])
    report = ingester.ingest(_register(ingester, folder))
    summary = report.summary()
    assert set(summary) == {
        "documents",
        "chunks",
        "unchanged",
        "removed",
        "failed",
        "skipped",
        "notes",
    }
    assert summary["failed"][0]["path"].endswith("empty.txt") and summary["failed"][0]["reason"]
    assert "target" not in summary["failed"][0]  # only a link's failure names a target


class _CrashAfterUpsert:
    """The real store, with a crash injected between writing a document and committing it."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def set_payload(self, payload, flt):
        raise RuntimeError("simulated crash before commit")


def test_a_crash_never_leaves_a_document_half_indexed(ingester, tmp_path):
    folder = _folder(tmp_path, ["README.md", "handbook-1p.docx"])
    source = _register(ingester, folder)
    ingester.ingest(source)
    live_before = sorted(h.id for h in _all(ingester.store, LIVE))

    (folder / "handbook-1p.docx").unlink()
    shutil.copy(shared("docs", "fake-email.eml"), folder / "handbook-1p.eml")
    shutil.copy(shared("docs", "norwich-city.txt"), folder / "README.md")  # changed content
    crashing = Ingester(
        ingester.settings, ingester.state, _CrashAfterUpsert(ingester.store), ingester.encoder
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.ingest(source)
    # What readers see: the old README, complete; none of the new version's chunks.
    live = _all(ingester.store, LIVE)
    readme_live = [h for h in live if h.payload["doc_name"] == "README.md"]
    assert readme_live and {h.id for h in readme_live} <= set(live_before)
    assert ingester.store.count(Filter(must=(Match("state", "pending"),))) > 0

    recovered = ingester.ingest(source)
    assert not recovered.failed
    assert ingester.store.count(Filter(must=(Match("state", "pending"),))) == 0
    names = {h.payload["doc_name"] for h in _all(ingester.store, LIVE)}
    assert names == {"README.md", "handbook-1p.eml"}
    texts = " ".join(h.payload["text"] for h in _all(ingester.store, LIVE))
    assert "Norwich" in texts


def test_client_store_backend_runs_the_same_pipeline(settings, encoder, tmp_path):
    from ragwall.ingest import Registry

    state = Registry(settings.state_path)
    store = ClientStore.connect(":memory:", "ragwall", encoder.dim)
    try:
        ingester = Ingester(settings, state, store, encoder)
        folder = _folder(tmp_path, ["README.md", "fake-email.eml"])
        source = _register(ingester, folder)
        report = ingester.ingest(source)
        assert report.documents == 2 and store.count(LIVE) == report.chunks
        assert ingester.ingest(source).chunks == 0
    finally:
        store.close()
        state.close()


def test_index_built_in_steps_answers_like_one_built_at_the_end(encoder, tmp_path, monkeypatch):
    """Long runs build the index every `optimize_every_chunks` into capped segments."""
    from ragwall.ingest import Registry
    from ragwall.retrieval.backends import open_store
    from ragwall.settings import Settings

    folder = _folder(tmp_path, ["README.md", "fake-email.eml", "handbook-1p.docx", "simple.docx"])
    query = "United States Trustee supervises standing trustees"
    sparse = bm25_query_vector(tokenize(query))
    branches = [
        Branch("dense", encoder.encode_query(query), 20),
        Branch("bm25", SparseVec(sparse.indices, sparse.values), 20),
    ]
    answers = []
    for name, every, seg_kb in (("once", 0, 100_000), ("steps", 3, 1_000)):
        monkeypatch.setenv("RAGWALL_DATA_DIR", str(tmp_path / name))
        settings = Settings(
            embed_buffer_chunks=8, optimize_every_chunks=every, segment_max_kb=seg_kb
        )
        state, store = Registry(settings.state_path), open_store(settings, encoder.dim)
        try:
            ingester = Ingester(settings, state, store, encoder)
            report = ingester.ingest(_register(ingester, folder))
            assert store.count(LIVE) == report.chunks >= 10 and not report.failed
            top = store.query(branches, limit=40, flt=LIVE)  # every candidate: no cut in a tie
            answers.append(
                [(h.payload["doc_name"], h.payload["chunk_index"], round(h.score, 5)) for h in top]
            )
        finally:
            store.close()
            state.close()
    # Equal fused scores may come back in any order; the scored set must be the same.
    once, steps = (sorted(a, key=lambda t: (-t[2], t[0], t[1])) for a in answers)
    assert once == steps
