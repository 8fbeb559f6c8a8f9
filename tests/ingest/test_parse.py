"""Parsing real documents, and refusing broken ones with a clear reason."""

from __future__ import annotations

import shutil

import pytest

from ragwall.errors import (
    CorruptDocument,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    UnreadableDocument,
    UnsupportedDocument,
)
from ragwall.ingest.parse import SUPPORTED_EXTENSIONS, check_file, parse_file
from tests.conftest import shared

LIMIT = 50 * 1024 * 1024


@pytest.mark.parametrize(
    "name",
    [
        "README.md",
        "fake-html.html",
        "fake-email.eml",
        "fake-email.msg",
        "simple.docx",
        "fake-power-point.pptx",
        "stanley-cups.xlsx",
        "stanley-cups.csv",
        "stanley-cups.tsv",
        "README.rst",
        "README.org",
        "simple.odt",
        "winter-sports.epub",
        "factbook.xml",
        "pdf/reliance.pdf",
        "tests-example.xls",
    ],
)
def test_parses_each_supported_kind(name):
    parsed = parse_file(shared("docs", name), LIMIT)
    assert parsed.elements
    assert all(e.text.strip() for e in parsed.elements)
    assert parsed.parser in {"unstructured", "pypdf"} and parsed.parser_version


def test_pdf_elements_carry_page_numbers():
    parsed = parse_file(shared("docs", "pdf", "reliance.pdf"), LIMIT)
    pages = {e.metadata.page_number for e in parsed.elements}
    assert None not in pages and len(pages) > 1 and parsed.filetype == "application/pdf"


@pytest.mark.parametrize(
    "name",
    [
        "fake-text-utf-16.txt",
        "fake-text-utf-16-le.txt",
        "fake-text-utf-32.txt",
        "umlauts-non-utf8.md",
        "fake-html-cp1252.html",
        "example-steelJIS-datasheet-utf-16.html",
    ],
)
def test_non_utf8_text_is_decoded(name):
    parsed = parse_file(shared("docs", name), LIMIT)
    text = " ".join(e.text for e in parsed.elements)
    assert "\x00" not in text and "\ufffd" not in text


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("empty.txt", EmptyDocument),
        ("empty.xlsx", EmptyDocument),
        ("eml/empty.eml", EmptyDocument),
        ("password_protected.xlsx", EncryptedDocument),
        ("pdf/password.pdf", EncryptedDocument),
        ("fake-encrypted.msg", EmptyDocument),
        ("simple.zip", UnsupportedDocument),
        ("CantinaBand3.wav", UnsupportedDocument),
        ("file_we_dont_want_imported", UnsupportedDocument),
        ("fake.doc", UnsupportedDocument),
    ],
)
def test_broken_shared_documents_fail_with_a_reason(name, error):
    with pytest.raises(error) as info:
        parse_file(shared("docs", name), LIMIT)
    assert info.value.reason and str(info.value)


def test_binary_disguised_as_text(tmp_path):
    png = shared("docs", "img", "DA-1p.png").read_bytes()
    fake = tmp_path / "notes.txt"
    fake.write_bytes(png)
    with pytest.raises(CorruptDocument, match="binary content"):
        parse_file(fake, LIMIT)
    nul = tmp_path / "data.md"
    nul.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CorruptDocument):
        parse_file(nul, LIMIT)


def test_corrupt_office_and_pdf_files(tmp_path):
    docx = tmp_path / "broken.docx"
    docx.write_bytes(b"this is not a zip package at all" * 10)
    with pytest.raises(CorruptDocument, match="ZIP"):
        parse_file(docx, LIMIT)
    truncated = tmp_path / "truncated.docx"
    truncated.write_bytes(shared("docs", "simple.docx").read_bytes()[:2000])
    with pytest.raises(CorruptDocument):
        parse_file(truncated, LIMIT)
    pdf = tmp_path / "broken.pdf"
    pdf.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 100)
    with pytest.raises((CorruptDocument, EmptyDocument)):
        parse_file(pdf, LIMIT)


def test_oversized_file_is_refused_before_parsing(tmp_path):
    big = tmp_path / "big.txt"
    shutil.copy(shared("docs", "norwich-city.txt"), big)
    with pytest.raises(DocumentTooLarge, match="RAGWALL_MAX_FILE_BYTES"):
        check_file(big, max_bytes=1000)


def test_unreadable_path(tmp_path):
    dangling = tmp_path / "gone.md"
    dangling.symlink_to(tmp_path / "missing.md")
    with pytest.raises(UnreadableDocument):
        check_file(dangling, LIMIT)


def test_supported_extensions_cover_the_issue_list():
    for ext in [
        "md",
        "html",
        "txt",
        "rst",
        "docx",
        "pptx",
        "xlsx",
        "csv",
        "eml",
        "msg",
        "odt",
        "epub",
        "pdf",
    ]:
        assert f".{ext}" in SUPPORTED_EXTENSIONS


def test_text_type_heuristics_use_ragwall_pipelines(tmp_path):
    """unstructured's tokenizer hooks still exist and point at our pipelines after a parse.

    If an unstructured upgrade renames them, this fails instead of parsing silently falling back
    to a model download (offline: a crash) or to the slow neural sentence splitter.
    """
    import unstructured.nlp.tokenize as tok

    from ragwall.ingest.parse import _sentences, _spacy_pipeline

    page = tmp_path / "page.txt"
    page.write_text(
        "Quarterly Results\n\n"
        "Revenue grew in the third quarter. Costs fell. Margins widened as a result.\n\n"
        "The team shipped the release on time.\n"
    )
    elements = parse_file(page, LIMIT).elements
    assert tok._get_nlp is _spacy_pipeline and tok._tokenize_for_cache is _sentences
    assert [e.category for e in elements] == ["Title", "NarrativeText", "NarrativeText"]
    assert "tagger" in _spacy_pipeline().pipe_names
    assert "senter" not in _spacy_pipeline().pipe_names


def test_an_unreadable_attachment_costs_the_email_nothing_but_itself():
    parsed = parse_file(shared("docs", "eml", "mime-attach-mp3.eml"), 50_000_000)
    assert "This is an email with an MP3 attachment." in [e.text for e in parsed.elements]
    assert parsed.notes == [
        "attachment 'sample-3s.mp3' (audio/mpeg) skipped: no parser here reads it"
    ]
    # A readable attachment is still read, and marked as attached to its email.
    parsed = parse_file(shared("docs", "eml", "fake-email-attachment.eml"), 50_000_000)
    attached = [e for e in parsed.elements if e.metadata.attached_to_filename]
    assert attached and not parsed.notes


def test_a_ragged_csv_keeps_every_row_and_names_the_irregular_ones(tmp_path):
    parsed = parse_file(shared("docs", "single-column.csv"), 50_000_000)
    text = "\n".join(e.text for e in parsed.elements)
    for word in ("Lorem", "tempor incididunt", "Ut enim", "veniam"):
        assert word in text
    assert len(parsed.notes) == 1 and "rows 1, 4, 5, 9" in parsed.notes[0]
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("name,amount\nalpha,1\nbeta,2,extra\ngamma,3\n")
    parsed = parse_file(ragged, 50_000_000)
    assert "beta | 2 | extra" in "\n".join(e.text for e in parsed.elements)
    assert "rows 3" in parsed.notes[0]
