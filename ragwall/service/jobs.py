"""Background jobs (reindexes, drift comparisons, ingests): start, track, cancel, and recover
after a crash.

Invariants:

- **One reindex or drift job at a time.** A second start while one is queued or running is
  refused (``Conflict``, naming the running job's kind and id). Ingest jobs are claimed per
  source instead (``ragwall.service.ingest_jobs``) and run beside them.
- **An ``Idempotency-Key`` belongs to its caller** (the actor: an API key id): a start with a key
  the same caller already used returns that job instead of starting another; the key with
  another request is refused (``IdempotencyKeyReused``); another caller's equal key is another key.
- **A job's row tells its truth.** ``queued`` → ``running`` → ``succeeded`` | ``failed`` |
  ``cancelled``; progress is written at most once a second while it runs, only moves forward,
  and is written once more, as it stood, in the same update as the job's end (so its
  ``elapsed_s`` stops there); a job whose process died is found (its file lock is free) and
  marked ``failed`` on the next start.
- **A cancel reaches the work**: each job's work checks its ``cancel`` event (a reindex between
  documents, a drift comparison between queries, an ingest kills its parser workers); closing
  the runner (the server stopping) cancels every job and waits for it.
- **Every job is audited**: its start and its end (with the versions switched), under the actor
  that started it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ragwall.errors import (
    IdempotencyKeyReused,
    InvalidRequest,
    JobNotFound,
    JobRunning,
    ModelError,
    ModelNotAllowed,
    NotFound,
    RagwallError,
    validation_message,
)
from ragwall.eval.drift.queries import QuerySet
from ragwall.ingest.state import JobRecord, VersionRecord
from ragwall.retrieval.store import Store
from ragwall.service.reindex import (
    BuildContext,
    GateCheck,
    GateFailed,
    JobCancelled,
    Progress,
    ReindexChanges,
    build_and_switch,
    job_lock,
    lower_priority,
    plan,
    recover,
)
from ragwall.telemetry import event

if TYPE_CHECKING:
    from ragwall.service.core import Service
    from ragwall.service.index import ActiveIndex

log = logging.getLogger("ragwall.service.jobs")


@dataclass
class _Running:
    thread: threading.Thread | None
    cancel: threading.Event
    progress: Progress | None = None  # live: elapsed and ETA computed when read
    kind: str = "job"
    release: Callable[[], None] | None = None  # lets go of what the job claimed, at its end


class JobRunner:
    """Runs a service's jobs: in a background thread (HTTP) or in the caller's (the CLI)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}

    def context(self, index: ActiveIndex) -> BuildContext:
        s = self.service
        return BuildContext(
            s.settings, s.state, s.stores, index, s.writes, s.settings.data_dir / "locks"
        )

    def recover(self, index: ActiveIndex) -> None:
        for job_id in recover(self.context(index)):
            self.service.audit.append(
                "index.job_failed", "ragwall", job_id=job_id, reason="interrupted"
            )

    def running(self) -> str | None:
        """The id of the reindex or drift job that is queued or running, if any."""
        busy = self._busy()
        return busy.id if busy else None

    def _busy(self) -> JobRecord | None:
        for job in self.service.state.unfinished_jobs():
            if job.kind not in PER_SOURCE:
                return job
        return None

    def reports_dir(self, job_id: str) -> Path:
        """Where a job's report (``report.html``, ``drift.json``) is kept."""
        return self.service.settings.data_dir / "reports" / job_id

    def start_reindex(
        self,
        actor: str,
        changes: dict[str, Any] | ReindexChanges | None = None,
        idempotency_key: str | None = None,
        *,
        background: bool = True,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> JobRecord:
        """Validate, register and run a reindex; returns its job (finished, when not in the
        background). Raises InvalidRequest (bad changes, a model that does not load) before any
        work starts, IdempotencyKeyReused for a key used with another request, and Conflict
        while another reindex or drift job runs."""
        svc = self.service
        try:
            parsed = (
                changes
                if isinstance(changes, ReindexChanges)
                else ReindexChanges.model_validate(changes or {})
            )
            new_settings = plan(svc.settings, svc.index.ensure_registry(), parsed)
        except ValidationError as exc:
            raise InvalidRequest(validation_message(exc)) from exc
        except ModelNotAllowed as exc:
            raise InvalidRequest(str(exc)) from exc
        params = parsed.params()
        try:  # bad gate input is refused before any work starts
            gate_queries = parsed.gate.query_set() if parsed.gate else None
        except RagwallError as exc:
            raise InvalidRequest(f"gate: {exc}") from exc
        earlier = self._earlier("reindex", actor, params, idempotency_key)
        if earlier is not None:
            return earlier
        index = svc.index  # migrate/recover before anything else
        try:
            svc.encoder_for(new_settings.embedding_model)
        except ModelError as exc:  # one message, whatever went wrong: no probing of files
            log.warning("reindex: embedding model did not load: %s", exc)
            raise InvalidRequest(
                f"embedding_model: {new_settings.embedding_model!r} could not be loaded as a "
                "sentence-transformers model (the server's log has the cause)"
            ) from exc
        claimed = self._claim("reindex", actor, params, idempotency_key)
        if isinstance(claimed, JobRecord):  # a retry that raced the first call: that call's job
            return claimed
        job_id, run = claimed
        svc.audit.append("index.reindex_start", actor, job_id=job_id, changes=params)
        gate = (
            self._gate_check(job_id, parsed.gate, gate_queries, run.cancel)
            if parsed.gate is not None and gate_queries is not None
            else None
        )

        def work() -> None:
            self._run(
                job_id,
                actor,
                index,
                new_settings,
                run.cancel,
                progress,
                rebuild=parsed.rebuild,
                gate=gate,
                force=parsed.force,
            )

        return self._launch("reindex", job_id, run, work, background)

    def _earlier(
        self, kind: str, actor: str, params: dict[str, Any], idempotency_key: str | None
    ) -> JobRecord | None:
        """The job that ``actor``'s earlier request with this ``Idempotency-Key`` started, when
        this request is the same; raises IdempotencyKeyReused when it is another."""
        if not idempotency_key:
            return None
        earlier = self.service.state.job_by_key(_scoped(actor, idempotency_key))
        if earlier is None:
            return None
        if earlier.kind != kind or earlier.params != params:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {idempotency_key!r} already started job {earlier.id} (a "
                f"{earlier.kind}) with another request; use a new key for a new request",
                job_id=earlier.id,
            )
        return earlier

    def _claim(
        self,
        kind: str,
        actor: str,
        params: dict[str, Any],
        idempotency_key: str | None = None,
        hold: Callable[[], Callable[[], None]] | None = None,
    ) -> tuple[str, _Running] | JobRecord:
        """Register a new ``queued`` job, under the runner's lock; returns its id and run.

        Returns the earlier job instead when a retry with the same caller's ``Idempotency-Key``
        and request raced the first call. ``hold`` claims what the job needs (an ingest: its
        source), raising when it is taken, and returns how to let it go when the job ends;
        without it, the job needs the runner alone: Conflict while another reindex or drift job
        is queued or running."""
        state = self.service.state
        job_id = uuid.uuid4().hex[:16]
        with self._lock:
            earlier = self._earlier(kind, actor, params, idempotency_key)
            if earlier is not None:
                return earlier
            release = None
            if hold is not None:
                release = hold()
            elif (busy := self._busy()) is not None:
                raise JobRunning(
                    f"a {busy.kind} job ({busy.id}) is running, and one reindex or drift job "
                    f"runs at a time: wait for it (GET /v1/jobs/{busy.id}) or cancel it "
                    f"(DELETE /v1/jobs/{busy.id})",
                    job_id=busy.id,
                )
            try:
                scoped = _scoped(actor, idempotency_key) if idempotency_key else None
                state.add_job(job_id, kind, actor, params, _now(), idempotency_key=scoped)
            except BaseException:
                if release is not None:
                    release()
                raise
            run = _Running(None, threading.Event(), kind=kind, release=release)
            self._running[job_id] = run
        return job_id, run

    def _launch(
        self, kind: str, job_id: str, run: _Running, work: Callable[[], None], background: bool
    ) -> JobRecord:
        """Run a claimed job's ``work`` holding its file lock (a thread at a lower priority in
        the background, else in the caller's thread); returns the job as it stands."""
        svc = self.service
        lock = job_lock(svc.settings.data_dir / "locks", job_id)
        lock.acquire()
        event(log, "job started", job_id=job_id, kind=kind, background=background)

        def body() -> None:
            try:
                if background:
                    lower_priority()
                work()
            finally:
                lock.release()
                with self._lock:
                    self._running.pop(job_id, None)
                    if run.release is not None:
                        run.release()
                self._finished(job_id)

        if background:
            run.thread = threading.Thread(target=body, name=f"{kind}-{job_id}", daemon=True)
            run.thread.start()
        else:
            body()
        return svc.state.get_job(job_id)  # type: ignore[return-value]

    def _run(
        self,
        job_id: str,
        actor: str,
        index: ActiveIndex,
        new_settings: Any,
        cancel: threading.Event,
        progress: Callable[[dict[str, Any]], None] | None,
        *,
        rebuild: bool = False,
        gate: Any = None,
        force: bool = False,
    ) -> None:
        state, audit = self.service.state, self.service.audit
        state.update_job(job_id, state="running", started_at=_now())

        def report(p: Progress) -> None:
            with self._lock:
                if job_id in self._running:
                    self._running[job_id].progress = p
            snapshot = p.as_dict()
            state.update_job(job_id, progress=snapshot)
            if progress:
                progress(snapshot)

        try:
            result = build_and_switch(
                self.context(index),
                job_id,
                new_settings,
                cancel,
                report,
                rebuild=rebuild,
                gate=gate,
                force=force,
            )
        except GateFailed as exc:
            self._end(job_id, "failed", error=str(exc), result=exc.result)
            audit.append(
                "index.gate_failed",
                actor,
                job_id=job_id,
                version=exc.result["version"],
                gates=exc.result["gate"]["gates"],
            )
        except JobCancelled:
            self._end(job_id, "cancelled")
            audit.append("index.reindex_cancelled", actor, job_id=job_id)
        except BaseException as exc:
            message = _error_message(exc)
            log.exception("reindex job %s failed", job_id)
            self._end(job_id, "failed", error=message)
            audit.append("index.reindex_failed", actor, job_id=job_id, error=message[:500])
            if not isinstance(exc, Exception):
                raise
        else:
            self._end(job_id, "succeeded", result=result)
            if result.get("forced"):
                audit.append(
                    "index.gate_override",
                    actor,
                    job_id=job_id,
                    version=result["version"],
                    gates=result["gate"]["gates"],
                )
            audit.append(
                "index.switch",
                actor,
                job_id=job_id,
                version=result["version"],
                previous=result["previous"],
                reason="reindex",
                retired=result["retired"],
            )

    def _end(self, job_id: str, end: str, **fields: Any) -> None:
        """Write a job's end (``end``: its final state) in one update, with its progress as it
        stood at the end: never behind what a reader saw while it ran, and its elapsed time
        stopped there."""
        with self._lock:
            run = self._running.get(job_id)
            current = run.progress if run is not None else None
        if current is not None:
            final = current.as_dict()
            if end != "succeeded":
                final["eta_s"] = None
            fields["progress"] = final
        self.service.state.update_job(job_id, state=end, finished_at=_now(), **fields)

    def _gate_check(
        self, job_id: str, spec: Any, queries: QuerySet, cancel: threading.Event
    ) -> GateCheck:
        """The reindex gate (a ``DriftGate``): the active version and the one being built are
        compared on the gate's queries (stopping between queries when the job is cancelled);
        the report is written with the job."""
        from ragwall.eval.drift.report import write_report
        from ragwall.service.drift import compare_versions

        svc = self.service

        def check(store: Store, record: VersionRecord) -> dict[str, Any]:
            with svc.index.lease() as active:
                building = svc.index.open_handle(record, store)  # the build's own store
                result = compare_versions(
                    svc, active, building, queries, spec.top_k, spec.gates(), cancel=cancel
                )
            paths = write_report(result, self.reports_dir(job_id))
            result["report"] = str(paths["html"])
            return result

        return check

    def start_drift(self, actor: str, request: Any) -> JobRecord:
        """Run a drift comparison (a ``DriftRequest``) as a background job; its result is the
        comparison and its report is kept with it. The request is checked as the CLI's is
        (``ragwall.service.drift.check_request``) before any work starts: InvalidRequest for
        bad input, NotFound for a version that is unknown or cannot serve; Conflict while a
        job runs."""
        from ragwall.eval.drift.report import write_report
        from ragwall.service.drift import check_request

        svc = self.service
        try:
            queries = request.query_set()
            baseline, candidate = request.sides()
            check_request(svc, queries, baseline, candidate)
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
        claimed = self._claim("drift", actor, params)
        assert not isinstance(claimed, JobRecord)  # no idempotency key: always a new job
        job_id, run = claimed
        run.progress = progress = Progress(stage="queued")
        svc.audit.append("eval.drift_start", actor, job_id=job_id, params=params)

        def say(stage: str) -> None:
            progress.stage = stage
            svc.state.update_job(job_id, progress=progress.as_dict())

        def work() -> None:
            svc.state.update_job(job_id, state="running", started_at=_now())
            progress.started = time.monotonic()
            try:
                result = svc.drift(
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
                write_report(result, self.reports_dir(job_id))
                progress.stage = "done"
                self._end(job_id, "succeeded", result=result)
            except JobCancelled:
                self._end(job_id, "cancelled")
                svc.audit.append("eval.drift_cancelled", actor, job_id=job_id)
            except Exception as exc:
                message = _error_message(exc)
                log.exception("drift job %s failed", job_id)
                self._end(job_id, "failed", error=message)
                svc.audit.append("eval.drift_failed", actor, job_id=job_id, error=message[:500])

        return self._launch("drift", job_id, run, work, background=True)

    def _finished(self, job_id: str) -> None:
        """A job's end: its log line and its metrics, from the row the job wrote."""
        job = self.service.state.get_job(job_id)
        if job is None:
            return
        seconds = None
        if job.started_at and job.finished_at:
            seconds = (
                datetime.fromisoformat(job.finished_at) - datetime.fromisoformat(job.started_at)
            ).total_seconds()
        self.service.metrics.job_finished(job.kind, job.state, seconds)
        level = logging.INFO if job.state == "succeeded" else logging.WARNING
        event(
            log,
            "job finished",
            level,
            job_id=job_id,
            kind=job.kind,
            state=job.state,
            duration_s=None if seconds is None else round(seconds, 3),
            version=(job.result or {}).get("version"),
            error=(job.error or "")[:500] or None,
        )

    def running_progress(self) -> list[tuple[str, int, int]]:
        """``(kind, documents_done, documents_total)`` of each job running in this process."""
        with self._lock:
            runs = list(self._running.values())
        return [
            (r.kind, r.progress.documents_done, r.progress.documents_total)
            if r.progress is not None
            else (r.kind, 0, 0)
            for r in runs
        ]

    def live(self, job: JobRecord) -> JobRecord:
        """``job`` with its progress as of now, when it runs in this process (the stored one
        is written at most once a second and not during a long embedding batch)."""
        with self._lock:
            run = self._running.get(job.id)
            current = run.progress if run else None
        if current is None or job.state not in ("queued", "running"):
            return job
        return dataclasses.replace(job, progress=current.as_dict())

    def start_ingest(
        self,
        actor: str,
        source_id: str,
        force: bool = False,
        idempotency_key: str | None = None,
    ) -> JobRecord:
        """Ingest a source as a background job (``ragwall.service.ingest_jobs``)."""
        from ragwall.service.ingest_jobs import start_ingest

        return start_ingest(self, actor, source_id, force, idempotency_key)

    def cancel(self, job_id: str) -> JobRecord:
        """Ask a running job to stop (a reindex at its next document, a drift comparison at its
        next query, an ingest at once: its parser workers are killed); a finished job is
        returned as it is."""
        job = self.service.state.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        with self._lock:
            run = self._running.get(job_id)
        if run is not None:
            run.cancel.set()
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        with self._lock:
            run = self._running.get(job_id)
        if run is not None and run.thread is not None:
            run.thread.join(timeout)

    def close(self) -> None:
        """Cancel running jobs and wait for them to clean up."""
        with self._lock:
            runs = list(self._running.values())
        for run in runs:
            run.cancel.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join(120)


def _error_message(exc: BaseException) -> str:
    """A failed job's error: our own errors say what to do; others name their type."""
    if isinstance(exc, ValidationError):
        return f"invalid value: {validation_message(exc)}"
    return str(exc) if isinstance(exc, RagwallError) else f"{type(exc).__name__}: {exc}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _scoped(actor: str, idempotency_key: str) -> str:
    """An ``Idempotency-Key`` as stored: the caller's own (a header value holds no newline)."""
    return f"{actor}\n{idempotency_key}"


#: Job kinds claimed per source, not the runner: they run beside the others.
PER_SOURCE = frozenset({"ingest"})
