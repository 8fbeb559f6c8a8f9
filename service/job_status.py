"""Jobs as callers see them: one job with its live progress, its report, and a cancel request.

Invariant: a cancel request for a job that is still queued or running is audited by the job's
kind (``index.reindex_cancel``, ``eval.drift_cancel``, ``source.ingest_cancel``); a finished
job is returned as it is, without a record.
"""

from __future__ import annotations

from pathlib import Path

from ragwall.errors import InvalidRequest, JobNotFound, ReportNotFound
from ragwall.eval.drift.report import DRIFT_JSON, REPORT
from ragwall.ingest.registry import JobRecord
from ragwall.service.jobs import JobRunner
from ragwall.service.runtime import Runtime

#: The audit action of a cancel request, by job kind.
CANCEL_ACTIONS = {
    "reindex": "index.reindex_cancel",
    "drift": "eval.drift_cancel",
    "ingest": "source.ingest_cancel",
}


class JobStatus:
    """Reads and cancels jobs."""

    def __init__(self, rt: Runtime, jobs: JobRunner) -> None:
        self.rt = rt
        self.jobs = jobs

    def job(self, job_id: str) -> JobRecord:
        job = self.rt.registry.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}; GET /v1/index lists the versions and their jobs")
        return self.jobs.live(job)

    def job_report(self, job_id: str, name: str = REPORT) -> Path:
        """The file of a job's report (``report.html`` or ``drift.json``)."""
        try:
            self.job(job_id)
        except JobNotFound as exc:
            raise ReportNotFound(str(exc)) from exc
        if name not in (REPORT, DRIFT_JSON):
            raise InvalidRequest(f"a job's report is {REPORT} or {DRIFT_JSON}, not {name!r}")
        path = self.jobs.reports_dir(job_id) / name
        if not path.is_file():
            raise ReportNotFound(
                f"job {job_id} has no report (yet): drift jobs and gated reindex jobs write one "
                "when their comparison ends"
            )
        return path

    def cancel_job(self, actor: str, job_id: str) -> JobRecord:
        """Ask a job to stop (``JobRunner.cancel``); the request is audited, by the job's kind."""
        job = self.jobs.cancel(job_id)
        if job.state in ("queued", "running"):
            action = CANCEL_ACTIONS.get(job.kind, f"{job.kind}.cancel")
            self.rt.audit.append(action, actor, job_id=job_id)
        return job
