"""Writing a secret (a new API key) to a file that only its owner can read.

Invariants: the file is created by this process, new, as a regular file with mode 0600
(``O_CREAT | O_EXCL | O_NOFOLLOW``): an existing path or any symbolic link, dangling or not, is
refused before anything else happens (so a command can reserve the file *before* it creates the
key, and never mint a key whose secret has nowhere to go); a reserved file that ends up unused
is removed, and only if it is still the file this process created.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ragwall.errors import SecretFileError


def reserve(path: Path) -> int:
    """Create ``path`` as a new, empty, owner-only file; its descriptor (write-only).

    Raises :class:`SecretFileError` when the path exists (a file, a folder, a link) or cannot
    be created."""
    if os.path.lexists(path):
        what = "is a symbolic link" if path.is_symlink() else "exists"
        raise SecretFileError(
            f"{path} {what}; a key is written only to a new file: remove it or choose another --out"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise SecretFileError(
            f"cannot create {path}: {exc.strerror or exc}; choose another --out"
        ) from exc


def write(fd: int, secret: str) -> None:
    """Write ``secret`` and a newline to a reserved file, sync it to disk, then close it. On an
    error the descriptor stays open (for :func:`discard`)."""
    data = memoryview((secret + "\n").encode())
    while data:
        data = data[os.write(fd, data) :]
    os.fsync(fd)
    os.close(fd)


def discard(fd: int, path: Path) -> None:
    """Close a reserved file and remove it, if ``path`` still names the file ``fd`` opened."""
    try:
        mine = os.fstat(fd)
    except OSError:
        mine = None
    with contextlib.suppress(OSError):
        os.close(fd)
    try:
        now = path.lstat()
    except OSError:
        return
    if mine is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
        path.unlink(missing_ok=True)
