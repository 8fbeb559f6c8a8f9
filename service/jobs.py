"""Background jobs: claim, run, track, cancel. The runner runs a callable and knows no job
kinds: the concerns that start jobs (``reindex``, ``comparisons``, ``ingest_jobs``) say what the
work is, and the runner keeps the rules every job obeys.

Invariants:

- **One exclusive job at a time.** A job claimed without ``hold`` needs the runner alone: a
  second start while one is queued or running is refused (``JobRunning``, naming the running
  job's kind and id). Jobs of the kinds in ``shared_kinds`` (ingests) claim what they need
  through ``hold`` instead (a source's lock) and run beside the others.
- **An ``Idempotency-Key`` belongs to its caller** (the actor: an API key id): a start with a key
  the same caller already used returns that job instead of starting another; the key with
  another request is refused (``IdempotencyKeyReused``); another caller's equal key is another key.
- **A job's row tells its truth.** ``queued`` → ``running`` → ``succeeded`` | ``failed`` |
  ``cancelled``; progress is written at most once a second while it runs, only moves forward,
  and is written once more, as it stood, in the same update as the job's end (so its
  ``elapsed_s`` stops there); a job whose process died is found (its file lock is free) and
  marked ``failed`` on the next start (``ragwall.service.rebuild.recover``).
- **A cancel reaches the work**: each job's work checks its ``cancel`` event (a reindex between
  documents, a drift comparison between queries, an ingest kills its parser workers); closing
  the runner (the server stopping) cancels every job and waits for it.
- **Every job's end is observed**: its log line and its metrics, from the row the job wrote.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock
from pydantic import ValidationError

from ragwall.errors import (
    IdempotencyKeyReused,
    JobNotFound,
    JobRunning,
    RagwallError,
    validation_message,
)
from ragwall.ingest.registry import JobRecord, Registry
from ragwall.telemetry import event

log = logging.getLogger("ragwall.service.jobs")

PROGRESS_EVERY_S = 1.0


@dataclass
class Progress:
    """What a running job has done; ``as_dict`` adds elapsed seconds and an ETA."""

    documents_done: int = 0
    documents_total: int = 0
    chunks: int = 0
    reused_vectors: int = 0
    stage: str = "queued"
    started: float = field(default_factory=time.monotonic)

    def advance(self, documents_done: int, chunks: int) -> None:
        """Move the counts forward (never back: a stage's own count may lag the job's)."""
        self.documents_done = max(self.documents_done, documents_done)
        self.chunks = max(self.chunks, chunks)

    def as_dict(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        eta = None
        if 0 < self.documents_done < self.documents_total:
            eta = round(
                elapsed / self.documents_done * (self.documents_total - self.documents_done), 1
            )
        return {
            "stage": self.stage,
            "documents_done": self.documents_done,
            "documents_total": self.documents_total,
            "chunks": self.chunks,
            "reused_vectors": self.reused_vectors,
            "elapsed_s": round(elapsed, 1),
            "eta_s": 0.0 if self.stage == "done" else eta,
        }


def job_lock(locks_dir: Path, job_id: str) -> FileLock:
    """Held while a job runs; a job whose lock is free is dead (its process is gone)."""
    locks_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks_dir / f"job-{job_id}.lock"), thread_local=False)


def lower_priority() -> None:
    """Run the calling thread (and the parser processes it starts) at a lower CPU priority, so
    requests stay responsive beside a build (Linux: niceness is per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not permitted
        log.debug("could not lower the build's priority")


@dataclass
class Run:
    """A job claimed in this process: its thread, its cancel event, its live progress."""

    thread: threading.Thread | None
    cancel: threading.Event
    progress: Progress | None = None  # live: elapsed and ETA computed when read
    kind: str = "job"
    release: Callable[[], None] | None = None  # lets go of what the job claimed, at its end


class JobRunner:
    """Runs jobs: in a background thread (HTTP) or in the caller's (the CLI).

    Parameters:
        registry: where jobs are recorded.
        on_finished: told each job's end (kind, state, seconds), for the metrics.
        locks_dir: where each running job holds its file lock.
        reports_dir: where each job's report folder is made.
        shared_kinds: job kinds that claim what they need through ``hold`` and run beside the
            others (the rest run one at a time).
    """

    def __init__(
        self,
        registry: Registry,
        locks_dir: Path,
        reports_dir: Path,
        shared_kinds: frozenset[str] = frozenset(),
        on_finished: Callable[[str, str, float | None], None] | None = None,
    ) -> None:
        self.registry = registry
        self.on_finished = on_finished
        self.locks_dir = locks_dir
        self._reports = reports_dir
        self.shared_kinds = shared_kinds
        self._lock = threading.Lock()
        self._running: dict[str, Run] = {}

    def running(self) -> str | None:
        """The id of the exclusive job that is queued or running, if any."""
        busy = self._busy()
        return busy.id if busy else None

    def _busy(self) -> JobRecord | None:
        for job in self.registry.unfinished_jobs():
            if job.kind not in self.shared_kinds:
                return job
        return None

    def reports_dir(self, job_id: str) -> Path:
        """Where a job's report (``report.html``, ``drift.json``) is kept."""
        return self._reports / job_id

    def earlier(
        self, kind: str, actor: str, params: dict[str, Any], idempotency_key: str | None
    ) -> JobRecord | None:
        """The job that ``actor``'s earlier request with this ``Idempotency-Key`` started, when
        this request is the same; raises IdempotencyKeyReused when it is another."""
        if not idempotency_key:
            return None
        earlier = self.registry.job_by_key(scoped(actor, idempotency_key))
        if earlier is None:
            return None
        if earlier.kind != kind or earlier.params != params:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {idempotency_key!r} already started job {earlier.id} (a "
                f"{earlier.kind}) with another request; use a new key for a new request",
                job_id=earlier.id,
            )
        return earlier

    def claim(
        self,
        kind: str,
        actor: str,
        params: dict[str, Any],
        idempotency_key: str | None = None,
        hold: Callable[[], Callable[[], None]] | None = None,
    ) -> tuple[str, Run] | JobRecord:
        """Register a new ``queued`` job, under the runner's lock; returns its id and run.

        Returns the earlier job instead when a retry with the same caller's ``Idempotency-Key``
        and request raced the first call. ``hold`` claims what the job needs (an ingest: its
        source), raising when it is taken, and returns how to let it go when the job ends;
        without it, the job needs the runner alone: Conflict while another reindex or drift job
        is queued or running."""
        registry = self.registry
        job_id = uuid.uuid4().hex[:16]
        with self._lock:
            earlier = self.earlier(kind, actor, params, idempotency_key)
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
                stored_key = scoped(actor, idempotency_key) if idempotency_key else None
                registry.add_job(job_id, kind, actor, params, now(), idempotency_key=stored_key)
            except BaseException:
                if release is not None:
                    release()
                raise
            run = Run(None, threading.Event(), kind=kind, release=release)
            self._running[job_id] = run
        return job_id, run

    def launch(
        self, kind: str, job_id: str, run: Run, work: Callable[[], None], background: bool
    ) -> JobRecord:
        """Run a claimed job's ``work`` holding its file lock (a thread at a lower priority in
        the background, else in the caller's thread); returns the job as it stands."""
        lock = job_lock(self.locks_dir, job_id)
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
        return self.registry.get_job(job_id)  # type: ignore[return-value]

    def end(self, job_id: str, end: str, **fields: Any) -> None:
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
        self.registry.update_job(job_id, state=end, finished_at=now(), **fields)

    def set_progress(self, job_id: str, progress: Progress) -> None:
        """The live progress of a job running in this process."""
        with self._lock:
            if job_id in self._running:
                self._running[job_id].progress = progress

    def _finished(self, job_id: str) -> None:
        """A job's end: its log line and its metrics, from the row the job wrote."""
        job = self.registry.get_job(job_id)
        if job is None:
            return
        seconds = None
        if job.started_at and job.finished_at:
            seconds = (
                datetime.fromisoformat(job.finished_at) - datetime.fromisoformat(job.started_at)
            ).total_seconds()
        if self.on_finished is not None:
            self.on_finished(job.kind, job.state, seconds)
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

    def cancel(self, job_id: str) -> JobRecord:
        """Ask a running job to stop (a reindex at its next document, a drift comparison at its
        next query, an ingest at once: its parser workers are killed); a finished job is
        returned as it is."""
        job = self.registry.get_job(job_id)
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


def error_message(exc: BaseException) -> str:
    """A failed job's error: our own errors say what to do; others name their type."""
    if isinstance(exc, ValidationError):
        return f"invalid value: {validation_message(exc)}"
    return str(exc) if isinstance(exc, RagwallError) else f"{type(exc).__name__}: {exc}"


def now() -> str:
    return datetime.now(UTC).isoformat()


def scoped(actor: str, idempotency_key: str) -> str:
    """An ``Idempotency-Key`` as stored: the caller's own (a header value holds no newline)."""
    return f"{actor}\n{idempotency_key}"
