"""Jobs through the service, on the real model, store and parser workers: an ingest as a job
(progress, summary, one per source, audit), a cancel that reaches an ingest's workers, the
service closing under running jobs, a job's progress across a cancel, and the audit record of
an ingest that fails."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import psutil
import pytest

from ragwall.errors import MassRemoval, SourceBusy, SourceError
from ragwall.ingest.registry import Registry
from ragwall.payload import PENDING, Key
from ragwall.retrieval.store import Filter, Match
from ragwall.service import DEV_PRINCIPAL, RetrieveParams, Service
from tests.conftest import shared
from tests.service.test_index import _write_corpus


@pytest.fixture
def service(settings, encoder, tmp_path):
    corpus = tmp_path / "kb"
    _write_corpus(corpus)
    s = settings.model_copy(update={"query_encoder": "torch"})
    with Service(s, encoder=encoder) as svc:
        svc.add_source("admin", "kb", str(corpus), "internal")
        yield svc, tmp_path


def _records(svc: Service) -> list[dict]:
    return [json.loads(line) for line in svc.settings.audit_path.read_text().splitlines()]


def _wait(svc: Service, job_id: str, timeout: float = 600) -> None:
    svc.jobs.wait(job_id, timeout)
    assert svc.job(job_id).state not in ("queued", "running"), "the job did not end"


def _slow_source(svc: Service, folder: Path, source_id: str) -> None:
    """Twenty small documents, then an 872-page handbook that takes its parser many seconds."""
    folder.mkdir()
    for i in range(20):
        (folder / f"note-{i:02d}.md").write_text(f"# Note {i}\n\nThe pump seal {i} was checked.\n")
    shutil.copy(shared("docs", "handbook-872p.docx"), folder / "zz-handbook.docx")
    svc.add_source("admin", source_id, str(folder), "internal")


def _wait_documents(svc: Service, job_id: str, at_least: int = 1) -> dict:
    for _ in range(3000):
        job = svc.job(job_id)
        assert job.state in ("queued", "running"), (job.state, job.error)
        if (job.progress or {}).get("documents_done", 0) >= at_least:
            return job.progress
        time.sleep(0.1)
    pytest.fail("the job made no progress")


def _parsers() -> list[psutil.Process]:
    """Parser worker processes of this process still alive (not the resource tracker)."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


