"""The metrics registry and its scrape-time gauges, read back through Prometheus's own parser."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from ragwall.telemetry import Metrics, StateReading, new_request_id

NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def reading(**over) -> StateReading:
    base = dict(
        active_version=3,
        versions={2: (10, 40), 3: (11, 44)},
        running_jobs=[("reindex", 5, 20)],
        audit_records=7,
        audit_head_age_s=12.5,
    )
    return StateReading(**(base | over))


def test_names_follow_prometheus_conventions():
    m = Metrics(lambda: reading())
    m.request("GET", "/healthz", 200, 0.001)
    m.retrieve({"embed": 2.0}, 1, ["injection"], 0, 0)
    m.job_finished("reindex", "succeeded", 3.0)
    m.ingest({"documents": 1}, ok=True)
    for family in text_string_to_metric_families(m.exposition().decode()):
        assert NAME.match(family.name)
        assert family.name.startswith(("ragwall_", "process_")), family.name
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples)
        if "duration" in family.name:
            assert family.name.endswith("_seconds")


def test_requests_and_stages_are_recorded_in_seconds():
    m = Metrics()
    m.request("POST", "/v1/retrieve", 200, 0.004)
    m.request("POST", "/v1/retrieve", 200, 0.006)
    m.retrieve({"embed": 3.0, "search": 1.0, "audit": 0.2}, 8, ["injection", "low_trust"], 2, 0)
    got = samples(m)
    key = (("method", "POST"), ("route", "/v1/retrieve"), ("status", "200"))
    assert got[("ragwall_http_requests_total", key)] == 2
    assert abs(got[("ragwall_http_request_duration_seconds_sum", key)] - 0.010) < 1e-9
    stage = (("stage", "embed"),)
    assert got[("ragwall_retrieve_stage_duration_seconds_sum", stage)] == 0.003
    assert got[("ragwall_retrieve_hits_total", ())] == 8
    assert got[("ragwall_retrieve_flagged_hits_total", (("kind", "injection"),))] == 1
    assert got[("ragwall_retrieve_dropped_hits_total", ())] == 2


def test_state_gauges_are_read_at_scrape_time():
    state = {"r": reading()}
    m = Metrics(lambda: state["r"])
    got = samples(m)
    assert got[("ragwall_index_active_version", ())] == 3
    assert got[("ragwall_index_chunks", (("version", "2"),))] == 40
    assert got[("ragwall_index_documents", (("version", "3"),))] == 11
    assert got[("ragwall_jobs_running", (("kind", "reindex"),))] == 1
    assert got[("ragwall_job_progress_ratio", (("kind", "reindex"),))] == 0.25
    assert got[("ragwall_audit_head_age_seconds", ())] == 12.5
    assert got[("ragwall_audit_records", ())] == 7
    assert got[("process_resident_memory_bytes", ())] > 1e6
    state["r"] = reading(active_version=4, versions={4: (1, 2)}, running_jobs=[])
    got = samples(m)
    assert got[("ragwall_index_active_version", ())] == 4
    assert ("ragwall_index_chunks", (("version", "2"),)) not in got
    assert not any(k[0] == "ragwall_jobs_running" for k in got)


def test_a_failing_reading_leaves_the_rest_of_the_scrape():
    def broken() -> StateReading:
        raise RuntimeError("index unavailable")

    m = Metrics(broken)
    m.request("GET", "/healthz", 200, 0.001)
    got = samples(m)
    assert ("ragwall_index_active_version", ()) not in got
    assert (
        got[
            (
                "ragwall_http_requests_total",
                (("method", "GET"), ("route", "/healthz"), ("status", "200")),
            )
        ]
        == 1
    )


def test_two_services_keep_separate_registries():
    a, b = Metrics(), Metrics()
    a.quarantine.labels("source", "quarantine").inc()
    assert (
        "ragwall_quarantine_changes_total",
        (("action", "quarantine"), ("kind", "source")),
    ) in samples(a)
    assert (
        "ragwall_quarantine_changes_total",
        (("action", "quarantine"), ("kind", "source")),
    ) not in samples(b)


def test_request_ids_are_new_unless_a_plain_token_is_offered():
    assert new_request_id("abcdef0123456789") == "abcdef0123456789"
    for bad in (None, "", "short", "has space in it", "x" * 65, "<script>alert(1)</script>"):
        rid = new_request_id(bad)
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
