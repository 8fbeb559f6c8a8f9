"""Text that a Word document carries but a reader does not see.

Three ways to hide a run of text in a DOCX file, each common in poisoned documents: the "hidden"
font property (``w:vanish``), white text on no (or a white) highlight, and text of 2 pt or less.
The parser still extracts that text, so it reaches chunks; these segments let ingest mark the
chunks that carry it, the way :mod:`defend.hidden_html` does for web pages.
"""

from __future__ import annotations

from pathlib import Path

from ragwall.defend.hidden_html import MIN_CHARS, HiddenSegment, find_hidden

_MAX_VISIBLE_PT = 2.0
_LIGHT_HIGHLIGHTS = {None, 0, 16}  # none, "auto", white (WD_COLOR_INDEX)


def _run_hides(run) -> tuple[str, str] | None:  # noqa: ANN001 - a docx.text.run.Run
    """``(kind, how)`` if this run is invisible to a reader, else None."""
    font = run.font
    style_font = run.style.font if run.style is not None else None
    if font.hidden or (font.hidden is None and style_font is not None and style_font.hidden):
        return "office_hidden", "hidden text (w:vanish) in a DOCX"
    color = font.color.rgb if font.color is not None and font.color.type is not None else None
    highlight = font.highlight_color
    if str(color) == "FFFFFF" and (highlight is None or int(highlight) in _LIGHT_HIGHLIGHTS):
        return "white_text", "white text in a DOCX"
    if font.size is not None and font.size.pt <= _MAX_VISIBLE_PT:
        return "tiny_text", f"{font.size.pt:g} pt text in a DOCX"
    return None


def _paragraphs(document):  # noqa: ANN001, ANN202 - docx objects
    """Every paragraph: body (tables included, at any depth), headers and footers."""
    from docx.text.paragraph import Paragraph

    parts = [document.element.body]
    for section in document.sections:
        for part in (section.header, section.footer):
            if part is not None and not part.is_linked_to_previous:
                parts.append(part._element)
    for root in parts:
        for p in root.iter("{http://schemas.openxmlformats.org/wordprocessingml/2006/main}p"):
            yield Paragraph(p, document)


def find_hidden_docx(path: Path) -> list[HiddenSegment]:
    """Hidden stretches of text in a DOCX file; [] for a file python-docx cannot open."""
    import docx

    try:
        document = docx.Document(str(path))
    except Exception:  # a damaged file fails in the parser, with its reason; not here
        return []
    out: list[HiddenSegment] = []
    for paragraph in _paragraphs(document):
        current: tuple[str, str] | None = None
        texts: list[str] = []
        for run in [*paragraph.runs, None]:  # None flushes the paragraph's last segment
            hides = _run_hides(run) if run is not None else None
            if hides != current:
                text = " ".join("".join(texts).split())
                if current is not None and len(text) >= MIN_CHARS:
                    out.append(HiddenSegment(current[0], current[1], text))
                current, texts = hides, []
            if run is not None and hides is not None:
                texts.append(run.text)
    return out


def find_hidden_in_file(path: Path) -> list[HiddenSegment]:
    """Hidden text of an HTML page or a Word document; [] for other kinds of file."""
    suffix = path.suffix.lower()
    if suffix == ".docx":
        return find_hidden_docx(path)
    if suffix not in (".html", ".htm", ".xhtml"):
        return []
    try:
        return find_hidden(path.read_bytes())
    except OSError:
        return []
