"""Chunking: structure, the token bound, overlap, and provenance spans."""

from __future__ import annotations

import pytest

from ragwall.embed import resolve_model_path
from ragwall.ingest.chunk import ChunkConfig, _layout, chunk_elements, load_tokenizer
from ragwall.ingest.parse import parse_file
from tests.conftest import shared


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))


def _chunks(path, tokenizer, **cfg):
    parsed = parse_file(path, 50 * 1024 * 1024)
    doc_text, _, _ = _layout(parsed.elements)
    return doc_text, chunk_elements(parsed.elements, tokenizer, ChunkConfig(**cfg))


def test_every_chunk_fits_the_token_budget(tmp_path, tokenizer):
    long_para = " ".join(["The boundary layer thickens downstream of the leading edge."] * 200)
    doc = tmp_path / "long.md"
    doc.write_text(f"# Flow\n\n{long_para}\n\n## Notes\n\nShort note.\n")
    _, chunks = _chunks(
        doc, tokenizer, max_tokens=128, overlap_tokens=16, max_chars=5000, new_after_chars=4000
    )
    assert len(chunks) > 5
    for chunk in chunks:
        real = len(tokenizer.encode(chunk.text, add_special_tokens=True).ids)
        assert real <= 128 + 2  # detokenised boundaries may merge a piece; never more
        assert chunk.token_count <= 128


def test_split_chunks_overlap(tmp_path, tokenizer):
    words = " ".join(f"word{i}" for i in range(3000))
    doc = tmp_path / "words.txt"
    doc.write_text(words)
    _, chunks = _chunks(
        doc, tokenizer, max_tokens=64, overlap_tokens=16, max_chars=100000, new_after_chars=100000
    )
    assert len(chunks) > 3
    first, second = chunks[0].text.split(), chunks[1].text.split()
    assert set(first[-3:]) & set(second[:10])  # the tail of one opens the next


def test_spans_point_into_the_document_text(tokenizer):
    doc_text, chunks = _chunks(shared("docs", "norwich-city.txt"), tokenizer)
    located = [c for c in chunks if c.char_start is not None]
    assert len(located) >= 0.9 * len(chunks)
    for chunk in located:
        assert doc_text[chunk.char_start : chunk.char_end] == chunk.text
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_title_path_follows_headings(tmp_path, tokenizer):
    doc = tmp_path / "guide.md"
    doc.write_text(
        "# Admin guide\n\nIntro paragraph for administrators of the service.\n\n"
        "## Passwords\n\nTo reset your password, open Settings and choose Security. "
        * 3
        + "\n\n## Billing\n\nInvoices are sent monthly to the account owner by e-mail.\n"
    )
    _, chunks = _chunks(doc, tokenizer, combine_under_chars=0)
    paths = [c.title_path for c in chunks]
    assert ["Admin guide"] in paths or paths[0][:1] == ["Admin guide"]
    assert any(p[-1:] == ["Billing"] for p in paths)
    assert all("Title" in c.element_types or c.title_path for c in chunks)


def test_pages_from_pdf(tokenizer):
    _, chunks = _chunks(shared("docs", "pdf", "reliance.pdf"), tokenizer)
    assert all(c.page_start is not None and c.page_start <= c.page_end for c in chunks)
    assert max(c.page_end for c in chunks) > 1
