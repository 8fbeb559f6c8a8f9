"""Sources and what they hold: register, ingest, remove, quarantine.

Invariants:

- **Every change is audited once**, after it took effect, under the caller's ``actor``:
  ``source.add``, ``source.remove``, ``source.ingest`` (one per ingest, whatever its end:
  :func:`audit_ingest`), ``source.quarantine`` / ``document.quarantine`` and their releases.
- **One ingest of a source at a time, across threads and processes**: a file lock per source in
  the data dir (:meth:`Sources.claim_source`); ingests write under the runtime's shared write
  lock, so a reindex's replay waits for them and they wait for it.
- **A removed source stays removed**: its chunks go from every ready version too, so a rollback
  does not bring it back.
- **Quarantine takes effect on the next retrieve**: it is a registry row that every access
  filter reads; a source must exist to be quarantined, a document is named by its sha256.
- A source's folder must lie within ``RAGWALL_SOURCE_ROOTS`` when roots are set, and a web
  source's host must be one of ``RAGWALL_WEB_HOSTS`` when hosts are set (checked again at each
  sync, so narrowing the setting stops a source at once).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from filelock import FileLock, Timeout

from ragwall.errors import (
    InvalidRequest,
    JobCancelled,
    MassRemoval,
    RagwallError,
    SourceBusy,
    SourceExists,
    SourceOutsideRoots,
)
from ragwall.ingest.pipeline import IngestReport
from ragwall.ingest.sources import Source, iter_source_files, make_source, source_base
from ragwall.ingest.web import check_web_host
from ragwall.payload import Key
from ragwall.retrieval.store import Filter, Match
from ragwall.service.audit import AuditLog
from ragwall.service.runtime import Runtime
from ragwall.service.syncs import MAX_SCHEDULE_S, SyncState
from ragwall.settings import within_roots
from ragwall.telemetry import Metrics, event

log = logging.getLogger("ragwall.service")

_SHA256 = re.compile(r"[0-9a-f]{64}")
QUARANTINE_KINDS: tuple[str, ...] = ("source", "document")


@dataclass(frozen=True)
class SourceSummary:
    """A registered source with what it holds now."""

    source: Source
    documents: int
    chunks: int
    sync: SyncState = field(default_factory=lambda: SyncState(""))  # schedule and last sync


class SourceOptions(TypedDict, total=False):
    """:meth:`Sources.add_source`'s keyword options (documented there)."""

    exist_ok: bool
    refresh_s: int | None
    stale_after_s: int | None
    kind: str | None
    max_pages: int | None


