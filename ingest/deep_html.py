"""HTML nested deeper than the HTML parser reads, flattened so that its text is kept.

libxml2 (through lxml), which ``unstructured`` and the hidden-text scan parse HTML with, stops
building the tree at 256 levels of nesting and drops everything below: a page of 200,000 nested
``<div>`` came out ``empty``, its text lost. Such a page is read again through libxml2's
streaming interface (no tree, no depth limit, the same tag and charset handling) and written out
with at most :data:`FLATTEN_DEPTH` levels. Below that depth each element becomes a sibling of the
element before it, which is what a browser does with a tree too deep to build (Blink caps its
tree at 512 levels the same way).

Invariant: only a page that libxml2 cannot read whole is rewritten, and the rewrite keeps every
element with its attributes (so the hidden-text scan still sees ``display:none`` and the like),
every text and every comment, in document order; only nesting below the cap is lost.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

#: libxml2 builds trees up to 256 levels (``XML_PARSE_HUGE`` is off in unstructured's parser).
PARSER_DEPTH = 256
#: Depth at which a too-deep page is flattened, well inside what libxml2 builds.
FLATTEN_DEPTH = 200

_RAW_TEXT = frozenset({"script", "style"})
_VOID = frozenset(
    {
        "area",
        "base",
        "basefont",
        "br",
        "col",
        "embed",
        "frame",
        "hr",
        "img",
        "input",
        "isindex",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)


class _Depth:
    """A libxml2 parser target that only measures the deepest nesting."""

    def __init__(self) -> None:
        self.depth = 0
        self.deepest = 0

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.depth += 1
        self.deepest = max(self.deepest, self.depth)

    def end(self, tag: str) -> None:
        self.depth -= 1

    def close(self) -> int:
        return self.deepest


class _Flatten:
    """A libxml2 parser target that writes the page back with at most ``cap`` levels."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.out: list[str] = []
        self.open: list[str] = []  # the elements open in the output, at most ``cap``
        self.excess = 0  # elements open in the input below the cap
        self.void: str | None = None  # a void element just started (its end comes next)

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        attrs = "".join(f' {k}="{escape(v, quote=True)}"' for k, v in attrib.items())
        if tag in _VOID:
            self.void = tag
        elif len(self.open) >= self.cap:
            # Too deep: close the element at the cap and open this one beside it.
            self.out.append(f"</{self.open[-1]}>")
            self.open[-1] = tag
            self.excess += 1
        else:
            self.open.append(tag)
        self.out.append(f"<{tag}{attrs}>")

    def end(self, tag: str) -> None:
        if self.void == tag:
            self.void = None
        elif self.excess:
            # The element at the cap stays open: what follows goes into it, in order.
            self.excess -= 1
        elif self.open:
            self.out.append(f"</{self.open.pop()}>")

    def data(self, text: str) -> None:
        raw = self.open and self.open[-1] in _RAW_TEXT
        self.out.append(text if raw else escape(text, quote=False))

    def comment(self, text: str) -> None:
        self.out.append(f"<!--{text.replace('--', '- -')}-->")

    def close(self) -> str:
        return "".join(self.out)


def nesting_depth(data: bytes) -> int:
    """The deepest element nesting of an HTML page, as libxml2 reads it (streaming, no tree)."""
    from lxml import etree

    return etree.fromstring(data, etree.HTMLParser(target=_Depth())) or 0


def flatten(data: bytes, cap: int = FLATTEN_DEPTH) -> str:
    """The page written back with at most ``cap`` levels of nesting (see the module's doc)."""
    from lxml import etree

    return etree.fromstring(data, etree.HTMLParser(target=_Flatten(cap))) or ""


def read_flattened(path: Path) -> str | None:
    """The page at ``path`` flattened, if libxml2 cannot build its tree whole; else ``None``."""
    data = path.read_bytes()
    if nesting_depth(data) < PARSER_DEPTH - 1:
        return None
    return flatten(data)
