"""Text an HTML page hides from its reader but hands to a parser (and so to an agent).

unstructured keeps the text of elements hidden by CSS and the ``alt`` text of images, and drops
comments. A person reading the page sees none of them; an agent reading the chunks sees the first
two. This module finds them in the raw HTML so that ingest can mark the chunks that carry them
and scan the comments for instructions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HIDING_STYLE = [
    (re.compile(r"display\s*:\s*none", re.I), "display:none"),
    (re.compile(r"visibility\s*:\s*(?:hidden|collapse)", re.I), "visibility:hidden"),
    (
        re.compile(r"(?<![-\w])font-size\s*:\s*0(?:\.0+)?\s*(?:px|pt|em|rem|%)?\s*(?:;|$|!)", re.I),
        "font-size:0",
    ),
    (re.compile(r"(?<![-\w])opacity\s*:\s*0(?:\.0+)?\s*(?:;|$|!)", re.I), "opacity:0"),
    (re.compile(r"(?:left|top|text-indent)\s*:\s*-\d{3,}", re.I), "moved off-screen"),
    (
        re.compile(
            r"(?<![-\w])(?:height|width|max-height)\s*:\s*0(?:px)?\s*;[^\"']*overflow\s*:\s*hidden",
            re.I,
        ),
        "zero-size box",
    ),
    (re.compile(r"clip(?:-path)?\s*:\s*(?:rect\(\s*0|inset\(\s*50%)", re.I), "clipped away"),
]
_WHITE = re.compile(
    r"(?<![-\w])color\s*:\s*(?:#fff(?:fff)?\b|white\b|rgba?\(\s*255\s*,\s*255\s*,\s*255)", re.I
)
_DARK_BACKGROUND = re.compile(
    r"background(?:-color)?\s*:\s*(?:#(?:[0-7][0-9a-f]{2}|[0-7][0-9a-f]{5})\b|black\b|rgb\(\s*[0-9]{1,2}\s*,)",
    re.I,
)
MIN_CHARS = 8  # shorter hidden strings (icons, single words) carry no instructions


@dataclass(frozen=True)
class HiddenSegment:
    # HTML: "css_hidden", "white_text", "hidden_attribute", "alt_text", "comment";
    # DOCX (defend.hidden_docx): "office_hidden", "white_text", "tiny_text"
    kind: str
    how: str
    text: str


def _style_hides(style: str) -> str | None:
    for rx, name in _HIDING_STYLE:
        if rx.search(style):
            return name
    if _WHITE.search(style) and not _DARK_BACKGROUND.search(style):
        return "white text"
    return None


def find_hidden(html: str | bytes) -> list[HiddenSegment]:
    """Every stretch of text in ``html`` that a browser would not show (or shows as an image)."""
    from lxml import etree
    from lxml import html as lxml_html

    try:
        root = lxml_html.fromstring(html)
    except (etree.ParserError, ValueError):
        return []
    out: list[HiddenSegment] = []
    for node in root.iter():
        if isinstance(node, etree._Comment):
            text = " ".join(str(node.text or "").split())
            if len(text) >= MIN_CHARS:
                out.append(HiddenSegment("comment", "HTML comment", text))
            continue
        if not isinstance(node.tag, str):
            continue
        if node.tag in ("script", "style", "noscript", "template"):
            continue
        alt = node.get("alt")
        if alt and len(alt.strip()) >= MIN_CHARS:
            out.append(
                HiddenSegment("alt_text", f"alt text of <{node.tag}>", " ".join(alt.split()))
            )
        how = None
        if node.get("hidden") is not None:
            how = "hidden attribute"
        elif node.get("style"):
            how = _style_hides(node.get("style", ""))
        if how:
            text = " ".join(node.text_content().split())
            if len(text) >= MIN_CHARS:
                kind = "white_text" if how == "white text" else "css_hidden"
                out.append(HiddenSegment(kind, how, text))
    return out


def normalize(text: str) -> str:
    return " ".join(text.split()).casefold()
