"""Keeping the registry true to the data: retention of old versions, and recovery from jobs
whose process died.

Invariants:

- **Retention** keeps the newest ``RAGWALL_KEEP_VERSIONS`` versions that can serve (the active
  one included; a version its drift gate rejected is retired before any other) and deletes the
  rest's data before marking them ``retired``.
- **Recovery**: a job whose file lock is free is dead (its process is gone): it is marked
  ``failed`` with what it left behind, and a ``building`` version without a live job has its
  data deleted and is marked ``failed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import Timeout

from ragwall.ingest.registry import Registry
from ragwall.retrieval.backends import Stores
from ragwall.service.index import ActiveIndex, gate_rejected
from ragwall.service.jobs import job_lock
from ragwall.service.runtime import Runtime
from ragwall.settings import Settings


@dataclass
class BuildContext:
    """What a build needs from the service."""

    settings: Settings  # the environment's
    registry: Registry
    stores: Stores
    active: ActiveIndex
    write_lock: Any  # the service's ingest/replay lock (``exclusive()`` context)
    locks_dir: Path

    @classmethod
    def of(cls, rt: Runtime) -> BuildContext:
        """The runtime's parts a build uses (opens the index)."""
        return cls(rt.settings, rt.registry, rt.stores, rt.index, rt.writes, rt.settings.locks_dir)


#: What an interrupted job left, by kind, for its error message.
_INTERRUPTED = {
    "reindex": "the active version was not changed. Start a new reindex.",
    "ingest": "documents it had not switched live were left as they were; the next ingest of "
    "the source clears its pending chunks. Ingest again.",
}


def recover(ctx: BuildContext) -> list[str]:
    """Mark jobs whose process died ``failed`` and delete their unfinished versions' data.
    Returns the ids of the jobs marked failed."""
    now = datetime.now(UTC).isoformat()
    dead = []
    for job in ctx.registry.unfinished_jobs():
        lock = job_lock(ctx.locks_dir, job.id)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # alive in another thread or process
        try:
            ctx.registry.update_job(
                job.id,
                state="failed",
                finished_at=now,
                error="interrupted: the process running the job stopped (crash or kill); "
                + _INTERRUPTED.get(job.kind, "start it again."),
            )
            dead.append(job.id)
        finally:
            lock.release()
    live_jobs = {j.id for j in ctx.registry.unfinished_jobs()}
    for record in ctx.registry.versions():
        if record.state == "building" and record.job_id not in live_jobs:
            ctx.stores.drop(record.location)
            ctx.registry.drop_documents(version=record.id)
            ctx.registry.set_version_state(
                record.id, "failed", now, "interrupted while building; its data was deleted"
            )
    return dead


def enforce_retention(ctx: BuildContext, keep: int) -> list[int]:
    """Keep the newest ``keep`` versions that can serve (active included; a version its gate
    rejected is retired before any other); delete the rest's data and mark them ``retired``.
    Returns the versions retired."""
    servable = [v for v in ctx.registry.versions() if v.state in ("active", "ready")]
    active = [v for v in servable if v.state == "active"]
    # A version whose gate rejected it goes first; among the rest, the oldest.
    ready = sorted(
        (v for v in servable if v.state == "ready"),
        key=lambda v: (not gate_rejected(v), v.id),
        reverse=True,
    )
    retire = ready[max(keep - len(active), 0) :]
    now = datetime.now(UTC).isoformat()
    for record in retire:
        ctx.stores.drop(record.location)
        ctx.registry.drop_documents(version=record.id)
        ctx.registry.set_version_state(record.id, "retired", now)
    return [r.id for r in retire]
