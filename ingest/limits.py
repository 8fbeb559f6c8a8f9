"""What a parser may be handed: ZIP-based documents are measured before anything inflates them.

A .docx, .pptx, .xlsx, .odt or .epub is a ZIP package, and its parser inflates every part it
reads into memory: a 0.4 MB file can hold 148 MB of XML. The package's directory says what each
member inflates to, and Python's ``zipfile`` (which the Office parsers read through) never
inflates a member past the size its directory declares, so checking the directory bounds the
work; the parser process's memory limit (``ingest.pool``) bounds the rest. Invariant: a package over any limit is refused (``too_large``) before a parser opens it.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from ragwall.errors import CorruptDocument, DocumentTooLarge
from ragwall.settings import Settings

MIB = 1024 * 1024
#: Members that inflate to less than this are not held to the ratio (small, very regular XML
#: parts compress far better than 100:1 and cost nothing).
RATIO_FLOOR_BYTES = 1 * MIB


def _default(name: str) -> int | float:
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class ArchiveLimits:
    """``RAGWALL_MAX_INFLATED_BYTES``, ``RAGWALL_MAX_INFLATE_RATIO``, ``RAGWALL_MAX_ARCHIVE_MEMBERS``."""

    max_inflated_bytes: int = _default("max_inflated_bytes")
    max_inflate_ratio: float = _default("max_inflate_ratio")
    max_members: int = _default("max_archive_members")

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveLimits:
        return cls(
            settings.max_inflated_bytes, settings.max_inflate_ratio, settings.max_archive_members
        )


def check_archive(path: Path, limits: ArchiveLimits) -> None:
    """Refuse a ZIP package whose members inflate past ``limits`` (total, ratio, count)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise CorruptDocument(f"the ZIP package is damaged: {exc}") from exc
    if len(members) > limits.max_members:
        raise DocumentTooLarge(
            f"the package has {len(members)} members, over the limit of {limits.max_members} "
            "(RAGWALL_MAX_ARCHIVE_MEMBERS; raise it if the file is genuine)"
        )
    total = sum(m.file_size for m in members)
    if total > limits.max_inflated_bytes:
        raise DocumentTooLarge(
            f"the package inflates to {total / MIB:.0f} MiB, over the limit of "
            f"{limits.max_inflated_bytes / MIB:.0f} MiB (RAGWALL_MAX_INFLATED_BYTES; raise it if the file is genuine)"
        )
    for member in members:
        if member.file_size < RATIO_FLOOR_BYTES:
            continue
        ratio = member.file_size / max(member.compress_size, 1)
        if ratio > limits.max_inflate_ratio:
            raise DocumentTooLarge(
                f"{member.filename} inflates {ratio:.0f} times (to {member.file_size / MIB:.0f} "
                f"MiB), over the limit of {limits.max_inflate_ratio:g} "
                "(RAGWALL_MAX_INFLATE_RATIO): a ZIP bomb? Raise the limit if the file is genuine"
            )