def _no_parsers_within(seconds: float) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while (left := _parsers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_an_ingest_job_runs_beside_others_and_ends_with_its_summary(service):
    svc, tmp = service
    other = tmp / "other"
    other.mkdir()
    (other / "guide.md").write_text("# Guide\n\nExpense reports are filed monthly.\n")
    svc.add_source("admin", "other", str(other), "internal")
    job = svc.start_ingest("key-a", "kb")
    assert (job.kind, job.params) == ("ingest", {"source_id": "kb", "force": False})
    assert job.state in ("queued", "running")
    with pytest.raises(SourceBusy) as busy:  # one ingest of a source at a time, named
        svc.start_ingest("key-b", "kb")
    assert busy.value.job_id == job.id and f"job {job.id}" in str(busy.value)
    beside = svc.start_ingest("key-b", "other")  # another source runs beside it
    assert svc.jobs.running() is None  # ingests do not hold the reindex/drift runner
    _wait(svc, job.id)
    _wait(svc, beside.id)
    done = svc.job(job.id)
    assert done.state == "succeeded", done.error
    assert {k: done.result[k] for k in ("documents", "unchanged", "removed", "failed")} == {
        "documents": 3,
        "unchanged": 0,
        "removed": 0,
        "failed": [],
    }
    assert done.result["chunks"] >= 3
    assert done.progress["stage"] == "done"
    assert done.progress["documents_done"] == done.progress["documents_total"] == 3
    assert svc.job(beside.id).result["documents"] == 1
    again = svc.start_ingest("key-a", "kb")
    _wait(svc, again.id)
    assert svc.job(again.id).result["unchanged"] == 3
    mine = [r for r in _records(svc) if r.get("job_id") == job.id]
    assert [(r["action"], r["key_id"]) for r in mine] == [
        ("source.ingest_start", "key-a"),
        ("source.ingest", "key-a"),
    ]
    assert mine[1]["outcome"] == "succeeded" and mine[1]["summary"]["documents"] == 3
    assert svc.runtime.audit.verify().ok


def test_a_failed_ingest_is_audited_with_its_outcome(service):
    svc, tmp = service
    gone = tmp / "gone"
    gone.mkdir()
    (gone / "a.md").write_text("# A\n\nSome text.\n")
    svc.add_source("admin", "gone", str(gone), "internal")
    shutil.rmtree(gone)
    with pytest.raises(SourceError, match="is gone"):  # the CLI's way: in this thread
        svc.ingest("cli:someone", "gone")
    last = _records(svc)[-1]
    assert (last["action"], last["key_id"], last.get("outcome")) == (
        "source.ingest",
        "cli:someone",
        "failed",
    )
    assert "is gone" in last["error"] and last["source_id"] == "gone"
    job = svc.start_ingest("key-a", "gone")  # HTTP's way: a job
    _wait(svc, job.id)
    failed = svc.job(job.id)
    assert failed.state == "failed" and "is gone" in failed.error
    mine = [r for r in _records(svc) if r.get("job_id") == job.id]
    assert [(r["action"], r.get("outcome")) for r in mine] == [
        ("source.ingest_start", None),
        ("source.ingest", "failed"),
    ]
    assert svc.runtime.audit.verify().ok


def test_a_cancelled_jobs_progress_never_goes_back_and_its_time_stops_at_its_end(service):
    svc, _ = service
    _write_corpus(Path(svc.runtime.registry.get_source("kb").location), n_extra=60)
    svc.ingest("admin", "kb")
    began = time.monotonic()
    job = svc.start_reindex("admin", {"chunk_max_tokens": 72})
    seen: list[tuple[int, float]] = []
    for _ in range(12000):
        live = svc.job(job.id).progress  # what GET /v1/jobs/{id} shows while it runs
        stored = svc.runtime.registry.get_job(job.id).progress or {}
        if live:
            seen.append((live["documents_done"], live["elapsed_s"]))
            # Cancel when the live count is ahead of the row's (written once a second).
            if live["documents_done"] > stored.get("documents_done", 0):
                svc.cancel_job("admin", job.id)
                break
        time.sleep(0.01)
    else:
        pytest.fail("the reindex showed no progress ahead of its stored row")
    _wait(svc, job.id)
    ended = time.monotonic()
    final = svc.job(job.id)
    assert final.state == "cancelled"
    seen.append((final.progress["documents_done"], final.progress["elapsed_s"]))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen), seen  # never backwards
    assert [e for _, e in seen] == sorted(e for _, e in seen), seen
    assert final.progress["elapsed_s"] <= ended - began + 0.2  # it stopped at the job's end
    assert final.progress["eta_s"] is None


def test_cancel_and_close_reach_an_ingests_workers(service):
    svc, tmp = service
    _slow_source(svc, tmp / "slow", "slow")
    job = svc.start_ingest("key-a", "slow")
    _wait_documents(svc, job.id)
    asked = time.monotonic()
    svc.cancel_job("key-a", job.id)
    _wait(svc, job.id, timeout=60)
    assert time.monotonic() - asked < 30, "the cancel did not reach the work"
    cancelled = svc.job(job.id)
    assert cancelled.state == "cancelled"
    assert cancelled.result["documents"] < 21  # stopped before the handbook was done
    assert cancelled.progress["documents_done"] <= 21
    assert not _no_parsers_within(10), "a parser worker outlived the cancel"
    with svc.runtime.index.lease() as active:
        pending = Filter(must=(Match(Key.SOURCE_ID, "slow"), Match(Key.STATE, PENDING)))
        assert active.store.count(pending) == 0
    mine = [r for r in _records(svc) if r.get("job_id") == job.id]
    assert [(r["action"], r.get("outcome")) for r in mine] == [
        ("source.ingest_start", None),
        ("source.ingest_cancel", None),
        ("source.ingest", "cancelled"),
    ]

    # The service closing (the server stopping) cancels a running ingest: no worker outlives it.
    shutil.copy(shared("docs", "handbook-872p.docx"), tmp / "slow" / "zz-handbook-2.docx")
    job = svc.start_ingest("key-a", "slow")
    _wait_documents(svc, job.id)
    asked = time.monotonic()
    svc.close()
    assert time.monotonic() - asked < 30, "closing waited for the ingest to finish"
    assert not _no_parsers_within(10), "a parser worker outlived the service"
    state = Registry(svc.settings.state_path)
    try:
        assert state.get_job(job.id).state == "cancelled"
    finally:
        state.close()


