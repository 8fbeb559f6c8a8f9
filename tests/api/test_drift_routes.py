"""POST /v1/eval/drift as a job, its report over HTTP, a gated reindex over HTTP, and every bad
request refused with a machine-readable reason."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from ragwall.api.app import create_app
from ragwall.eval.drift.queries import QuerySet
from ragwall.service import Service

QUERIES = ["who approves refunds", "how are laptops ordered", "train travel policy"]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from ragwall.settings import Settings

    root = tmp_path_factory.mktemp("drift-api")
    kb = root / "kb"
    kb.mkdir()
    (kb / "refunds.md").write_text(
        "# Refunds\n\nRefunds above 500 EUR need approval by the finance director. Smaller "
        "refunds are approved by the team lead, and refunds are paid with the salary run.\n"
    )
    (kb / "laptops.md").write_text(
        "# Laptops\n\nNew laptops are ordered through the IT desk. Each laptop is encrypted "
        "before it is handed out, and old laptops are wiped and recycled.\n"
    )
    (kb / "travel.md").write_text(
        "# Travel\n\nTrain travel is preferred for trips under 600 km. Book flights through the "
        "travel desk; first class needs the approval of a director.\n"
    )
    settings = Settings(data_dir=root / "data")
    svc = Service(settings)
    svc.add_source("admin", "kb", str(kb), "internal")
    svc.ingest("admin", "kb")
    keys = {
        "read": svc.runtime.keys.create("retrieve", None)[0],
        "admin": svc.runtime.keys.create("admin", None)[0],
    }
    with TestClient(create_app(settings, svc)) as client:
        yield client, keys, svc
    svc.close()


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _wait(client, key, job_id: str) -> dict:
    for _ in range(600):
        job = client.get(f"/v1/jobs/{job_id}", headers=_h(key)).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.mark.slow
def test_a_drift_job_compares_versions_and_serves_its_report(api):
    client, keys, svc = api
    body = {"queries": QUERIES, "baseline": "v1", "top_k": 3, "min_mean_rbo": 0.99}
    started = client.post("/v1/eval/drift", json=body, headers=_h(keys["admin"]))
    assert started.status_code == 202, started.text
    assert started.headers["location"] == f"/v1/jobs/{started.json()['job_id']}"
    job = _wait(client, keys["admin"], started.json()["job_id"])
    assert job["state"] == "succeeded", job["error"]
    assert job["kind"] == "drift" and job["report"] == f"/v1/jobs/{job['job_id']}/report"
    assert job["result"]["verdict"] == "pass" and job["result"]["rbo"]["mean"] == 1.0
    assert job["result"]["embedding"]["method"] == "cosine"

    page = client.get(job["report"], headers=_h(keys["admin"]))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.text.count("<svg") == 2  # overlap and sources (no qrels: no nDCG plot)
    data = client.get(job["report"] + "?format=json", headers=_h(keys["admin"]))
    assert data.json() == job["result"]

    # A snapshot object as the baseline (what `ragwall eval snapshot` writes).
    snap = svc.snapshot("admin", QuerySet({f"q{i}": q for i, q in enumerate(QUERIES)}), 3)
    body = {"queries": {f"q{i}": q for i, q in enumerate(QUERIES)},
            "baseline": snap.model_dump(), "top_k": 3}  # fmt: skip
    job = _wait(client, keys["admin"], client.post("/v1/eval/drift", json=body,
                headers=_h(keys["admin"])).json()["job_id"])  # fmt: skip
    assert job["state"] == "succeeded" and job["result"]["rbo"]["mean"] == 1.0


@pytest.mark.slow
def test_bad_drift_requests_are_refused(api):
    client, keys, svc = api
    admin = _h(keys["admin"])
    snap = svc.snapshot("admin", QuerySet({"q0": QUERIES[0]}), 3)

    def post(body: dict, key: dict = admin):
        return client.post("/v1/eval/drift", json=body, headers=key)

    assert post({"queries": QUERIES, "baseline": "v1"}, _h(keys["read"])).status_code == 403
    cases = [
        ({"queries": [], "baseline": "v1"}, 422, "invalid_request"),
        ({"queries": QUERIES, "baseline": "v1", "surprise": 1}, 422, "invalid_request"),
        ({"queries": QUERIES, "baseline": "v9"}, 404, "version_not_found"),
        ({"queries": QUERIES, "baseline": "/etc/passwd"}, 422, "invalid_request"),
        ({"queries": {"a": "x"}, "qrels": {"b": {"d": 1}}, "baseline": "v1"}, 422,
         "invalid_request"),
        ({"queries": QUERIES, "baseline": {"format": "nope"}}, 422, "invalid_request"),
        ({"queries": QUERIES, "baseline": snap.model_dump()}, 422, "invalid_request"),
        ({"queries": {"q0": QUERIES[0]}, "baseline": snap.model_copy(
            update={"index_id": "elsewhere"}).model_dump()}, 422, "invalid_request"),
    ]  # fmt: skip
    for body, status, code in cases:
        got = post(body)
        assert got.status_code == status, (body, got.text)
        assert got.json()["error"]["code"] == code, got.text
    missing = client.get("/v1/jobs/nope/report", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "report_not_found"


@pytest.mark.slow
def test_a_gated_reindex_over_http_switches_when_the_gate_passes(api):
    client, keys, _ = api
    admin = _h(keys["admin"])
    for gate, why in (
        ({"queries": []}, "gate.queries"),
        ({"queries": QUERIES, "max_ndcg_drop": 0.01}, "needs qrels"),
        ({"queries": QUERIES, "min_mean_rbo": 2}, "gate.min_mean_rbo"),
    ):
        bad = client.post("/v1/index/reindex", json={"gate": gate}, headers=admin)
        assert bad.status_code == 422 and why in bad.text, bad.text
    body = {"rebuild": True, "gate": {"queries": QUERIES, "top_k": 3, "min_mean_rbo": 0.99}}
    started = client.post("/v1/index/reindex", json=body, headers=admin)
    assert started.status_code == 202, started.text
    assert started.json()["params"] == body
    job = _wait(client, keys["admin"], started.json()["job_id"])
    assert job["state"] == "succeeded", job["error"]
    assert job["result"]["switched"] and job["result"]["gate"]["verdict"] == "pass"
    assert job["result"]["reused_vectors"] == 0  # rebuilt: every document re-embedded
    assert client.get(job["report"], headers=admin).status_code == 200
    assert client.get("/v1/index", headers=admin).json()["active"] == job["version"]


def test_the_drift_route_takes_snapshots_over_the_general_body_limit(api):
    """Issue 24: two snapshots do not fit in RAGWALL_MAX_REQUEST_BYTES (1 MiB); the drift route
    has its own limit for admin keys (RAGWALL_MAX_DRIFT_REQUEST_BYTES), and nothing else does."""
    client, keys, svc = api
    snap = svc.snapshot("admin", QuerySet({"q0": QUERIES[0]}), 3).model_dump()
    snap["padding"] = "x" * (svc.settings.max_request_bytes + 1)  # an ignored field
    body = {"queries": {"q0": QUERIES[0]}, "baseline": snap, "top_k": 3}
    got = client.post("/v1/eval/drift", json=body, headers=_h(keys["admin"]))
    assert got.status_code == 202, got.text[:300]  # read and accepted, not refused as too large
    assert _wait(client, keys["admin"], got.json()["job_id"])["state"] == "succeeded"
    other = client.post("/v1/sources", json={"padding": snap["padding"]}, headers=_h(keys["admin"]))
    assert other.status_code == 413
    reader = client.post("/v1/eval/drift", json=body, headers=_h(keys["read"]))
    assert reader.status_code == 413  # the larger limit is an admin's only
