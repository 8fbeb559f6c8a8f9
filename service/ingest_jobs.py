"""Ingest jobs: ``POST /v1/sources/{id}/ingest`` ingests a source in the background, as a job.

Invariants:

- **One ingest of a source at a time, across threads and processes.** The job claims the
  source's ingest lock when it is accepted and lets it go when it ends, so a second start (over
  HTTP, from the console or from the CLI) is refused at once with ``SourceBusy``, naming the
  running job (or run). Ingests of different sources run side by side, and beside a reindex or a
  drift job. An ingest writes under the service's shared write lock: one accepted while a
  reindex replays waits for the replay to end, and a reindex's replay waits for the ingests
  that are running (``Runtime.writes``), as it does for the CLI's ingests.
- **A mass removal fails the job, changing nothing**: its result says ``"reason":
  "mass_removal"`` with how many of how many live documents the sync would have removed
  (``ragwall.ingest.pipeline``); ``allow_mass_removal`` lets them go on purpose.
- **Its row tells its truth**: progress counts the documents this run processes (done of total)
  and only moves forward; the result is the ingest's summary (``IngestReport.summary``); a
  cancel stops the run at once (its parser workers are killed, its pending chunks cleared) and
  the job ends ``cancelled``, with what it had done as its result.
- **Audited as every job is**: ``source.ingest_start`` when it is accepted, and the ingest's own
  ``source.ingest`` record, with its outcome and the job's id, whatever its end. Every ingest
  (a job's, the CLI's) appends that one record (``ragwall.service.sources.audit_ingest``): ``succeeded``,
  ``failed`` or ``cancelled``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ragwall.errors import IngestCancelled, MassRemoval, SourceBusy
from ragwall.ingest.registry import JobRecord
from ragwall.service.jobs import PROGRESS_EVERY_S, JobRunner, Progress, error_message, now
from ragwall.service.sources import Sources

KIND = "ingest"


def start_ingest(
    runner: JobRunner,
    sources: Sources,
    actor: str,
    source_id: str,
    force: bool = False,
    idempotency_key: str | None = None,
    allow_mass_removal: bool = False,
) -> JobRecord:
    """Accept an ingest of ``source_id`` and run it in a background thread; returns its job.

    Raises ``SourceNotFound`` for an unknown source and ``SourceBusy`` while the source is being
    ingested, before anything starts; a retry with the caller's same ``Idempotency-Key`` returns
    the first job (``IdempotencyKeyReused`` when the key came with another request)."""
    registry, audit = sources.rt.registry, sources.rt.audit
    registry.get_source(source_id)  # SourceNotFound before anything is claimed
    params: dict[str, Any] = {"source_id": source_id, "force": force}
    if allow_mass_removal:
        params["allow_mass_removal"] = True

    def hold() -> Callable[[], None]:
        try:
            return sources.claim_source(source_id)
        except SourceBusy as exc:
            job = _running_job(runner, source_id)
            if job is None:
                raise
            raise SourceBusy(
                f"source {source_id!r} is being ingested now by job {job.id}; wait for it "
                f"(GET /v1/jobs/{job.id}) or cancel it (DELETE /v1/jobs/{job.id}), then ingest "
                "again if needed",
                run_id=exc.run_id,
                job_id=job.id,
            ) from None

    claimed = runner.claim(KIND, actor, params, idempotency_key, hold=hold)
    if isinstance(claimed, JobRecord):  # a retry: the first request's job
        return claimed
    job_id, run = claimed
    run.progress = progress = Progress(stage="queued")
    audit.append("source.ingest_start", actor, job_id=job_id, source_id=source_id, force=force)
    last_written = [0.0]

    def on_progress(stage: str, done: int, total: int) -> None:
        progress.stage = stage
        progress.documents_total = max(progress.documents_total, total)
        progress.advance(done, progress.chunks)
        now = time.monotonic()
        if now - last_written[0] >= PROGRESS_EVERY_S:
            last_written[0] = now
            registry.update_job(job_id, progress=progress.as_dict())

    def work() -> None:
        registry.update_job(job_id, state="running", started_at=now())
        progress.started = time.monotonic()
        progress.stage = "starting"
        try:
            report = sources.ingest(
                actor,
                source_id,
                progress=on_progress,
                force=force,
                cancel=run.cancel,
                claimed=True,
                job_id=job_id,
                allow_mass_removal=allow_mass_removal,
            )
        except MassRemoval as exc:  # nothing changed: the job failed, saying why
            result = {"reason": "mass_removal", "would_remove": exc.would_remove, "live": exc.live}
            runner.end(job_id, "failed", error=error_message(exc), result=result)
        except IngestCancelled as exc:
            result = _account(progress, exc.report)
            runner.end(job_id, "cancelled", result=result)
        except BaseException as exc:
            runner.end(job_id, "failed", error=error_message(exc))
            if not isinstance(exc, Exception):
                raise
        else:
            result = _account(progress, report)
            progress.stage = "done"
            runner.end(job_id, "succeeded", result=result)

    return runner.launch(KIND, job_id, run, work, background=True)


def _account(progress: Progress, report: Any) -> dict[str, Any] | None:
    """The job's result (the report's summary, ``None`` without one), its counts added to
    ``progress``."""
    if report is None:
        return None
    summary = report.summary()
    handled = summary["documents"] + len(summary["failed"]) + len(summary.get("skipped", ()))
    progress.documents_total = max(progress.documents_total, handled)
    progress.advance(handled, summary["chunks"])
    return summary


def _running_job(runner: JobRunner, source_id: str) -> JobRecord | None:
    """The unfinished ingest job of ``source_id``, if one holds it."""
    for job in runner.registry.unfinished_jobs():
        if job.kind == KIND and job.params.get("source_id") == source_id:
            return job
    return None
