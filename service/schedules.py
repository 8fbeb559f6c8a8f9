"""Sources' sync schedules: set them (audited), read them with their last outcome, and the
scheduler that runs them in a server (``ragwall.service.scheduler``, ``ragwall.service.syncs``).

Invariant: a schedule change is one audit record (``source.schedule``) naming the actor and the
new values; it takes effect at the scheduler's next tick (the next sync is due one refresh after
the last attempt).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from ragwall.errors import InvalidRequest
from ragwall.ingest.sources import Source
from ragwall.service.runtime import Runtime
from ragwall.service.scheduler import SyncScheduler
from ragwall.service.syncs import MAX_SCHEDULE_S, SyncState

FIELDS = ("refresh_s", "stale_after_s")


class Schedules:
    """Schedule operations over the runtime's registry, sync store and audit log, and the
    scheduler that runs them.

    Parameters:
        rt: the runtime.
        start_sync: starts a source's sync as an ingest job (``SourceBusy`` while it runs).
    """

    def __init__(self, rt: Runtime, start_sync: Callable[[str], object]) -> None:
        self.rt = rt
        self._scheduler = SyncScheduler(rt.syncs, start_sync, rt.settings.scheduler_tick_s)

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        self._scheduler.stop()

    def set(
        self, actor: str, source_id: str, changes: Mapping[str, int | None]
    ) -> tuple[Source, SyncState]:
        """Change a source's ``refresh_s`` and/or ``stale_after_s`` (``None``: none; a field
        ``changes`` leaves out stays); audited. Returns the source and its new state."""
        source = self.rt.registry.get_source(source_id)  # SourceNotFound
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise InvalidRequest(f"a schedule has {list(FIELDS)}, not {sorted(unknown)}")
        for name, value in changes.items():
            if value is not None and not (isinstance(value, int) and 1 <= value <= MAX_SCHEDULE_S):
                raise InvalidRequest(f"{name} must be 1 s to 3650 d, not {value!r}")
        current = self.rt.syncs.get(source_id)
        new = dataclasses.replace(current, **changes)
        self.rt.syncs.set_schedule(source_id, new.refresh_s, new.stale_after_s)
        self.rt.audit.append(
            "source.schedule",
            actor,
            source_id=source_id,
            refresh_s=new.refresh_s,
            stale_after_s=new.stale_after_s,
        )
        return source, self.rt.syncs.get(source_id)

    def states(self) -> dict[str, SyncState]:
        """Every source's schedule and last sync (a source never synced and unscheduled is
        absent)."""
        return self.rt.syncs.all()
