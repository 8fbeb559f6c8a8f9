"""ragwall.service: each operation does its work and appends exactly one audit record."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from ragwall.errors import (
    SourceBusy,
    SourceExists,
    SourceNotFound,
    SourceOutsideRoots,
    StoreLocked,
)
from ragwall.retrieval.search import SearchFilter
from ragwall.service import DEV_PRINCIPAL, InvalidRequest, RetrieveParams, Service


def _records(svc: Service) -> list[dict]:
    return [json.loads(line) for line in svc.settings.audit_path.read_text().splitlines()]


@pytest.fixture
def service(settings, encoder, tmp_path):
    corpus = tmp_path / "kb"
    corpus.mkdir()
    (corpus / "refunds.md").write_text(
        "# Refunds\n\nRefunds above 500 EUR need approval by the finance director.\n"
    )
    (corpus / "laptops.md").write_text(
        "# Laptops\n\nNew laptops are ordered through the IT desk.\n"
    )
    torch_queries = settings.model_copy(update={"query_encoder": "torch"})  # no ONNX export here
    with Service(torch_queries, encoder=encoder) as svc:
        yield svc, corpus


def test_each_admin_operation_appends_one_record(service):
    svc, corpus = service
    steps = [
        (lambda: svc.add_source("k1", "kb", str(corpus), "internal", ["staff"]), "source.add"),
        (lambda: svc.ingest("k1", "kb"), "source.ingest"),
        (lambda: svc.set_quarantine("k1", "source", "kb", True, "probe"), "source.quarantine"),
        (lambda: svc.set_quarantine("k1", "source", "kb", False), "source.release"),
        (lambda: svc.set_quarantine("k1", "document", "0" * 64, True), "document.quarantine"),
        (lambda: svc.create_key("k1", "retrieve", ["staff"], "agent"), "key.create"),
    ]
    for run, action in steps:
        before = len(_records(svc)) if svc.settings.audit_path.exists() else 0
        run()
        assert [r["action"] for r in _records(svc)[before:]] == [action]
    key, record = svc.create_key("k1", "admin")
    svc.revoke_key("k1", record.id)
    assert svc.remove_source("k1", "kb") > 0
    actions = [r["action"] for r in _records(svc)]
    assert actions[-3:] == ["key.create", "key.revoke", "source.remove"]
    assert all(r["key_id"] == "k1" for r in _records(svc))
    assert key not in svc.settings.audit_path.read_text()
    assert svc.runtime.audit.verify().ok


def test_refused_operations_change_nothing_and_record_nothing(service):
    svc, corpus = service
    svc.add_source("k1", "kb", str(corpus))
    n = len(_records(svc))
    with pytest.raises(SourceExists):
        svc.add_source("k1", "kb", str(corpus), "verified")
    assert svc.add_source("k1", "kb", str(corpus), exist_ok=True).id == "kb"  # identical: no-op
    with pytest.raises(InvalidRequest, match="sha256"):
        svc.set_quarantine("k1", "document", "not-a-sha", True)
    with pytest.raises(SourceNotFound):
        svc.set_quarantine("k1", "source", "nope", True)
    with pytest.raises(SourceNotFound):
        svc.remove_source("k1", "nope")
    with pytest.raises(SourceNotFound):
        svc.ingest("k1", "nope")
    assert len(_records(svc)) == n
    assert not svc.runtime.index_opened()  # none of these opened the store


def test_retrieve_filters_by_groups_honours_quarantine_and_records_a_hash(service):
    svc, corpus = service
    svc.add_source("k1", "kb", str(corpus), "internal", ["staff"])
    svc.ingest("k1", "kb")
    secret, reader = svc.create_key("k1", "retrieve", ["staff"])
    who = svc.authenticate(secret)
    assert who is not None and who.groups == ("staff",)
    ask = RetrieveParams(query="who approves refunds", top_k=2, context=True)
    done = svc.retrieve(who, ask)
    assert "finance director" in done.result.hits[0].text
    assert done.context is not None and done.result.hits[0].id in done.context.included
    record = _records(svc)[-1]
    assert record["action"] == "retrieve" and record["key_id"] == reader.id
    assert "refunds" not in json.dumps(record) and len(record["query_sha256"]) == 64

    outsider = svc.authenticate(svc.create_key("k1", "retrieve", ["other"])[0])
    assert svc.retrieve(outsider, ask).result.hits == []
    only = RetrieveParams(query="laptops", filters=SearchFilter(sources=("kb",)))
    assert svc.retrieve(DEV_PRINCIPAL, only).result.hits
    svc.set_quarantine("k1", "source", "kb", True)
    assert svc.retrieve(DEV_PRINCIPAL, only).result.hits == []


def test_refusal_records_are_rate_limited(settings, encoder):
    limited = settings.model_copy(update={"refusal_records_per_minute": 2})
    with Service(limited, encoder=encoder) as svc:
        written = [svc.record_refusal(None, "GET", "/v1/x", 401, "unauthorized") for _ in range(5)]
        assert written == [True, True, False, False, False]
        svc._access._refusal_window -= 61  # a minute later
        assert svc.record_refusal("k1", "GET", "/v1/x", 403, "forbidden")
        records = _records(svc)
        assert len(records) == 3 and records[-1]["suppressed_before"] == 3


def test_source_roots_refuse_folders_and_links_outside_them(settings, encoder, tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "kb").mkdir(parents=True)
    outside.mkdir()
    (allowed / "kb" / "ok.md").write_text("# Fine\n\nA page inside the allowed root.\n")
    (outside / "secret.md").write_text("# Secret\n\nA page the server must not index.\n")
    (allowed / "kb" / "link.md").symlink_to(outside / "secret.md")
    rooted = settings.model_copy(update={"source_roots": [allowed]})
    with Service(rooted, encoder=encoder) as svc:
        for path in (str(outside), f"{allowed}/../outside", f"{allowed}/../outside/*.md"):
            with pytest.raises(SourceOutsideRoots, match="RAGWALL_SOURCE_ROOTS"):
                svc.add_source("k1", "x", path)
        assert svc.runtime.registry.list_sources() == []
        svc.add_source("k1", "kb", str(allowed / "kb"))
        report = svc.ingest("k1", "kb")
        assert report.documents == 1
        assert [(Path(f.path).name, f.reason) for f in report.failed] == [
            ("link.md", "outside_source_roots")  # the file in the source; its target a detail
        ]
        assert report.failed[0].target == str((outside / "secret.md").resolve())


def test_one_ingest_of_a_source_at_a_time(service):
    svc, corpus = service
    svc.add_source("k1", "kb", str(corpus))
    started, release = threading.Event(), threading.Event()
    outcome: dict = {}

    def slow_progress(stage: str, done: int, total: int) -> None:
        started.set()
        release.wait(60)

    def first() -> None:
        outcome["report"] = svc.ingest("k1", "kb", progress=slow_progress)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(120)
        n = len(_records(svc))
        with pytest.raises(SourceBusy) as busy:
            svc.ingest("k1", "kb")
        assert busy.value.run_id == svc.runtime.registry.running_run("kb") is not None
        assert busy.value.run_id in str(busy.value)
        assert len(_records(svc)) == n  # the refused ingest claims nothing
    finally:
        release.set()
        thread.join(120)
    assert outcome["report"].documents == 2
    assert svc.ingest("k1", "kb").unchanged == 2  # and the lock is free again


def test_a_locked_index_is_reported_before_the_model_loads(settings, tmp_path):
    from filelock import FileLock

    corpus = tmp_path / "kb"
    corpus.mkdir()
    settings.data_dir.mkdir(parents=True)
    held = FileLock(str(settings.data_dir / "index.lock"))  # as another process's server holds it
    held.acquire(timeout=0)
    try:
        with Service(settings) as svc:
            svc.add_source("k1", "kb", str(corpus))
            with pytest.raises(StoreLocked, match="another process"):
                svc.ingest("k1", "kb")
            assert "encoder" not in svc.runtime.__dict__  # refused without loading the model
    finally:
        held.release()


def test_a_corpus_mirrored_in_two_new_sources_is_not_flagged_as_a_flood(
    settings, encoder, tmp_path
):
    """The same handbook in a wiki and on a shared drive, both registered today (issue 12)."""
    corpus = tmp_path / "handbook"
    corpus.mkdir()
    pages = {
        "refunds.md": "Refunds above 500 EUR need approval by the finance director.",
        "refund-process.md": "A refund above 500 EUR is approved by the finance director first.",
        "refund-timing.md": "Approved refunds above 500 EUR are paid by the finance team monthly.",
        "laptops.md": "New laptops are ordered through the IT desk.",
    }
    for name, text in pages.items():
        (corpus / name).write_text(f"# {name[:-3]}\n\n{text}\n")
    torch_queries = settings.model_copy(update={"query_encoder": "torch"})
    with Service(torch_queries, encoder=encoder) as svc:
        for sid in ("wiki", "drive"):
            svc.add_source("k1", sid, str(corpus), "internal")
            svc.ingest("k1", sid)
        done = svc.retrieve(DEV_PRINCIPAL, RetrieveParams(query="who approves refunds", top_k=5))
        hits = done.result.hits
        assert len({h.text for h in hits}) == len(hits)  # each passage once
        assert all(len(h.also_in) == 1 for h in hits)  # with its other source listed
        assert {h.provenance["source_id"] for h in hits} | {
            a["source_id"] for h in hits for a in h.also_in
        } == {"wiki", "drive"}
        assert not [f for h in hits for f in h.flags], [h.flags for h in hits]
