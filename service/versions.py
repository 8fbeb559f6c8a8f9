"""Index versions: what there is, and the switch between them (activate, rollback).

Invariants:

- **A switch is one registry change plus one handle swap** (``ActiveIndex.switch``), under the
  exclusive write lock, so no ingest writes to the version being retired; requests in flight
  finish on the old version.
- **No switch while a reindex or drift job runs** (``SwitchRefused``, naming the job).
- **Only a ready version can be activated**; a rollback passes over versions a drift gate
  rejected when another ready one is there.
- Every switch is audited (``index.switch``, with the reason) and followed by retention.
- :meth:`Versions.index_info` is a registry read: it works beside a running server.
"""

from __future__ import annotations

from typing import Any

from ragwall.errors import InvalidRequest, SwitchRefused, VersionNotFound
from ragwall.service.index import (
    describe,
    ensure_registry,
    environment_changes,
    gate_rejected,
    parse_version,
    version_name,
)
from ragwall.service.jobs import JobRunner
from ragwall.service.runtime import Runtime
from ragwall.service.upkeep import BuildContext, enforce_retention


class Versions:
    """Version listing and switching."""

    def __init__(self, rt: Runtime, jobs: JobRunner) -> None:
        self.rt = rt
        self.jobs = jobs

    def index_info(self) -> dict[str, Any]:
        """The active version and every version the registry knows (newest first), with what
        the environment would change at the next reindex."""
        active = ensure_registry(self.rt.settings, self.rt.registry)  # works beside a server
        return {
            "active": version_name(active.id),
            "versions": [
                describe(v, self.rt.registry.version_counts(version=v.id))
                for v in reversed(self.rt.registry.versions())
            ],
            "pending_changes": sorted(environment_changes(self.rt.settings, active)),
            "running_job": self.jobs.running(),
        }

    def activate(self, actor: str, version: str | int, *, reason: str = "activate") -> dict:
        """Make a ready version the active one (one switch, no rebuild); returns
        ``{"active", "previous"}``. Refused while a reindex runs."""
        try:
            number = parse_version(version)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        record = self.rt.registry.get_version(number)
        if record is None:
            raise VersionNotFound(f"no index version {version_name(number)}; see GET /v1/index")
        busy = self.jobs.running()
        if busy:
            raise SwitchRefused(
                f"job {busy} (a reindex or a drift eval) is running; switch versions after it ends",
                job_id=busy,
            )
        active = self.rt.index.ensure_registry()
        if record.id == active.id:
            return {"active": version_name(record.id), "previous": version_name(record.id)}
        if record.state != "ready":
            raise SwitchRefused(
                f"version {version_name(number)} is {record.state}; only a ready version can be "
                "activated"
            )

        def commit() -> None:
            self.rt.stores.point_alias(record.location)
            self.rt.registry.activate(number)

        with self.rt.writes.exclusive():  # no ingest is writing to the version being retired
            self.rt.index.switch(record, commit)
        enforce_retention(BuildContext.of(self.rt), self.rt.settings.keep_versions)
        self.rt.audit.append(
            "index.switch",
            actor,
            version=version_name(number),
            previous=version_name(active.id),
            reason=reason,
        )
        return {"active": version_name(number), "previous": version_name(active.id)}

    def rollback(self, actor: str) -> dict:
        """Activate the newest ready version older than the active one (instant, no rebuild),
        passing over versions a drift gate rejected when another is there."""
        active = self.rt.index.ensure_registry()
        older = [v for v in self.rt.registry.versions() if v.state == "ready" and v.id < active.id]
        # The previous good version, not one that a drift gate kept from being activated.
        older = [v for v in older if not gate_rejected(v)] or older
        if not older:
            raise SwitchRefused(
                f"no ready version older than {version_name(active.id)} to roll back to "
                "(RAGWALL_KEEP_VERSIONS keeps how many)"
            )
        return self.activate(actor, older[-1].id, reason="rollback")
