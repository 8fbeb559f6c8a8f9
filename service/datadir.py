"""The data directory is private to its owner.

It holds every group's chunk text (``qdrant/``), the registry and key hashes
(``ragwall.sqlite3`` and its ``-wal``/``-shm``), the audit trail, drift reports, model caches and
locks, so nothing in it may be readable by the group or by others.

Invariant: once :func:`make_private` has run for a data dir (``Service`` calls it once, when it
opens one), the data dir and everything under it is owner-only (directories 0700, files 0600 at
most: existing entries are tightened, never loosened), and the process's umask masks group and
other bits, so whatever this process creates afterwards (SQLite, the embedded Qdrant engine,
reports) is owner-only too. The umask is process-wide: a program that embeds ``Service`` keeps
the tightened umask.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("ragwall.service")

#: Bits that must never be set under the data dir.
OPEN_BITS = stat.S_IRWXG | stat.S_IRWXO


def restrict_umask() -> None:
    """Add group and other bits to the process's umask (never removes a bit already masked)."""
    current = os.umask(0o077)
    os.umask(current | 0o077)


def tighten(path: Path) -> None:
    """Clear group and other bits on ``path`` and everything under it (links are not followed;
    an entry that vanishes or cannot be changed is logged and skipped)."""
    _tighten_one(path)
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in (*dirs, *files):
            _tighten_one(Path(folder) / name)


def _tighten_one(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or not mode & OPEN_BITS:
            return
        path.chmod(stat.S_IMODE(mode) & ~OPEN_BITS)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("could not make %s private: %s", path, exc)


def make_private(data_dir: Path, *extra: Path) -> None:
    """Create ``data_dir`` owner-only if missing, tighten it and what it holds, and mask group
    and other bits for what this process creates from now on. ``extra``: files kept outside
    the data dir (an audit log elsewhere), tightened too when they exist."""
    restrict_umask()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tighten(data_dir)
    for path in extra:
        if path.exists() and not path.is_relative_to(data_dir):
            _tighten_one(path)
