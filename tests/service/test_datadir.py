"""The data dir is private to its owner (issue 24): created owner-only, existing entries
tightened when a Service opens it, and what an ingest and a retrieve write stays owner-only."""

from __future__ import annotations

import os
import stat

from ragwall.service import Principal, RetrieveParams, Service
from ragwall.settings import Settings


def _open_entries(root) -> list[str]:  # noqa: ANN001 - a Path
    """Everything under ``root`` (itself included) with a group or other permission bit."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {stat.filemode(mode)}")
    return found


def test_the_data_dir_is_owner_only_after_an_ingest_and_a_retrieve(tmp_path, encoder):
    data = tmp_path / "data"
    (data / "reports" / "old").mkdir(parents=True)
    os.chmod(data, 0o755)
    os.chmod(data / "reports", 0o755)
    os.chmod(data / "reports" / "old", 0o775)
    (data / "audit.log").write_text("")
    os.chmod(data / "audit.log", 0o644)
    (data / "reports" / "old" / "report.html").write_text("<p>old</p>")
    os.chmod(data / "reports" / "old" / "report.html", 0o666)
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "refunds.md").write_text("# Refunds\n\nRefunds above 500 EUR need approval.\n")
    old_umask = os.umask(0o022)  # what a default shell gives the server
    try:
        with Service(Settings(data_dir=data), encoder=encoder) as svc:
            assert _open_entries(data) == []  # tightened on start
            svc.add_source("test", "kb", str(kb))
            svc.ingest("test", "kb")
            svc.create_key("test", "retrieve")
            done = svc.retrieve(Principal("k", "admin", None), RetrieveParams(query="refunds"))
            assert done.result.hits
            assert (data / "ragwall.sqlite3-wal").exists() and (data / "qdrant").is_dir()
            assert _open_entries(data) == []
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "audit.log").stat().st_mode) == 0o600