class Sources:
    """Source operations.

    Parameters:
        rt: the runtime (registry, index, stores, audit, write lock, settings).
        metrics: where ingests and quarantine changes are counted.
    """

    def __init__(self, rt: Runtime, metrics: Metrics) -> None:
        self.rt = rt
        self.metrics = metrics

    def add_source(
        self,
        actor: str,
        source_id: str,
        path: str,
        trust: str = "internal",
        groups: Sequence[str] = (),
        *,
        exist_ok: bool = False,
        refresh_s: int | None = None,
        stale_after_s: int | None = None,
        kind: str | None = None,
        max_pages: int | None = None,
    ) -> Source:
        """Register a source.

        Parameters:
            actor: who asks, for the audit record (an API key id, ``cli:<user>``).
            source_id: a short id (letters, digits, ``-``, ``_``).
            path: a folder, or a glob such as ``docs/**/*.md``.
            trust: the trust tier: ``verified``, ``internal``, ``external`` or ``untrusted``.
            groups: the access groups whose keys may see the source's chunks. A source with no
                groups is seen only by keys without groups (unrestricted keys): a group-bound
                key never sees it.
            exist_ok: an identical registration succeeds without a change (and without an audit
                record: nothing happened); a different one still raises :class:`SourceExists`.
            refresh_s, stale_after_s: its sync schedule (``ragwall.service.syncs``), if any.
            kind: ``folder``, ``glob`` or ``web``, checked against ``path`` (default: what
                ``path`` is; an ``http(s)`` URL is a web source's sitemap or list of URLs).
            max_pages: a web source's page cap per sync (default ``RAGWALL_WEB_MAX_PAGES``).
        """
        for name, value in (("refresh", refresh_s), ("stale_after", stale_after_s)):
            if value is not None and not (isinstance(value, int) and 1 <= value <= MAX_SCHEDULE_S):
                raise InvalidRequest(f"{name} must be 1 s to 3650 d, not {value!r}")
        source = make_source(source_id, path, trust, list(groups), kind, max_pages)
        roots = self.rt.settings.source_root_paths()
        if source.kind == "web":
            check_web_host(source, self.rt.settings.web_hosts)
        elif roots and not within_roots(source_base(source), roots):
            raise SourceOutsideRoots(
                f"{path!r} is outside the allowed source roots "
                f"({', '.join(str(r) for r in roots)}); set RAGWALL_SOURCE_ROOTS to allow it"
            )
        try:
            self.rt.registry.add_source(source)
        except SourceExists:
            existing = self.rt.registry.get_source(source_id)
            if exist_ok and _same_source(existing, source):
                return existing
            raise
        if refresh_s is not None or stale_after_s is not None:
            self.rt.syncs.set_schedule(source.id, refresh_s, stale_after_s)
        self.rt.audit.append(
            "source.add",
            actor,
            source=source.model_dump(),
            refresh_s=refresh_s,
            stale_after_s=stale_after_s,
        )
        return source

    def list_sources(self) -> list[SourceSummary]:
        """The sources with what the active version holds of each (a registry read: it needs
        neither the model nor the index, so it works beside a running server)."""
        active = self.rt.registry.active_version()
        counts = self.rt.registry.version_counts(version=active.id if active else 1)
        syncs = self.rt.syncs.all()
        return [
            SourceSummary(s, *counts.get(s.id, (0, 0)), syncs.get(s.id) or SyncState(s.id))
            for s in self.rt.registry.list_sources()
        ]

    def remove_source(self, actor: str, source_id: str) -> int:
        """Delete a source and every chunk it contributed; returns how many chunks went.

        Raises :class:`SourceNotFound` for an unknown source, :class:`SourceBusy` while it is
        being ingested (the ingest's lock, across processes)."""
        self.rt.registry.get_source(source_id)  # SourceNotFound before the store is opened
        with self._ingest_lock(source_id), self.rt.writes.shared(), self.rt.index.lease() as active:
            others = [
                v
                for v in self.rt.registry.versions()
                if v.state == "ready" and v.id != active.version
            ]
            n = active.ingester.remove_source(source_id)
        # A rollback must not bring a removed source back: drop it from the other versions too.
        for record in others:
            try:
                store = self.rt.stores.open(record.location, active.encoder.dim)
            except RagwallError as exc:
                log.warning("could not remove %s from version %s: %s", source_id, record.id, exc)
                continue
            try:
                store.delete(Filter(must=(Match(Key.SOURCE_ID, source_id),)))
                store.flush()
            finally:
                store.close()
        self.rt.syncs.forget(source_id)
        self.rt.audit.append("source.remove", actor, source_id=source_id, chunks=n)
        return n

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
        """Ingest a source into the active index version (idempotent, incremental); with
        ``paths``, just those files into it. Background ingests are jobs: :meth:`start_ingest`.
        A full sync that would remove a mass of the source's documents changes nothing and
        raises ``MassRemoval`` (``ragwall.ingest.pipeline``), unless ``allow_mass_removal``.

        ``progress(stage, done, total)`` is called as documents complete. A document that fails
        is reported in the result's ``failed`` and leaves the index as it was for that document.
        ``force`` re-processes documents whose bytes are unchanged (after a parser or detector
        change for this source), each with the usual pending→live swap. ``cancel``, once set,
        stops the run (its parser workers killed, its pending chunks cleared) with
        ``IngestCancelled``. ``claimed``: the caller holds the source (:meth:`claim_source`), as
        an ingest job does from the moment it is accepted. Whatever its end (done, failed,
        cancelled) the ingest appends one ``source.ingest`` record with its ``outcome``.
        """
        source = self.rt.registry.get_source(source_id)
        held = nullcontext() if claimed else self._ingest_lock(source_id)
        sync = paths is None  # a full ingest is a sync (ragwall.service.syncs)
        with held, self.rt.writes.shared(), self.rt.index.lease() as active:
            if sync:
                self.rt.syncs.attempted(source_id, datetime.now(UTC))
            try:
                report = active.ingester.ingest(
                    source,
                    paths=paths,
                    progress=progress,
                    force=force,
                    cancel=cancel,
                    allow_mass_removal=allow_mass_removal,
                )
            except BaseException as exc:
                if sync:
                    self.rt.syncs.finished(
                        source_id, datetime.now(UTC), False, _sync_reason(exc), str(exc)
                    )
                self.metrics.ingest({}, ok=False)
                event(log, "ingest failed", logging.WARNING, source_id=source_id, error=str(exc))
                audit_ingest(
                    self.rt.audit, actor, source_id, active.name, force, paths, job_id, exc
                )
                raise
        if sync:
            self.rt.syncs.finished(source_id, datetime.now(UTC), True)
        summary = report.summary()
        self.metrics.ingest(summary, ok=True)
        event(
            log,
            "ingest finished",
            source_id=source_id,
            run_id=report.run_id,
            index_version=active.name,
            **{k: summary[k] for k in ("documents", "chunks", "unchanged", "removed")},
            failed=len(report.failed),
        )
        audit_ingest(self.rt.audit, actor, source_id, active.name, force, paths, job_id, report)
        return report

    def claim_source(self, source_id: str) -> Callable[[], None]:
        """Take the source's ingest lock (one ingest of a source at a time, across threads and
        processes: a file lock in the data dir); returns how to let it go. Raises
        :class:`SourceBusy`, naming the running run, when it is taken."""
        folder = self.rt.settings.locks_dir
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder / f"ingest-{source_id}.lock"), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            run = self.rt.registry.running_run(source_id)
            raise SourceBusy(
                f"source {source_id!r} is being ingested now (run {run or 'unknown'}); wait for "
                "it to finish, then ingest again if needed",
                run_id=run,
            ) from None
        return lock.release

    @contextmanager
    def _ingest_lock(self, source_id: str) -> Iterator[None]:
        """:meth:`claim_source` for the duration of the block."""
        release = self.claim_source(source_id)
        try:
            yield
        finally:
            release()

    def files_under(self, source_id: str, target: Path) -> list[Path]:
        """The files a one-off ingest of ``target`` (a file or a folder) into a source reads."""
        src = self.rt.registry.get_source(source_id)
        if target.is_dir():
            folder = Source(
                id=src.id, kind="folder", location=str(target.resolve()), trust_tier=src.trust_tier
            )
            return list(iter_source_files(folder))
        if target.exists():
            return [target]
        raise InvalidRequest(f"{str(target)!r} does not exist: give a file or a folder")

    def set_quarantine(self, actor: str, kind: str, value: str, on: bool, reason: str = "") -> bool:
        """Quarantine (``on``) or release a source or a document; returns whether it changed.

        A source must exist to be quarantined (it may be released after removal); a document
        is named by the sha256 of its bytes.
        """
        if kind not in QUARANTINE_KINDS:
            raise InvalidRequest(f"kind must be one of {QUARANTINE_KINDS}, not {kind!r}")
        if kind == "document" and not _SHA256.fullmatch(value):
            raise InvalidRequest("a document is named by its sha256: 64 lowercase hex digits")
        if kind == "source" and on:
            self.rt.registry.get_source(value)
        if on:
            changed = self.rt.registry.quarantine(
                kind, value, reason, datetime.now(UTC).isoformat()
            )
        else:
            changed = self.rt.registry.release(kind, value)
        if changed:
            self.metrics.quarantine.labels(kind, "quarantine" if on else "release").inc()
        self.rt.audit.append(
            f"{kind}.{'quarantine' if on else 'release'}",
            actor,
            **{"source_id" if kind == "source" else "doc_sha256": value},
            reason=reason,
            changed=changed,
        )
        return changed

    def quarantine_list(self) -> list[dict[str, str]]:
        return self.rt.registry.quarantine_list()


