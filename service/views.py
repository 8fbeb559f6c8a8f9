"""Read-side queries for the admin console: what each page shows, as plain data.

Invariants:

- **Reads only.** Nothing here changes state or appends an audit record; the console's actions go
  through the same service operations as the HTTP API (so the same audit records are written).
- **Bounded work per page.** Flagged chunks are read one page at a time from the active
  version's store (a filtered scroll and a filtered count, never every flagged point), and job
  lists are capped, so a page costs the same with ten flags or ten thousand; the audit chain is
  verified in the background (:class:`AuditChecker`), never while a page waits on it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ragwall.ingest.registry import JobRecord, RunRecord
from ragwall.payload import LIVE, Key, hidden_flag
from ragwall.retrieval.store import Filter, Match, Range
from ragwall.service.audit import AuditLog, VerifyReport
from ragwall.service.jobs import JobRunner
from ragwall.service.runtime import Runtime
from ragwall.service.sources import Sources, SourceSummary

FlagKind = Literal["injection", "hidden"]
FLAG_KINDS: tuple[str, ...] = ("injection", "hidden")
#: The payload fields a flagged-chunk row shows (the text and the detectors' findings).
FLAG_FIELDS: tuple[str, ...] = (
    Key.TEXT,
    Key.SOURCE_ID,
    Key.DOC_SHA256,
    "doc_name",
    Key.DOC_URI,
    "ingested_at",
    Key.TRUST,
    Key.INJECTION_SCORE,
    Key.INJECTION_REASONS,
    Key.INJECTION_SPAN,
    Key.HIDDEN_TEXT,
    Key.HIDDEN_REASONS,
)


@dataclass(frozen=True)
class SourceRow:
    """A source as the console lists it: what it holds, its last run and that run's failures."""

    summary: SourceSummary
    quarantined: bool
    last_run: RunRecord | None

    @property
    def failures(self) -> list[dict[str, Any]]:
        return list((self.last_run.summary or {}).get("failed", [])) if self.last_run else []

    @property
    def sync_problem(self) -> str | None:
        """Why its syncing needs a look: its last sync failed, or it is overdue."""
        sync = self.summary.sync
        if sync.last_sync_ok is False:
            return f"last sync failed: {sync.last_failure_reason}"
        late = sync.overdue_s(datetime.now(UTC))
        return f"sync overdue by {int(late)} s" if late is not None else None


@dataclass(frozen=True)
class FlaggedChunk:
    """One flagged chunk; ``before``/``span``/``after`` split its text at the flagged span."""

    id: str
    source_id: str
    doc_sha256: str
    doc_name: str
    ingested_at: str
    trust: float
    injection_score: float
    reasons: list[str]
    before: str
    span: str
    after: str
    document_quarantined: bool


@dataclass(frozen=True)
class FlaggedPage:
    kind: str
    items: list[FlaggedChunk]
    total: int  # flagged chunks in all (a filtered count)
    next_offset: str | None


@dataclass(frozen=True)
class AuditStatus:
    """The latest verification of the audit chain (``ok`` None: none finished yet) and the age
    of the newest record, read now."""

    ok: bool | None
    records: int
    problems: list[str]
    warnings: list[str]
    checked_at: str | None
    verifying: bool
    head_time: str | None
    head_age_s: float | None