THINGS = ("valve", "pump", "boiler", "turbine", "filter", "gasket", "bearing", "compressor",
          "chiller", "heater")  # fmt: skip


def test_a_sync_that_would_remove_most_of_a_source_changes_nothing(service):
    """Safe reconcile (issue 29): deleting 80 % of a source's files fails the sync with
    ``mass_removal``, in the CLI's way and as a job, and every document stays retrievable;
    removing on purpose takes ``allow_mass_removal``; a removal under the floor passes."""
    svc, tmp = service
    folder = tmp / "notes"
    folder.mkdir()
    for i, thing in enumerate(THINGS):
        (folder / f"note-{i}.md").write_text(
            f"# Note {i}\n\nThe {thing} in bay {i} was serviced.\n"
        )
    svc.add_source("admin", "notes", str(folder), "internal")
    svc.ingest("admin", "notes")
    live = svc.runtime.registry.documents("notes", version=1)
    assert len(live) == 10

    (folder / "note-9.md").write_text("# Note 9\n\nThe heater was replaced.\n")
    for i in range(8):
        (folder / f"note-{i}.md").unlink()
    with pytest.raises(MassRemoval, match="would remove 8 of its 10") as refused:
        svc.ingest("cli:someone", "notes")
    assert (refused.value.would_remove, refused.value.live) == (8, 10)
    assert "--allow-mass-removal" in str(refused.value)
    last = _records(svc)[-1]
    assert (last["action"], last["outcome"], last["reason"]) == (
        "source.ingest",
        "failed",
        "mass_removal",
    )
    # Nothing changed: every document, the changed one as it was.
    assert svc.runtime.registry.documents("notes", version=1) == live
    who = DEV_PRINCIPAL
    for i in (0, 7, 9):
        query = f"when was the {THINGS[i]} serviced"
        hits = svc.retrieve(who, RetrieveParams(query=query, top_k=3))
        assert f"bay {i} was serviced" in hits.result.hits[0].text, i
    run = svc.runtime.registry.last_runs(version=1)["notes"]
    assert run.summary["reason"] == "mass_removal" and run.finished_at is not None
    sync = {s.source.id: s.sync for s in svc.list_sources()}["notes"]
    assert (sync.last_sync_ok, sync.last_failure_reason) == (False, "mass_removal")

    job = svc.start_ingest("key-a", "notes")  # HTTP's way: the job fails, saying why
    _wait(svc, job.id)
    failed = svc.job(job.id)
    assert failed.state == "failed" and "would remove 8" in failed.error
    assert failed.result["reason"] == "mass_removal"
    assert len(svc.runtime.registry.documents("notes", version=1)) == 10

    on_purpose = svc.start_ingest("key-a", "notes", allow_mass_removal=True)
    _wait(svc, on_purpose.id)
    done = svc.job(on_purpose.id)
    assert done.state == "succeeded", done.error
    assert (done.result["removed"], done.result["documents"]) == (8, 1)
    assert len(svc.runtime.registry.documents("notes", version=1)) == 2

    # One of the two left is over the share but not over the floor (2 documents): it passes.
    (folder / "note-8.md").unlink()
    assert svc.ingest("admin", "notes").removed == 1
