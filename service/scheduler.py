"""The sync scheduler: runs each source's due syncs, as ingest jobs, while the server runs.

Invariants:

- **A sync is an ordinary ingest job** (``ragwall.service.ingest_jobs``) started by the actor
  ``scheduler``: visible in ``/v1/jobs`` and the console, audited, cancellable, and never beside
  another ingest of its source (the source's ingest lock: a due source that a manual ingest
  holds is skipped and tried again at the next tick, without counting as an attempt).
- **One thread, one tick at a time**: every ``RAGWALL_SCHEDULER_TICK_S`` it reads the schedule
  from the registry (``ragwall.service.syncs``: the next sync is due one refresh after the last
  attempt) and starts what is due. Nothing is kept in memory between ticks, so a restart resumes
  the schedule where the rows say.
- Only ``ragwall serve`` runs it (the app's lifespan); a command-line process never does.
- Stopping it waits for the tick in progress; the jobs it started are the runner's to cancel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from ragwall.errors import RagwallError, SourceBusy, SourceNotFound
from ragwall.service.syncs import SyncStore

log = logging.getLogger("ragwall.service.scheduler")

ACTOR = "scheduler"


class SyncScheduler:
    """Starts due syncs.

    Parameters:
        syncs: the schedule and the syncs' outcomes.
        start: starts a source's sync as an ingest job (raises ``SourceBusy`` while the source
            is being ingested).
        tick_s: seconds between two reads of the schedule.
    """

    def __init__(self, syncs: SyncStore, start: Callable[[str], object], tick_s: float) -> None:
        self.syncs, self.start_sync, self.tick_s = syncs, start, tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ragwall-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def tick(self, now: datetime | None = None) -> list[str]:
        """Start every due sync; returns the sources started."""
        now = now or datetime.now(UTC)
        started = []
        for source_id, state in self.syncs.all().items():
            if self._stop.is_set():
                break
            if not state.due(now):
                continue
            try:
                self.start_sync(source_id)
            except SourceBusy:
                continue  # a manual ingest (or the last sync) holds it: next tick
            except SourceNotFound:
                self.syncs.forget(source_id)  # removed meanwhile
                continue
            except RagwallError as exc:
                log.warning("could not start the sync of %s: %s", source_id, exc)
                self.syncs.attempted(source_id, now)  # tried: the next try is a refresh away
                continue
            # Counted as an attempt now, not only when the ingest begins, so a job that fails
            # before it does (a store that cannot open) is retried a refresh later, not at once.
            self.syncs.attempted(source_id, now)
            started.append(source_id)
        return started

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception:  # a bug or a closed store: logged, and the next tick tries again
                log.exception("the sync scheduler's tick failed")
