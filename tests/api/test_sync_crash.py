"""Killing the server mid-sync (issue 29): a real ``ragwall serve`` whose scheduler runs a
source's first sync is killed with SIGKILL while it writes. The index it leaves is consistent
(every document whole in one version, or absent; the registry never names what the store lacks),
the interrupted job is recorded as failed, and the next sync completes."""

from __future__ import annotations

import os
import time
from collections import defaultdict

import httpx
import pytest

from ragwall.payload import LIVE
from ragwall.service import Service
from tests.api.helpers import ragwall_serve

FILES = 120


def _corpus(folder) -> None:  # noqa: ANN001 - a Path
    folder.mkdir()
    for i in range(FILES):
        paras = [
            f"Section {i}.{j}: unit {i} of the plant is inspected on day {j}." for j in range(6)
        ]
        (folder / f"doc{i:03d}.md").write_text(f"# Unit {i}\n\n" + "\n\n".join(paras) + "\n")


def _check_consistent(svc: Service) -> tuple[int, int]:
    """Every live document whole, in one version, and the registry a subset of the store.
    Returns (live documents, registry documents)."""
    with svc.runtime.index.lease() as active:
        points, offset, everything = [], None, []
        while True:
            points, offset = active.store.scroll(None, limit=256, offset=offset)
            everything += points
            if offset is None:
                break
        version = active.version
    live = defaultdict(list)
    for p in everything:
        if p.payload["state"] == LIVE:
            live[p.payload["doc_uri"]].append(p.payload)
    for uri, chunks in live.items():
        assert len({c["doc_version"] for c in chunks}) == 1, f"{uri} is live in two versions"
        indexes = sorted(c["chunk_index"] for c in chunks)
        assert indexes == list(range(chunks[0]["chunk_count"])), f"{uri} is live in part"
    records = svc.runtime.registry.documents("kb", version=version)
    for uri, record in records.items():
        assert uri in live and live[uri][0]["doc_version"] == record.version
        assert len(live[uri]) == record.chunks
    return len(live), len(records)


def test_killing_the_server_mid_sync_leaves_a_consistent_index(settings, encoder, tmp_path):
    folder = tmp_path / "kb"
    _corpus(folder)
    with Service(settings, encoder=encoder) as svc:
        svc.add_source("setup", "kb", str(folder), "internal", refresh_s=3600)
        admin, _ = svc.create_key("setup", scope="admin")
    env = {
        **os.environ,
        "RAGWALL_DATA_DIR": str(settings.data_dir),
        "RAGWALL_QUERY_ENCODER": "torch",
        "RAGWALL_SCHEDULER_TICK_S": "0.2",
        "RAGWALL_EMBED_BUFFER_CHUNKS": "8",  # commit a few documents at a time
    }
    headers = {"Authorization": f"Bearer {admin}"}
    with ragwall_serve(env) as (url, proc):
        deadline = time.monotonic() + 180
        job = None
        while time.monotonic() < deadline:  # the scheduler's sync, once it has written some
            jobs = httpx.get(f"{url}/v1/jobs?kind=ingest", headers=headers, timeout=10).json()
            job = jobs[0] if jobs else None
            if job and job["state"] != "running":
                pytest.fail(f"the sync ended before it could be killed: {job}")
            # Documents are committed 8 chunks (here 8 documents) at a time, as they are parsed.
            if job and job["progress"] and job["progress"].get("documents_done", 0) >= 40:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the scheduler started no sync")
        assert job["actor"] == "scheduler"
        proc.kill()
        proc.wait(timeout=30)
    with Service(settings, encoder=encoder) as svc:
        live, recorded = _check_consistent(svc)
        assert 0 < recorded <= live < FILES, (recorded, live)  # it was stopped midway
        assert svc.job(job["job_id"]).state == "failed"  # recorded as interrupted
        report = svc.ingest("admin", "kb")  # the next sync
        assert report.documents == FILES - recorded and not report.failed
        live, recorded = _check_consistent(svc)
        assert live == recorded == FILES
        sync = {s.source.id: s.sync for s in svc.list_sources()}["kb"]
        assert sync.last_sync_ok
