"""Prometheus metrics: one registry per service, scraped at ``GET /metrics``.

Conventions (and the invariant every instrument here keeps): names start with ``ragwall_``,
durations are in seconds and sizes in bytes, counters end in ``_total``, and every label takes
values from a small fixed set (a route template, a status code, a stage, a flag kind, a job
kind, an index version number kept by retention). A query, a key, a path with an id in it or a
source id is never a label. Two exceptions, bounded by what admins create: the sync-age gauge is
labelled by source id (scheduled sources only), and the 429 counter by API key id (never by workflow or identity-provider subject, which callers choose:
those count under ``oidc``).

Counters and histograms are updated as things happen; the index, job and audit gauges are read
from the service at scrape time by :class:`StateCollector`, so they are never stale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("ragwall.telemetry")

CONTENT_TYPE = CONTENT_TYPE_LATEST

# The text format's ``*_created`` series double every counter and histogram and are read by
# nothing Ragwall's users run (Prometheus ignores them in the text format): leave them out.
disable_created_metrics()

#: Request latencies: from a fast retrieve (a few ms) to a synchronous ingest (many seconds).
REQUEST_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Retrieve stages: sub-millisecond (audit append) to a reranker's hundreds of ms.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
JOB_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)


@dataclass(frozen=True)
class StateReading:
    """What the service reports at scrape time (see :class:`StateCollector`)."""

    active_version: int | None
    #: ``{version: (documents, chunks)}`` of the versions the registry keeps
    versions: dict[int, tuple[int, int]]
    #: running jobs: ``(kind, documents_done, documents_total)``
    running_jobs: list[tuple[str, int, int]]
    audit_records: int
    audit_head_age_s: float | None
    #: ``{source id: seconds since its last successful sync}`` of the scheduled sources
    source_sync_age_s: dict[str, float] = field(default_factory=dict)


class StateCollector(Collector):
    """Index, job and audit gauges, read through ``read`` when Prometheus scrapes."""

    def __init__(self, read: Callable[[], StateReading]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        try:
            r = self.read()
        except Exception:  # a scrape must not fail because the index is briefly unavailable
            log.warning("metrics: reading the service state failed", exc_info=True)
            return
        active = GaugeMetricFamily(
            "ragwall_index_active_version", "The number of the index version serving reads."
        )
        if r.active_version is not None:
            active.add_metric([], r.active_version)
        yield active
        chunks = GaugeMetricFamily(
            "ragwall_index_chunks", "Chunks in each index version.", labels=["version"]
        )
        docs = GaugeMetricFamily(
            "ragwall_index_documents", "Documents in each index version.", labels=["version"]
        )
        for version, (n_docs, n_chunks) in sorted(r.versions.items()):
            chunks.add_metric([str(version)], n_chunks)
            docs.add_metric([str(version)], n_docs)
        yield chunks
        yield docs
        running = GaugeMetricFamily(
            "ragwall_jobs_running", "Jobs running now, by kind.", labels=["kind"]
        )
        progress = GaugeMetricFamily(
            "ragwall_job_progress_ratio",
            "Documents done over documents to do, of the running job of each kind.",
            labels=["kind"],
        )
        by_kind: dict[str, list[tuple[int, int]]] = {}
        for kind, done, total in r.running_jobs:
            by_kind.setdefault(kind, []).append((done, total))
        for kind, jobs in sorted(by_kind.items()):
            running.add_metric([kind], len(jobs))
            done, total = sum(j[0] for j in jobs), sum(j[1] for j in jobs)
            progress.add_metric([kind], done / total if total else 0.0)
        yield running
        yield progress
        yield GaugeMetricFamily(
            "ragwall_audit_records", "Records in the audit chain.", value=r.audit_records
        )
        age = GaugeMetricFamily(
            "ragwall_audit_head_age_seconds", "Seconds since the audit chain's newest record."
        )
        if r.audit_head_age_s is not None:
            age.add_metric([], r.audit_head_age_s)
        sync_age = GaugeMetricFamily(
            "ragwall_source_sync_age_seconds",
            "Seconds since each scheduled source's last successful sync.",
            labels=["source"],
        )
        for source, seconds in sorted(r.source_sync_age_s.items()):
            sync_age.add_metric([source], seconds)
        yield sync_age
        yield age


class Metrics:
    """The service's instruments on their own registry (so two services never share one)."""

    def __init__(self, read_state: Callable[[], StateReading] | None = None) -> None:
        self.registry = reg = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "ragwall_http_requests_total",
            "HTTP requests, by method, route template and status code.",
            ["method", "route", "status"],
            registry=reg,
        )
        self.http_duration = Histogram(
            "ragwall_http_request_duration_seconds",
            "HTTP request latency, from the first byte in to the last byte out.",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=reg,
        )
        self.stage_duration = Histogram(
            "ragwall_retrieve_stage_duration_seconds",
            "Time in each stage of a retrieve: embed (query encoding), search (the store), "
            "rerank, defend (the query-time defenses), audit (the audit append).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=reg,
        )
        self.hits = Counter(
            "ragwall_retrieve_hits_total", "Hits returned by retrieves.", registry=reg
        )
        self.flagged = Counter(
            "ragwall_retrieve_flagged_hits_total",
            "Returned hits carrying a flag, by flag kind (a hit counts once per kind).",
            ["kind"],
            registry=reg,
        )
        self.dropped = Counter(
            "ragwall_retrieve_dropped_hits_total",
            "Flagged hits left out of responses by the drop policy.",
            registry=reg,
        )
        self.demoted = Counter(
            "ragwall_retrieve_demoted_hits_total",
            "Flagged hits moved below the clean ones by the demote policy.",
            registry=reg,
        )
        self.quarantine = Counter(
            "ragwall_quarantine_changes_total",
            "Quarantine changes that took effect, by what (source, document) and action.",
            ["kind", "action"],
            registry=reg,
        )
        self.ingest_runs = Counter(
            "ragwall_ingest_runs_total",
            "Source ingests, by outcome (succeeded, failed).",
            ["outcome"],
            registry=reg,
        )
        self.ingest_documents = Counter(
            "ragwall_ingest_documents_total",
            "Documents seen by ingests, by outcome (indexed, unchanged, removed, failed).",
            ["outcome"],
            registry=reg,
        )
        self.jobs = Counter(
            "ragwall_jobs_total",
            "Background jobs finished, by kind (reindex, drift) and outcome (succeeded, "
            "failed, cancelled).",
            ["kind", "outcome"],
            registry=reg,
        )
        self.job_duration = Histogram(
            "ragwall_job_duration_seconds",
            "Background job run time, by kind.",
            ["kind"],
            buckets=JOB_BUCKETS,
            registry=reg,
        )
        self.rate_limited = Counter(
            "ragwall_rate_limited_total",
            "Calls refused with 429 for a spent budget, by API key id (identity-provider "
            "subjects count under `oidc`).",
            ["key_id"],
            registry=reg,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._stage_children: dict[str, Any] = {}
        ProcessCollector(registry=reg)  # process_resident_memory_bytes, cpu, open fds
        if read_state is not None:
            reg.register(StateCollector(read_state))

    # -- recording ------------------------------------------------------------------------------
    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:  # label lookups take a lock each: resolve a label set once
            labels = (method, route, str(status))
            children = self.http_requests.labels(*labels), self.http_duration.labels(*labels)
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def retrieve(
        self,
        stages_ms: dict[str, float],
        hits: int,
        flag_kinds: Iterator[str] | Iterable[str],
        dropped: int,
        demoted: int,
    ) -> None:
        for stage, ms in stages_ms.items():
            child = self._stage_children.get(stage)
            if child is None:
                child = self._stage_children[stage] = self.stage_duration.labels(stage)
            child.observe(ms / 1000.0)
        self.hits.inc(hits)
        for kind in flag_kinds:
            self.flagged.labels(kind).inc()
        if dropped:
            self.dropped.inc(dropped)
        if demoted:
            self.demoted.inc(demoted)

    def ingest(self, summary: dict[str, Any], ok: bool) -> None:
        self.ingest_runs.labels("succeeded" if ok else "failed").inc()
        for outcome, n in (
            ("indexed", summary.get("documents", 0)),
            ("unchanged", summary.get("unchanged", 0)),
            ("removed", summary.get("removed", 0)),
            ("failed", len(summary.get("failed", ()))),
        ):
            if n:
                self.ingest_documents.labels(outcome).inc(n)

    def refused_for_budget(self, key_id: str) -> None:
        self.rate_limited.labels(key_id="oidc" if key_id.startswith("oidc:") else key_id).inc()

    def job_finished(self, kind: str, outcome: str, seconds: float | None) -> None:
        self.jobs.labels(kind, outcome).inc()
        if seconds is not None:
            self.job_duration.labels(kind).observe(seconds)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
