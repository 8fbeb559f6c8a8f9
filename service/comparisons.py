"""Drift comparisons as operations: an audited snapshot, an audited comparison, and the
comparison as a background job with its report.

Invariants:

- **Audited once each**: ``eval.snapshot``, ``eval.drift`` (with ``job_id`` when a job runs it),
  and for a job ``eval.drift_start`` and, when it does not succeed, ``eval.drift_cancelled`` or
  ``eval.drift_failed``; the queries themselves append no per-query ``retrieve`` record.
- **Checked before any work starts** (``ragwall.service.snapshots.check_request``, the same for
  the HTTP job and the CLI): ``InvalidRequest`` for bad input, ``VersionNotFound`` for a version
  that is unknown or cannot serve; ``JobRunning`` while a reindex or drift job runs.
- A drift job's report (``report.html`` with its plots, ``drift.json``) is kept with the job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ragwall.errors import InvalidRequest, JobCancelled, NotFound, RagwallError
from ragwall.eval.drift import Gates, QuerySet, Snapshot
from ragwall.eval.drift.report import write_report
from ragwall.ingest.registry import JobRecord
from ragwall.service.jobs import JobRunner, Progress, error_message, now
from ragwall.service.requests import DriftRequest, Side
from ragwall.service.runtime import Runtime
from ragwall.service.snapshots import check_request, run_drift, take_snapshot

log = logging.getLogger("ragwall.service.jobs")


class Comparisons:
    """Snapshots and drift comparisons of the live index.

    Parameters:
        rt: the runtime (index, registry, audit, settings).
        jobs: the runner drift jobs run in.
    """

    def __init__(self, rt: Runtime, jobs: JobRunner) -> None:
        self.rt = rt
        self.jobs = jobs

    def snapshot(
        self,
        actor: str,
        queries: QuerySet,
        top_k: int = 10,
        version: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Snapshot:
        """A retrieval snapshot (``ragwall.eval.drift.snapshot.Snapshot``) of ``version`` (the active
        one when None) on a ``QuerySet``, through the real search path; audited once."""
        snap = take_snapshot(self.rt, queries, top_k, version, progress)
        self.rt.audit.append(
            "eval.snapshot",
            actor,
            version=snap.index_version,
            queries=len(snap.queries),
            top_k=top_k,
        )
        return snap

    def drift(
        self,
        actor: str,
        queries: QuerySet | None,
        baseline: Side,
        candidate: Side | None = None,
        top_k: int = 10,
        gates: Gates | None = None,
        progress: Callable[[str], None] | None = None,
        job_id: str | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Compare two sides (``ragwall.service.requests.Side``: a snapshot or a version; the
        active version when ``candidate`` is None); returns the drift result; audited once
        (with ``job_id`` when a drift job runs it). The request is checked first
        (``ragwall.service.snapshots.check_request``); ``cancel`` stops it between queries."""
        result = run_drift(
            self.rt, queries, baseline, candidate or Side(), top_k, gates, progress, cancel
        )
        self.rt.audit.append(
            "eval.drift",
            actor,
            **({"job_id": job_id} if job_id else {}),
            baseline=result["baseline"]["index_version"],
            candidate=result["candidate"]["index_version"],
            queries=result["queries"],
            verdict=result["verdict"],
            gates={k: g["passed"] for k, g in result["gates"].items()},
        )
        return result

    def start_drift(self, actor: str, request: DriftRequest) -> JobRecord:
        """Run a drift comparison (a ``DriftRequest``) as a background job; its result is the
        comparison and its report is kept with it. The request is checked as the CLI's is
        (``ragwall.service.snapshots.check_request``) before any work starts: InvalidRequest for
        bad input, NotFound for a version that is unknown or cannot serve; Conflict while a
        job runs."""
        rt = self.rt
        try:
            queries = request.query_set()
            baseline, candidate = request.sides()
            check_request(rt, queries, baseline, candidate)
        except NotFound:
            raise
        except RagwallError as exc:
            raise InvalidRequest(str(exc)) from exc
        params = request.model_dump(exclude={"queries", "qrels", "baseline", "candidate"})
        params |= {
            "queries": len(queries.queries),
            "baseline": baseline.describe(),
            "candidate": candidate.describe(),
        }
        claimed = self.jobs.claim("drift", actor, params)
        assert not isinstance(claimed, JobRecord)  # no idempotency key: always a new job
        job_id, run = claimed
        run.progress = progress = Progress(stage="queued")
        rt.audit.append("eval.drift_start", actor, job_id=job_id, params=params)

        def say(stage: str) -> None:
            progress.stage = stage
            rt.registry.update_job(job_id, progress=progress.as_dict())

        def work() -> None:
            rt.registry.update_job(job_id, state="running", started_at=now())
            progress.started = time.monotonic()
            try:
                result = self.drift(
                    actor,
                    queries,
                    baseline,
                    candidate,
                    request.top_k,
                    request.gates(),
                    progress=say,
                    job_id=job_id,
                    cancel=run.cancel,
                )
                write_report(result, self.jobs.reports_dir(job_id))
                progress.stage = "done"
                self.jobs.end(job_id, "succeeded", result=result)
            except JobCancelled:
                self.jobs.end(job_id, "cancelled")
                rt.audit.append("eval.drift_cancelled", actor, job_id=job_id)
            except Exception as exc:
                message = error_message(exc)
                log.exception("drift job %s failed", job_id)
                self.jobs.end(job_id, "failed", error=message)
                rt.audit.append("eval.drift_failed", actor, job_id=job_id, error=message[:500])

        return self.jobs.launch("drift", job_id, run, work, background=True)
