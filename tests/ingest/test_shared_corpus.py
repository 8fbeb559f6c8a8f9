"""Ingest every document in ../shared/data/docs: all kinds, the broken ones included.

The longest files are left out of the ingest (their kinds stay covered by the corpus's other
files): four book-length ones and the five next longest, 9,900 of the corpus's chunks between
them, so embedding them took most of this test's time and told nothing the other files of their
kind do not. Seven of them are parsed on their own instead, in a real parser worker under its
time and memory limits. Ingest speed at size is ``bench/ingest.py``'s job.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragwall.embed import resolve_model_path
from ragwall.ingest import make_source
from ragwall.ingest.pool import ParserPool
from ragwall.retrieval.store import Filter, Match
from tests.conftest import shared

# Files that must fail, and why: broken, encrypted or empty.
EXPECTED_FAILURES = {
    "empty.txt": "empty",
    "empty.xlsx": "empty",
    "eml/empty.eml": "empty",
    "password_protected.xlsx": "encrypted",
    "pdf/password.pdf": "encrypted",
}
# Files parsed alone, not ingested, and the chunks each must give at least: each kind keeps
# other files in the ingested corpus.
PARSED_ALONE = {
    "pdf/pdf2image-memory-error-test-400p.pdf": 600,
    "handbook-872p.docx": 1000,
    "example-10k.html": 250,
    "language-docs/UDHR_first_article_all.txt": 150,
    "pdf/failure-after-repair.pdf": 120,
    "csv-with-long-lines.csv": 120,
    "norwich-city.txt": 80,
}
# Left out of the ingest: those, and two books that take the parser long (plain text, a PDF).
BOOKS = ("book-war-and-peace-1225p.txt", "pdf/DA-619p.pdf", *PARSED_ALONE)
# Files skipped unread: formats without an offline parser.
EXPECTED_SKIPPED = ["CantinaBand3.wav", "fake.doc", "img/DA-1p.png", "simple.zip"]


def _kind(path: Path) -> str:
    return path.suffix.lower() or path.name


def _corpus_without_books(folder: Path) -> Path:
    """A copy of the shared documents without :data:`BOOKS`, checked to keep every kind."""
    source = shared("docs").resolve()
    files = [p for p in source.rglob("*") if p.is_file()]
    kept = [p for p in files if str(p.relative_to(source)) not in BOOKS]
    assert len(kept) == len(files) - len(BOOKS), "a book-length file is gone from the corpus"
    assert {_kind(p) for p in kept} == {_kind(p) for p in files}
    for p in kept:
        target = folder / p.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
    return folder.resolve()


@pytest.mark.slow
def test_ingest_the_whole_shared_corpus(ingester, tmp_path):
    root = _corpus_without_books(tmp_path / "docs")
    source = make_source("docs", str(root), "internal", ["all"])
    ingester.state.add_source(source)
    report = ingester.ingest(source)

    failed = {f.path[len(str(root)) + 1 :]: f for f in report.failed}
    for name, reason in EXPECTED_FAILURES.items():
        assert name in failed and failed[name].reason == reason, (name, failed.get(name))
    assert all(f.message for f in report.failed)
    skipped = {s.path[len(str(root)) + 1 :]: s.reason for s in report.skipped}
    for name in EXPECTED_SKIPPED:
        assert skipped.get(name) == "unsupported_type", (name, skipped)
    assert not set(skipped) & set(failed)
    # Indexed, with what was left out named: an audio attachment, a ragged row.
    notes = {n.path[len(str(root)) + 1 :]: n.note for n in report.notes}
    assert (
        "eml/mime-attach-mp3.eml" not in failed
        and "sample-3s.mp3" in notes["eml/mime-attach-mp3.eml"]
    )
    assert "single-column.csv" not in failed and "rows" in notes["single-column.csv"]
    total = sum(1 for p in root.rglob("*") if p.is_file())
    assert report.documents + len(report.failed) + len(report.skipped) == total
    assert report.documents >= 140
    # Nothing of a failed document is in the index; every indexed one is whole and live.
    for f in report.failed:
        assert ingester.store.count(Filter(must=(Match("doc_uri", f.path),))) == 0
    assert ingester.store.count(Filter(must=(Match("state", "live"),))) == report.chunks
    records = ingester.state.documents("docs", version=1)
    assert len(records) == report.documents
    assert sum(r.chunks for r in records.values()) == report.chunks


@pytest.mark.slow
def test_the_longest_files_parse_alone_within_the_workers_limits(settings):
    config = {
        "max_tokens": settings.chunk_max_tokens,
        "overlap_tokens": settings.chunk_overlap_tokens,
        "max_chars": settings.chunk_max_chars,
        "new_after_chars": settings.chunk_new_after_chars,
        "combine_under_chars": settings.chunk_combine_under_chars,
    }
    with ParserPool(settings, resolve_model_path(settings.embedding_model), config) as pool:
        for name, at_least in PARSED_ALONE.items():
            result = pool.wait(pool.submit(shared("docs", name)))
            assert result is not None and result["ok"], (name, result)
            assert len(result["chunks"]) >= at_least, name
            assert all(c["text"].strip() for c in result["chunks"]), name
