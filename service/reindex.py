"""Reindex jobs: validate a reindex's changes, run the build (``ragwall.service.rebuild``) as a
job, gate it on a drift comparison, audit every step; and recover the jobs whose process died.

Invariants:

- **Refused before any work starts**: bad changes, a model outside the allowed ids and roots or
  one that does not load, bad gate input (``InvalidRequest``); a reused ``Idempotency-Key``
  (``IdempotencyKeyReused``); another reindex or drift job running (``JobRunning``).
- **Every reindex is audited**: its start (``index.reindex_start``) and its end: the switch
  (``index.switch``, with ``index.gate_override`` before it when ``force`` passed a failing
  gate), ``index.gate_failed``, ``index.reindex_cancelled`` or ``index.reindex_failed``.
- Jobs found dead when the index first opens are marked failed and audited
  (``index.job_failed``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from ragwall.errors import (
    InvalidRequest,
    JobCancelled,
    ModelError,
    ModelNotAllowed,
    RagwallError,
    validation_message,
)
from ragwall.eval.drift.queries import QuerySet
from ragwall.eval.drift.report import write_report
from ragwall.ingest.registry import JobRecord, VersionRecord
from ragwall.retrieval.store import Store
from ragwall.service.index import (
    ActiveIndex,
    environment_changes,
    version_settings,
)
from ragwall.service.jobs import JobRunner, Progress, error_message, now
from ragwall.service.model_roots import check_requested_models
from ragwall.service.rebuild import GateCheck, GateFailed, build_and_switch
from ragwall.service.requests import ReindexChanges
from ragwall.service.runtime import Runtime
from ragwall.service.snapshots import compare_versions
from ragwall.service.upkeep import BuildContext, recover
from ragwall.settings import Settings

log = logging.getLogger("ragwall.service.jobs")


def plan(
    settings: Settings, active: VersionRecord, changes: ReindexChanges | dict[str, Any] | None
) -> Settings:
    """The settings a reindex builds with: the active version's, then what the environment
    changed since that version was built, then ``changes`` (each validated like the
    environment: a bad value raises pydantic's ValidationError; a model outside the allowed
    ids and roots raises ModelNotAllowed). So a change made by an earlier
    reindex's body stays, and an edited environment takes effect."""
    given = (
        changes.given()
        if isinstance(changes, ReindexChanges)
        else ReindexChanges.model_validate(changes or {}).given()
    )
    check_requested_models(settings, given)  # no path outside RAGWALL_MODEL_ROOTS
    merged = version_settings(settings, active.config)
    merged = version_settings(merged, environment_changes(settings, active))
    return type(settings).model_validate({**merged.model_dump(), **given})


