"""Health: what ``/metrics`` reads at each scrape, and readiness.

Invariant: a scrape reads the registry (SQLite) and the runner's in-process progress only; it
never opens the store or loads a model. Readiness does both, on purpose: the index answers and
the embedding model is loaded, or it raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ragwall.service.jobs import JobRunner
from ragwall.service.runtime import Runtime
from ragwall.service.syncs import SyncState
from ragwall.telemetry import StateReading


class Health:
    """Readings of the runtime and the job runner."""

    def __init__(self, rt: Runtime, jobs: JobRunner) -> None:
        self.rt = rt
        self.jobs = jobs

    def reading(self) -> StateReading:
        """The index, job and audit figures ``/metrics`` reads at each scrape."""
        registry = self.rt.registry
        active = registry.active_version()
        versions: dict[int, tuple[int, int]] = {}
        for v in registry.versions():
            if v.state in ("active", "ready", "building"):
                counts = registry.version_counts(version=v.id).values()
                versions[v.id] = (sum(c[0] for c in counts), sum(c[1] for c in counts))
        return StateReading(
            active_version=active.id if active else None,
            versions=versions,
            running_jobs=self.jobs.running_progress(),
            audit_records=self.rt.audit.records,
            audit_head_age_s=self.rt.audit.head_age_s(),
            source_sync_age_s=_sync_ages(self.rt.syncs.all().values()),
        )

    def readiness(self) -> dict[str, Any]:
        """The index answers and the embedding model is loaded (raises when not)."""
        with self.rt.index.lease() as active:
            return {
                "points": active.store.count(),
                "embedding_dim": active.encoder.dim,
                "index_version": active.name,
            }


def _sync_ages(states: Iterable[SyncState]) -> dict[str, float]:
    """Seconds since each scheduled source's last successful sync (never synced: left out)."""
    now = datetime.now(UTC)
    ages = {s.source_id: s.age_s(now) for s in states if s.refresh_s is not None}
    return {k: v for k, v in ages.items() if v is not None}
