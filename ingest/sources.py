"""Sources: where documents come from, how far to trust them, and who may read them.

A source is a folder, a glob, or a web site (``web``: a sitemap or a list of URLs, read by
``ingest.web``). A web source's location is an ``http(s)`` URL without credentials; its pages
are read from that URL's host only.
"""

from __future__ import annotations

import glob
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from ragwall.errors import SourceError, validation_message
from ragwall.ingest.walk import Pattern, walk
from ragwall.settings import MAX_WEB_PAGES, TRUST_TIERS

SourceKind = Literal["folder", "glob", "web"]
KINDS: tuple[str, ...] = get_args(SourceKind)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")


class Source(BaseModel):
    id: str
    kind: SourceKind
    location: str = Field(
        description="An absolute folder path, a glob pattern, or a web source's sitemap URL."
    )
    trust_tier: str
    groups: list[str] = Field(default_factory=list)
    max_pages: int | None = Field(
        default=None, ge=1, le=MAX_WEB_PAGES, description="A web source's page cap per sync."
    )
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(
                "a source id is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("trust_tier")
    @classmethod
    def _check_tier(cls, value: str) -> str:
        if value not in TRUST_TIERS:
            raise ValueError(f"trust tier must be one of {list(TRUST_TIERS)}, not {value!r}")
        return value

    @field_validator("groups")
    @classmethod
    def _check_groups(cls, value: list[str]) -> list[str]:
        bad = [g for g in value if not _GROUP.match(g)]
        if bad:
            raise ValueError(f"invalid access group names {bad}")
        return sorted(set(value))


def make_source(
    source_id: str,
    path: str,
    trust_tier: str,
    groups: list[str],
    kind: str | None = None,
    max_pages: int | None = None,
) -> Source:
    """A web source for an ``http(s)`` URL, a folder source for an existing directory, else a
    glob source for a pattern. ``kind``, when given, must be the kind ``path`` is."""
    if kind is not None and kind not in KINDS:
        raise SourceError(f"a source's kind is one of {list(KINDS)}, not {kind!r}")
    found: SourceKind
    if path.lower().startswith(("http://", "https://")):
        found, location = "web", web_location(path)
    elif kind == "web":
        raise SourceError(
            f"{path!r} is not a URL: a web source reads a sitemap or a list of URLs, as in "
            "https://docs.example.com/sitemap.xml"
        )
    elif (expanded := Path(path).expanduser()).is_dir():
        found, location = "folder", str(expanded.resolve())
    elif glob.has_magic(path):
        found, location = "glob", str(Path(path).expanduser().absolute())
    else:
        raise SourceError(
            f"{path!r} is neither a folder, a glob pattern nor a URL; give an existing folder, "
            "a pattern such as 'docs/**/*.md', or a sitemap's URL with --kind web"
        )
    if kind is not None and kind != found:
        raise SourceError(f"{path!r} is a {found} source, not a {kind} one")
    if max_pages is not None and found != "web":
        raise SourceError("--max-pages is for web sources only")
    try:
        return Source(
            id=source_id,
            kind=found,
            location=location,
            trust_tier=trust_tier,
            groups=groups,
            max_pages=max_pages,
        )
    except ValueError as exc:
        raise SourceError(validation_message(exc)) from exc


def web_location(url: str) -> str:
    """``url`` checked as a web source's location: http(s), a host, no credentials, no
    fragment."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise SourceError(f"{url!r} is not a valid URL: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise SourceError(f"{url!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise SourceError(
            "a web source's URL may not hold credentials (they would be stored and shown); "
            "Ragwall reads public pages only"
        )
    if len(url) > 2048:
        raise SourceError("a web source's URL is at most 2048 characters")
    return parts._replace(fragment="").geturl()


def iter_source_files(source: Source) -> list[Path]:
    """Every regular file the source covers now, sorted, hidden files and folders skipped, as
    found in the source (links not followed in the path).

    A link that leads to no file (dangling, or a loop of links) and a file that cannot even be
    inspected are kept: the ingest reports each as ``unreadable`` instead of dropping it
    quietly. The walk (``ingest.walk``) never follows a link to a folder and keeps its own
    stack, so neither a ``loop -> .`` link nor a folder nested a thousand levels deep stops it,
    and nothing here raises for one entry.
    """
    if source.kind == "web":
        raise SourceError(f"source {source.id!r} is a web source: it has pages, not files")
    if source.kind == "folder":
        root = Path(source.location)
        if not root.is_dir():
            raise SourceError(f"the folder of source {source.id!r} is gone: {root}")
        candidates = walk(root)
    else:
        candidates = walk(*_split_glob(source.location))
    return sorted(p for p in candidates if _wanted(p))


def _wanted(path: Path) -> bool:
    try:
        if path.is_file():
            return True
        # A link that leads to no file: dangling, or a loop (exists() is False for both).
        return path.is_symlink() and not path.exists()
    except OSError:  # cannot be inspected (permission denied on the way): reported unreadable
        return True


def _split_glob(location: str) -> tuple[Path, Pattern]:
    """A glob source's folder (the part before the first pattern) and the pattern below it."""
    parts = Path(location).parts
    first = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    rest = parts[first:] or ("*",)
    if rest[-1] == "**":  # glob.glob's "dir/**" also yields the files below
        rest = (*rest, "*")
    return Path(*parts[:first]), rest


def source_base(source: Source) -> Path:
    """The folder a source reads from: its folder, or a glob's part before the first pattern,
    normalised ('..' removed) and resolved. A loop of links there is a :class:`SourceError`."""
    if source.kind == "folder":
        base = Path(source.location)
    else:
        base = Path(os.path.normpath(_split_glob(source.location)[0]))
    try:
        return base.resolve()
    except RuntimeError as exc:  # Python 3.11: "Symlink loop from ..."
        raise SourceError(f"the folder of source {source.id!r} is a loop of links: {exc}") from exc