def audit_ingest(
    audit: AuditLog,
    actor: str,
    source_id: str,
    index_version: str,
    force: bool,
    paths: Iterable[Path] | None,
    job_id: str | None,
    end: IngestReport | BaseException,
) -> None:
    """The one ``source.ingest`` record of an ingest, whatever its ``end`` (its report, or what
    it raised): ``outcome`` ``succeeded`` (with its summary), ``cancelled`` (with what it had
    done) or ``failed`` (with the error)."""
    report = end if isinstance(end, IngestReport) else getattr(end, "report", None)
    if isinstance(end, IngestReport):
        outcome, error = "succeeded", None
    elif isinstance(end, JobCancelled):
        outcome, error = "cancelled", None
    else:
        outcome = "failed"
        error = str(end) if isinstance(end, RagwallError) else f"{type(end).__name__}: {end}"
    fields: dict[str, Any] = {}
    if isinstance(end, MassRemoval):  # refused whole: nothing changed
        fields = {"reason": "mass_removal", "would_remove": end.would_remove, "live": end.live}
    if isinstance(report, IngestReport):
        summary = report.summary()
        fields = {
            "run_id": report.run_id,
            "summary": {k: v for k, v in summary.items() if not isinstance(v, list)},
            "failed": len(report.failed),
            "skipped": len(report.skipped),
            "notes": len(report.notes),
        }
    audit.append(
        "source.ingest",
        actor,
        source_id=source_id,
        outcome=outcome,
        **({"job_id": job_id} if job_id else {}),
        index_version=index_version,
        force=force,
        paths=None if paths is None else "explicit",
        **fields,
        **({"error": error[:500]} if error else {}),
    )


def _sync_reason(exc: BaseException) -> str:
    if isinstance(exc, MassRemoval):
        return "mass_removal"
    return "cancelled" if isinstance(exc, JobCancelled) else "error"


def _same_source(a: Source, b: Source) -> bool:
    fields = ("kind", "location", "trust_tier", "groups", "max_pages")
    return all(getattr(a, f) == getattr(b, f) for f in fields)