class Views:
    """What each console page shows.

    Parameters:
        rt: the runtime (registry, index, settings).
        jobs: the runner (live progress of running jobs, report folders).
        sources: the source operations (a source's counts).
    """

    def __init__(self, rt: Runtime, jobs: JobRunner, sources: Sources) -> None:
        self.rt = rt
        self.runner = jobs
        self.source_ops = sources
        self._checker: AuditChecker | None = None
        self._checker_lock = threading.Lock()

    def audit_status(self) -> AuditStatus:
        """The audit chain's verification, re-run in the background at most once a minute."""
        with self._checker_lock:
            if self._checker is None:
                self._checker = AuditChecker(self.rt.audit)
        return self._checker.status()

    def source_rows(self) -> list[SourceRow]:
        """Every source with its counts in the active version, quarantine and last ingest run into
        the active version (a reindex build's runs show once that version is active); sources
        whose sync failed or is overdue come first."""
        blocked, _ = self.rt.registry.quarantined()
        active = self.rt.registry.active_version()
        runs = self.rt.registry.last_runs(version=active.id if active else 1)
        rows = [
            SourceRow(s, s.source.id in blocked, runs.get(s.source.id))
            for s in self.source_ops.list_sources()
        ]
        return sorted(rows, key=lambda r: r.sync_problem is None)  # failing or overdue first

    def latest_reindex(self) -> JobRecord | None:
        """The newest reindex job, with its live progress when it runs (the index page's bar)."""
        recent = self.rt.registry.recent_jobs(1, ("reindex",))
        return self.runner.live(recent[0]) if recent else None

    def recent_jobs(self, limit: int = 50, kinds: tuple[str, ...] = ()) -> list[JobRecord]:
        """The newest jobs (of ``kinds``, when given), newest first, running ones with their
        live progress."""
        return [self.runner.live(j) for j in self.rt.registry.recent_jobs(limit, kinds)]

    def has_report(self, job: JobRecord) -> bool:
        return (self.runner.reports_dir(job.id) / "report.html").is_file()

    def drift_jobs(self, limit: int = 50) -> list[tuple[JobRecord, bool]]:
        """Drift jobs and gated reindexes, newest first, each with whether its report exists."""
        found = self.rt.registry.recent_jobs(limit * 4, ("drift", "reindex"))
        gated = [j for j in found if j.kind == "drift" or j.params.get("gate") is not None]
        return [(self.runner.live(j), self.has_report(j)) for j in gated[:limit]]

    def flag_filter(self, kind: str, source_id: str | None = None) -> Filter:
        """Live chunks the injection detector scored at or above the threshold, or (``hidden``)
        that carry hidden text (``hidden_text`` is stored as 0/1, which both engines match,
        whatever the chunk's trust). Of one source when given."""
        if kind not in FLAG_KINDS:
            raise ValueError(f"kind must be one of {FLAG_KINDS}, not {kind!r}")
        must: tuple = (Match(Key.STATE, LIVE),)
        if kind == "injection":
            must += (Range(Key.INJECTION_SCORE, gte=self.rt.settings.injection_threshold),)
        else:
            must += (Match(Key.HIDDEN_TEXT, hidden_flag(True)),)
        if source_id:
            must += (Match(Key.SOURCE_ID, source_id),)
        return Filter(must=must)

    def flagged(
        self,
        kind: str = "injection",
        offset: str | None = None,
        limit: int = 50,
        source_id: str | None = None,
    ) -> FlaggedPage:
        """One page of flagged chunks of the active version (in point-id order; ``offset`` is the
        previous page's ``next_offset``), and how many there are in all."""
        flt = self.flag_filter(kind, source_id)
        _, blocked_docs = self.rt.registry.quarantined()
        blocked = set(blocked_docs)
        with self.rt.index.lease() as active:
            hits, next_offset = active.store.scroll(flt, limit, offset, with_payload=FLAG_FIELDS)
            total = active.store.count(flt)
        items = []
        for h in hits:
            p = h.payload
            text = str(p.get(Key.TEXT, ""))
            start, end = (
                _span(p.get(Key.INJECTION_SPAN), len(text)) if kind == "injection" else (0, 0)
            )
            reasons = (
                p.get(Key.INJECTION_REASONS if kind == "injection" else Key.HIDDEN_REASONS) or []
            )
            sha = str(p.get(Key.DOC_SHA256, ""))
            items.append(
                FlaggedChunk(
                    id=h.id,
                    source_id=str(p.get(Key.SOURCE_ID, "")),
                    doc_sha256=sha,
                    doc_name=str(p.get("doc_name") or p.get(Key.DOC_URI, "")),
                    ingested_at=str(p.get("ingested_at", "")),
                    trust=float(p.get(Key.TRUST, 0.0)),
                    injection_score=float(p.get(Key.INJECTION_SCORE, 0.0)),
                    reasons=[str(r) for r in reasons],
                    before=text[:start],
                    span=text[start:end],
                    after=text[end:],
                    document_quarantined=sha in blocked,
                )
            )
        return FlaggedPage(kind, items, total, next_offset)


def _span(span: Any, length: int) -> tuple[int, int]:
    """A stored ``[start, end)`` clamped to the text; (0, 0) when there is none."""
    try:
        start, end = int(span[0]), int(span[1])
    except (TypeError, ValueError, IndexError):
        return 0, 0
    start = max(0, min(start, length))
    return start, max(start, min(end, length))


class AuditChecker:
    """Verifies an audit chain in a background thread, at most once per ``max_age_s``.

    Verifying reads the whole log (about 5 s per 100,000 records on the development box), so a
    page never waits for it longer than ``wait_s``: it shows the latest finished verification,
    and says when one is running."""

    def __init__(self, audit: AuditLog, max_age_s: float = 60.0, wait_s: float = 0.1) -> None:
        self.audit, self.max_age_s, self.wait_s = audit, max_age_s, wait_s
        self._lock = threading.Lock()
        self._report: VerifyReport | None = None
        self._checked_at: datetime | None = None
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        report = self.audit.verify()
        with self._lock:
            self._report, self._checked_at = report, datetime.now(UTC)

    def status(self) -> AuditStatus:
        with self._lock:
            now = datetime.now(UTC)
            stale = self._checked_at is None or (
                (now - self._checked_at).total_seconds() > self.max_age_s
            )
            if stale and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name="audit-verify", daemon=True)
                self._thread.start()
            thread = self._thread
        if thread is not None and stale:
            thread.join(self.wait_s)
        with self._lock:
            report, at = self._report, self._checked_at
            running = self._thread is not None and self._thread.is_alive()
        head = self.audit.head_time()
        return AuditStatus(
            ok=report.ok if report else None,
            records=report.records if report else 0,
            problems=report.problems if report else [],
            warnings=report.warnings if report else [],
            checked_at=at.isoformat() if at else None,
            verifying=running,
            head_time=head.isoformat() if head else None,
            head_age_s=self.audit.head_age_s(),
        )
