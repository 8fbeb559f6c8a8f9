"""Which files of a run reach a parser, decided as cheaply as possible, one file at a time.

Each file, as found in the source, goes through these checks in order, and the first that
decides ends it:

1. its extension: a type Ragwall does not read is *skipped*: never opened, never hashed, so a
   folder of screenshots or a video costs nothing;
2. where it leads: links are followed; a loop of links fails (``unreadable``), and a file that
   resolves outside ``RAGWALL_SOURCE_ROOTS`` is not read (``outside_source_roots``);
3. what it is: a missing target, a FIFO or a device fails (``unreadable``), a file over
   ``RAGWALL_MAX_FILE_BYTES`` fails (``too_large``), all without reading a byte;
4. only then is it hashed.

Invariant: no exception leaves :func:`scan_file` for one bad file. Every file ends as exactly one
:class:`Found`, :class:`~ragwall.ingest.report.Failure` or :class:`~ragwall.ingest.report.Skipped`,
named by its path in the source (a link's target is a detail, never the name).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ragwall.errors import UnreadableDocument
from ragwall.ingest.parse import SUPPORTED_EXTENSIONS
from ragwall.ingest.report import Failure, Skipped
from ragwall.settings import within_roots

_READS = " ".join(sorted(e.lstrip(".") for e in SUPPORTED_EXTENSIONS))


@dataclass(frozen=True)
class Found:
    """A file to compare with the registry and, if new or changed, to parse."""

    path: Path  # as found in the source: what the parser opens
    uri: str  # the file it resolves to: the document's identity (``doc_uri``)
    sha256: str
    size: int
    modified_at: float = 0.0  # the file's mtime (epoch seconds): when its content last changed
    #: A web page's validators (``ingest.web``), stored to make the next read conditional.
    etag: str | None = None
    last_modified: str | None = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(path: Path) -> Path:
    """``path`` absolute, links followed. A loop of links raises :class:`UnreadableDocument`
    (Python 3.11's ``Path.resolve`` raises ``RuntimeError`` for one; later versions leave it
    unresolved, and the ``stat`` that follows fails with ``ELOOP``)."""
    try:
        return path.resolve()
    except RuntimeError as exc:
        raise UnreadableDocument(f"a symlink loop: {exc}") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableDocument(f"a symlink loop: {exc}") from exc
        return Path(os.path.abspath(path))


def unsupported(path: Path) -> Skipped | None:
    """A :class:`Skipped` for a file whose type Ragwall does not read, by extension."""
    ext = path.suffix.lower()
    if ext in SUPPORTED_EXTENSIONS:
        return None
    return Skipped(
        str(path),
        "unsupported_type",
        f"file type {ext or '(no extension)'!r} is not read; Ragwall reads {_READS}",
    )


def scan_file(path: Path, roots: list[Path], max_file_bytes: int) -> Found | Failure | Skipped:
    """Classify one file (see the module's doc); never raises for the file's sake."""
    skipped = unsupported(path)
    if skipped is not None:
        return skipped
    name = str(path)
    try:
        target = resolve(path)
    except UnreadableDocument as exc:
        return Failure(name, exc.reason, str(exc))
    uri = str(target)
    shown = uri if uri != name else None  # a link (or a linked folder) led elsewhere

    def fail(reason: str, message: str) -> Failure:
        return Failure(name, reason, message, target=shown)

    if roots and not within_roots(target, roots):
        return fail(
            "outside_source_roots",
            f"the file resolves to {uri}, outside RAGWALL_SOURCE_ROOTS (a link out of the "
            "source?); it was not read",
        )
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return fail("unreadable", f"a symlink loop: {exc}")
        if exc.errno == errno.ENOENT and shown:
            return fail("unreadable", f"a dangling link: {uri} does not exist")
        return fail("unreadable", f"cannot read file: {exc}")
    if not stat.S_ISREG(info.st_mode):
        return fail("unreadable", "not a regular file (a folder, FIFO, socket or device)")
    if info.st_size > max_file_bytes:
        return fail(
            "too_large",
            f"the file has {info.st_size} bytes, over the limit of {max_file_bytes} "
            "(RAGWALL_MAX_FILE_BYTES)",
        )
    try:
        sha = file_sha256(path)
    except OSError as exc:
        return fail("unreadable", f"cannot read file: {exc}")
    return Found(path, uri, sha, info.st_size, info.st_mtime)
