"""``Service``: Ragwall's operations over one data directory, the one object every front door
(HTTP routes, CLI, console), eval and bench calls.

It wires the runtime (``ragwall.service.runtime``), the job runner and one object per concern,
and delegates each public method to its concern in one line. What each operation guarantees is
stated where it is done:

- sources, ingest and quarantine: ``ragwall.service.sources`` (ingest jobs: ``ingest_jobs``);
- keys, console sessions, refusals: ``ragwall.service.access``;
- retrieve: ``ragwall.service.retrieve``;
- health and metrics: ``ragwall.service.health``;
- index versions and switches: ``ragwall.service.versions`` (the lease: ``index``);
- reindex jobs: ``ragwall.service.reindex`` (the build protocol: ``rebuild``);
- drift snapshots and comparisons: ``ragwall.service.comparisons`` (``snapshots``);
- jobs: ``ragwall.service.jobs`` (the runner) and ``job_status``;
- console pages: ``ragwall.service.views``.

Invariants kept across all of them: **every admin operation appends exactly one audit record**,
whichever front door called it, after the operation took effect, under the caller's ``actor``
(an API key id; ``cli:<user>`` for the command line), never with a secret; **every retrieve
appends one**; heavy resources (the embedding model, the store) open on first use or at
:meth:`Service.warm_up`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Unpack

from ragwall.embed import DenseEncoder
from ragwall.eval.drift import Gates, QuerySet, Snapshot
from ragwall.ingest.pipeline import IngestReport
from ragwall.ingest.registry import JobRecord
from ragwall.ingest.sources import Source
from ragwall.service.access import Access
from ragwall.service.audit import VerifyReport
from ragwall.service.budgets import Budgets
from ragwall.service.catalog import Catalog, Fetched, SourceView
from ragwall.service.comparisons import Comparisons
from ragwall.service.health import Health
from ragwall.service.ingest_jobs import KIND as INGEST_KIND
from ragwall.service.ingest_jobs import start_ingest
from ragwall.service.job_status import JobStatus
from ragwall.service.jobs import JobRunner
from ragwall.service.keys import UNLIMITED, Budget, KeyRecord, Principal
from ragwall.service.reindex import Reindexes
from ragwall.service.requests import DriftRequest, ReindexChanges, Side
from ragwall.service.retrieve import Retrieval, RetrieveParams, Retriever, defense_config
from ragwall.service.runtime import Runtime
from ragwall.service.scheduler import ACTOR as SCHEDULER
from ragwall.service.schedules import Schedules
from ragwall.service.sessions import ConsoleSession
from ragwall.service.sources import SourceOptions, Sources, SourceSummary
from ragwall.service.syncs import SyncState
from ragwall.service.tokens import Minted
from ragwall.service.usage import UsageReport, usage
from ragwall.service.versions import Versions
from ragwall.service.views import AuditStatus, FlaggedPage, SourceRow, Views
from ragwall.settings import DefenseConfig, Settings
from ragwall.telemetry import Metrics

#: Job kinds that run beside the others (each claims its source instead of the runner).
SHARED_JOB_KINDS = frozenset({INGEST_KIND})


class Service:
    """Ragwall's operations over one data directory.

    Parameters:
        settings: every tunable; ``Settings()`` (the ``RAGWALL_*`` environment) when omitted.
        encoder: an already-loaded encoder to share (tests, evals); else loaded on first use.

    Use as a context manager, or call :meth:`close`. ``settings`` is public; ``runtime``,
    ``jobs`` and ``metrics`` are for tests, evals and benches, never for a front door.
    """

    def __init__(self, settings: Settings | None = None, encoder: DenseEncoder | None = None):
        self.settings = settings or Settings()
        self.runtime = rt = Runtime(self.settings, encoder, on_index_open=self._recover)
        self.jobs = JobRunner(
            rt.registry,
            self.settings.locks_dir,
            self.settings.reports_dir,
            SHARED_JOB_KINDS,
            on_finished=lambda kind, state, seconds: self.metrics.job_finished(
                kind, state, seconds
            ),
        )
        self._health = Health(rt, self.jobs)
        self.metrics = Metrics(self._health.reading)
        self._sources = Sources(rt, self.metrics)
        self._access = Access(rt)
        self._budgets = Budgets(self.metrics.refused_for_budget if rt.settings.telemetry else None)
        self._retriever = Retriever(rt, self.metrics)
        self._catalog = Catalog(rt)
        self._versions = Versions(rt, self.jobs)
        self._reindexes = Reindexes(rt, self.jobs)
        self._comparisons = Comparisons(rt, self.jobs)
        self._job_status = JobStatus(rt, self.jobs)
        self._views = Views(rt, self.jobs, self._sources)
        self._schedules = Schedules(rt, lambda source_id: self.start_ingest(SCHEDULER, source_id))

    def _recover(self, index: Any) -> None:
        self._reindexes.recover(index)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel running jobs, wait for them, and close everything the runtime opened."""
        self.stop_jobs()
        self.runtime.close()

    def warm_up(self) -> None:
        """Open the active index and load its embedding model now (a server before it serves,
        a command before it starts work), so a missing model or a locked index fails here."""
        self.runtime.warm_up()

    def stop_jobs(self) -> None:
        """Stop the scheduler, cancel the running jobs, wait for them (the server stopping)."""
        self._schedules.stop()
        self.jobs.close()

    # -- sources and ingest (``sources``, ``ingest_jobs``) -------------------------------------
    def add_source(
        self,
        actor: str,
        source_id: str,
        path: str,
        trust: str = "internal",
        groups: Sequence[str] = (),
        **options: Unpack[SourceOptions],
    ) -> Source:
        return self._sources.add_source(actor, source_id, path, trust, groups, **options)

    def set_source_schedule(
        self, actor: str, source_id: str, changes: Mapping[str, int | None]
    ) -> tuple[Source, SyncState]:
        return self._schedules.set(actor, source_id, changes)

    def start_scheduler(self) -> None:
        """Run due syncs as ingest jobs until :meth:`stop_jobs` (``ragwall serve`` only)."""
        self._schedules.start()

    def list_sources(self) -> list[SourceSummary]:
        return self._sources.list_sources()

    def remove_source(self, actor: str, source_id: str) -> int:
        return self._sources.remove_source(actor, source_id)

    def ingest(
        self,
        actor: str,
        source_id: str,
        paths: Iterable[Path] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        force: bool = False,
        cancel: threading.Event | None = None,
        *,
        claimed: bool = False,
        job_id: str | None = None,
        allow_mass_removal: bool = False,
    ) -> IngestReport:
        return self._sources.ingest(
            actor,
            source_id,
            paths,
            progress,
            force,
            cancel,
            claimed=claimed,
            job_id=job_id,
            allow_mass_removal=allow_mass_removal,
        )

    def start_ingest(
        self,
        actor: str,
        source_id: str,
        force: bool = False,
        idempotency_key: str | None = None,
        allow_mass_removal: bool = False,
    ) -> JobRecord:
        return start_ingest(
            self.jobs, self._sources, actor, source_id, force, idempotency_key, allow_mass_removal
        )

    def claim_source(self, source_id: str) -> Callable[[], None]:
        return self._sources.claim_source(source_id)

    def files_under(self, source_id: str, target: Path) -> list[Path]:
        return self._sources.files_under(source_id, target)

    def set_quarantine(self, actor: str, kind: str, value: str, on: bool, reason: str = "") -> bool:
        return self._sources.set_quarantine(actor, kind, value, on, reason)

    def quarantine_list(self) -> list[dict[str, str]]:
        return self._sources.quarantine_list()

    # -- access (``access``) -------------------------------------------------------------------
    def create_key(
        self,
        actor: str,
        scope: str = "retrieve",
        groups: Sequence[str] | None = None,
        name: str = "",
        policy: str | None = None,
        budget: Budget = UNLIMITED,
        min_trust: float | None = None,
    ) -> tuple[str, KeyRecord]:
        return self._access.create_key(actor, scope, groups, name, policy, budget, min_trust)

    def revoke_key(self, actor: str, key_id: str) -> None:
        self._access.revoke_key(actor, key_id)

    def set_key_budget(
        self, actor: str, key_id: str, changes: Mapping[str, int | None]
    ) -> KeyRecord:
        return self._access.set_key_budget(actor, key_id, changes)

    def charge(self, who: Principal) -> dict[str, str] | None:
        return self._budgets.charge(who)

    def budget_headers(self, who: Principal) -> dict[str, str] | None:
        return self._budgets.peek(who)

    def usage(self, since: timedelta, by: str = "key") -> UsageReport:
        return usage(self.settings.audit_path, datetime.now(UTC) - since, by)

    def mint_token(
        self,
        who: Principal,
        ttl_s: int | None = None,
        groups: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        workflow_id: str | None = None,
        actor: str | None = None,
    ) -> Minted:
        return self._access.mint_token(who, ttl_s, groups, scopes, workflow_id, actor)

    def revoke_token(self, who: Principal, jti: str) -> None:
        self._access.revoke_token(who, jti)

    def jwks(self) -> dict[str, Any]:
        return self._access.jwks()

    def authenticate(self, key: str) -> Principal | None:
        return self._access.authenticate(key)

    def list_keys(self) -> list[KeyRecord]:
        return self._access.list_keys()

    def verify_audit(self) -> VerifyReport:
        return self._access.verify_audit()

    def record_session(self, key_id: str, action: str) -> None:
        self._access.record_session(key_id, action)

    def sign_in(self, who: Principal) -> ConsoleSession:
        return self._access.sign_in(who)

    def console_session(self, token: str | None) -> tuple[ConsoleSession | None, bool]:
        return self._access.console_session(token)

    def sign_out(self, session: ConsoleSession) -> None:
        self._access.sign_out(session)

    def record_refusal(
        self, who: Principal | str | None, method: str, route: str, status: int, code: str
    ) -> bool:
        return self._access.record_refusal(who, method, route, status, code)

    # -- retrieve (``retrieve``) ---------------------------------------------------------------
    def retrieve(
        self, who: Principal, params: RetrieveParams, action: str = "retrieve"
    ) -> Retrieval:
        return self._retriever.retrieve(who, params, action)

    def visible_sources(self, who: Principal, action: str | None = None) -> list[SourceView]:
        return self._catalog.visible_sources(who, action)

    def fetch(
        self,
        who: Principal,
        chunk_id: str | None = None,
        doc_id: str | None = None,
        policy: str | None = None,
        action: str = "fetch",
    ) -> Fetched:
        return self._catalog.fetch(who, chunk_id, doc_id, policy, action)

    def defense_config(self, policy: str) -> DefenseConfig:
        return defense_config(self.settings, self.runtime.registry, policy)

    # -- health (``health``) -------------------------------------------------------------------
    def readiness(self) -> dict[str, Any]:
        return self._health.readiness()

    def metrics_text(self) -> bytes:
        """The metrics in the Prometheus text format (``GET /metrics``)."""
        return self.metrics.exposition()

    # -- index versions and reindex (``versions``, ``reindex``) --------------------------------
    def index_info(self) -> dict[str, Any]:
        return self._versions.index_info()

    def activate(self, actor: str, version: str | int, *, reason: str = "activate") -> dict:
        return self._versions.activate(actor, version, reason=reason)

    def rollback(self, actor: str) -> dict:
        return self._versions.rollback(actor)

    def start_reindex(
        self,
        actor: str,
        changes: ReindexChanges | dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> JobRecord:
        return self._reindexes.start(actor, changes, idempotency_key, background=True)

    def reindex(
        self,
        actor: str,
        changes: dict[str, Any] | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> JobRecord:
        """Run a reindex in this thread and return its finished job (the CLI's way)."""
        return self._reindexes.start(actor, changes, background=False, progress=progress)

    # -- drift (``comparisons``) ---------------------------------------------------------------
    def snapshot(
        self,
        actor: str,
        queries: QuerySet,
        top_k: int = 10,
        version: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Snapshot:
        return self._comparisons.snapshot(actor, queries, top_k, version, progress)

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
        return self._comparisons.drift(
            actor, queries, baseline, candidate, top_k, gates, progress, job_id, cancel
        )

    def start_drift(self, actor: str, request: DriftRequest) -> JobRecord:
        return self._comparisons.start_drift(actor, request)

    # -- jobs (``job_status``) -----------------------------------------------------------------
    def job(self, job_id: str) -> JobRecord:
        return self._job_status.job(job_id)

    def job_report(self, job_id: str, name: str = "report.html") -> Path:
        return self._job_status.job_report(job_id, name)

    def cancel_job(self, actor: str, job_id: str) -> JobRecord:
        return self._job_status.cancel_job(actor, job_id)

    # -- console pages (``views``) -------------------------------------------------------------
    def console_sources(self) -> list[SourceRow]:
        return self._views.source_rows()

    def latest_reindex(self) -> JobRecord | None:
        return self._views.latest_reindex()

    def recent_jobs(self, limit: int = 50, kinds: tuple[str, ...] = ()) -> list[JobRecord]:
        return self._views.recent_jobs(limit, kinds)

    def drift_jobs(self, limit: int = 50) -> list[tuple[JobRecord, bool]]:
        return self._views.drift_jobs(limit)

    def flagged(
        self, kind: str, after: str | None, limit: int, source_id: str | None = None
    ) -> FlaggedPage:
        return self._views.flagged(kind, after, limit, source_id)

    def audit_status(self) -> AuditStatus:
        return self._views.audit_status()
