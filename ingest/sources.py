"""Sources: where documents come from, how far to trust them, and who may read them."""

from __future__ import annotations

import glob
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from ragwall.errors import SourceError
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
        raise SourceError(str(exc)) from exc


def iter_source_files(source: Source) -> list[Path]:
    """Every regular file the source covers now (and every dangling link), sorted, hidden files
    and folders skipped."""
    if source.kind == "folder":
        root = Path(source.location)
        if not root.is_dir():
            raise SourceError(f"the folder of source {source.id!r} is gone: {root}")
        candidates = (p for p in root.rglob("*") if not _hidden(p.relative_to(root)))
    else:
        candidates = (Path(p) for p in glob.glob(source.location, recursive=True))
    # A dangling link is kept: the ingest reports it as unreadable instead of skipping it quietly.
    return sorted(p for p in candidates if p.is_file() or (p.is_symlink() and not p.exists()))


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def source_base(source: Source) -> Path:
    """The folder a source reads from: its folder, or a glob's part before the first pattern,
    normalised ('..' removed) and resolved."""
    if source.kind == "folder":
        return Path(source.location).resolve()
    parts = []
    for part in Path(source.location).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(os.path.normpath(Path(*parts))).resolve()
