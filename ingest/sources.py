"""Sources: where documents come from, how far to trust them, and who may read them."""

from __future__ import annotations

import glob
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from ragwall.errors import SourceError, validation_message
from ragwall.ingest.walk import Pattern, walk
from ragwall.settings import TRUST_TIERS

SourceKind = Literal["folder", "glob"]
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")


class Source(BaseModel):
    id: str
    kind: SourceKind
    location: str = Field(description="An absolute folder path, or a glob pattern.")
    trust_tier: str
    groups: list[str] = Field(default_factory=list)
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


def make_source(source_id: str, path: str, trust_tier: str, groups: list[str]) -> Source:
    """A folder source for an existing directory, else a glob source for a pattern."""
    expanded = Path(path).expanduser()
    if expanded.is_dir():
        kind: SourceKind = "folder"
        location = str(expanded.resolve())
    elif glob.has_magic(path):
        kind = "glob"
        location = str(Path(path).expanduser().absolute())
    else:
        raise SourceError(
            f"{path!r} is neither a folder nor a glob pattern; give an existing folder "
            "or a pattern such as 'docs/**/*.md'"
        )
    try:
        return Source(
            id=source_id, kind=kind, location=location, trust_tier=trust_tier, groups=groups
        )
    except ValueError as exc:
        raise SourceError(validation_message(exc)) from exc


def iter_source_files(source: Source) -> list[Path]:
    """Every regular file the source covers now, sorted, hidden files and folders skipped, as
    found in the source (links not followed in the path).

    A link that leads to no file (dangling, or a loop of links) and a file that cannot even be
    inspected are kept: the ingest reports each as ``unreadable`` instead of dropping it
    quietly. The walk (``ingest.walk``) never follows a link to a folder and keeps its own
    stack, so neither a ``loop -> .`` link nor a folder nested a thousand levels deep stops it,
    and nothing here raises for one entry.
    """
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