class Reindexes:
    """Starts and runs reindex jobs.

    Parameters:
        rt: the runtime (settings, registry, index, audit, model cache).
        jobs: the runner the reindex runs in.
    """

    def __init__(self, rt: Runtime, jobs: JobRunner) -> None:
        self.rt = rt
        self.jobs = jobs

    def recover(self, index: ActiveIndex) -> None:
        """Mark the jobs whose process died failed, and audit each (the runtime calls it when
        the index first opens)."""
        rt = self.rt
        ctx = BuildContext(
            rt.settings, rt.registry, rt.stores, index, rt.writes, rt.settings.locks_dir
        )
        for job_id in recover(ctx):
            rt.audit.append("index.job_failed", "ragwall", job_id=job_id, reason="interrupted")

    def start(
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
        rt = self.rt
        try:
            parsed = (
                changes
                if isinstance(changes, ReindexChanges)
                else ReindexChanges.model_validate(changes or {})
            )
            new_settings = plan(rt.settings, rt.index.ensure_registry(), parsed)
        except ValidationError as exc:
            raise InvalidRequest(validation_message(exc)) from exc
        except ModelNotAllowed as exc:
            raise InvalidRequest(str(exc)) from exc
        params = parsed.params()
        try:  # bad gate input is refused before any work starts
            gate_queries = parsed.gate.query_set() if parsed.gate else None
        except RagwallError as exc:
            raise InvalidRequest(f"gate: {exc}") from exc
        earlier = self.jobs.earlier("reindex", actor, params, idempotency_key)
        if earlier is not None:
            return earlier
        _ = rt.index  # migrate and recover before anything else
        try:
            rt.encoder_for(new_settings.embedding_model)
        except ModelError as exc:  # one message, whatever went wrong: no probing of files
            log.warning("reindex: embedding model did not load: %s", exc)
            raise InvalidRequest(
                f"embedding_model: {new_settings.embedding_model!r} could not be loaded as a "
                "sentence-transformers model (the server's log has the cause)"
            ) from exc
        claimed = self.jobs.claim("reindex", actor, params, idempotency_key)
        if isinstance(claimed, JobRecord):  # a retry that raced the first call: that call's job
            return claimed
        job_id, run = claimed
        rt.audit.append("index.reindex_start", actor, job_id=job_id, changes=params)
        gate = (
            self._gate_check(job_id, parsed.gate, gate_queries, run.cancel)
            if parsed.gate is not None and gate_queries is not None
            else None
        )

        def work() -> None:
            self._run(
                job_id,
                actor,
                new_settings,
                run.cancel,
                progress,
                rebuild=parsed.rebuild,
                gate=gate,
                force=parsed.force,
            )

        return self.jobs.launch("reindex", job_id, run, work, background)

    def _run(
        self,
        job_id: str,
        actor: str,
        new_settings: Any,
        cancel: threading.Event,
        progress: Callable[[dict[str, Any]], None] | None,
        *,
        rebuild: bool = False,
        gate: Any = None,
        force: bool = False,
    ) -> None:
        registry, audit = self.rt.registry, self.rt.audit
        registry.update_job(job_id, state="running", started_at=now())

        def report(p: Progress) -> None:
            self.jobs.set_progress(job_id, p)
            snapshot = p.as_dict()
            registry.update_job(job_id, progress=snapshot)
            if progress:
                progress(snapshot)

        try:
            result = build_and_switch(
                BuildContext.of(self.rt),
                job_id,
                new_settings,
                cancel,
                report,
                rebuild=rebuild,
                gate=gate,
                force=force,
            )
        except GateFailed as exc:
            self.jobs.end(job_id, "failed", error=str(exc), result=exc.result)
            audit.append(
                "index.gate_failed",
                actor,
                job_id=job_id,
                version=exc.result["version"],
                gates=exc.result["gate"]["gates"],
            )
        except JobCancelled:
            self.jobs.end(job_id, "cancelled")
            audit.append("index.reindex_cancelled", actor, job_id=job_id)
        except BaseException as exc:
            message = error_message(exc)
            log.exception("reindex job %s failed", job_id)
            self.jobs.end(job_id, "failed", error=message)
            audit.append("index.reindex_failed", actor, job_id=job_id, error=message[:500])
            if not isinstance(exc, Exception):
                raise
        else:
            self.jobs.end(job_id, "succeeded", result=result)
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

    def _gate_check(
        self, job_id: str, spec: Any, queries: QuerySet, cancel: threading.Event
    ) -> GateCheck:
        """The reindex gate (a ``DriftGate``): the active version and the one being built are
        compared on the gate's queries (stopping between queries when the job is cancelled);
        the report is written with the job."""
        rt = self.rt

        def check(store: Store, record: VersionRecord) -> dict[str, Any]:
            with rt.index.lease() as active:
                building = rt.index.open_handle(record, store)  # the build's own store
                result = compare_versions(
                    rt, active, building, queries, spec.top_k, spec.gates(), cancel=cancel
                )
            paths = write_report(result, self.jobs.reports_dir(job_id))
            result["report"] = str(paths["html"])
            return result

        return check
